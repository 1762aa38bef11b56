"""One module per method; ``RECIPES`` maps ``config.recipe`` to it; ``validate`` checks a whole config."""
import dataclasses
from collections.abc import Callable

import ml_collections

from nofe_jax import validation
from nofe_jax.data import pipeline, sources
from nofe_jax.models import registry
from nofe_jax.training import loop, optim
from nofe_jax.training.recipes import base, nofe


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A method: its entry point, the config blocks its stages read, its own options and checks."""
    train_and_evaluate: Callable[[ml_collections.ConfigDict, str], dict]
    stage_blocks: tuple[str, ...]  # blocks holding a stage's train/optim ('' = top level)
    option_blocks: tuple[str, ...] = ()
    option_problems: Callable[[ml_collections.ConfigDict], list[str]] = lambda config: []

    def top_level_blocks(self) -> tuple[str, ...]:
        """The top-level config fields this recipe reads beyond the shared ones."""
        return tuple(b for block in self.stage_blocks for b in ((block,) if block else ('train', 'optim'))
                     ) + self.option_blocks


RECIPES: dict[str, Recipe] = {
    'base': Recipe(base.train_and_evaluate, ('',)),
    'nofe': Recipe(nofe.train_and_evaluate, ('generalist', 'experts'), ('nofe',), nofe.config_problems),
}
SHARED_BLOCKS = ('recipe', 'seed', 'model', 'data', 'distributed')
MODEL_DTYPES = ('float32', 'bfloat16')


def unread_problem(field: str, recipe: str) -> str:
    """A top-level field ``recipe`` never reads: names the fields its stages read instead."""
    instead = [f'{block}.{field}' for block in RECIPES[recipe].stage_blocks if block]
    hint = (f'its stages read {" and ".join(instead)}' if field in ('train', 'optim') and instead
            else 'remove it')
    return f'config.{field} is not read by recipe {recipe!r}; {hint}.'


def model_problems(model: ml_collections.ConfigDict) -> list[str]:
    """Problems of ``config.model``: its name, compute dtype and Table 4 options."""
    return [p for p in (
        validation.choice_problem('model.name', model.name, sorted(registry.MODELS)),
        validation.choice_problem('model.dtype', model.dtype, MODEL_DTYPES),
        validation.range_problem('model.width_multiplier', model.width_multiplier, low=0, low_open=True),
        validation.range_problem('model.extra_layers', model.extra_layers, low=0, integer=True),
    ) if p]


def preprocess_problems(preprocess: ml_collections.ConfigDict) -> list[str]:
    """Problems of ``config.data.preprocess``."""
    try:
        pipeline.Preprocess.from_config(preprocess)
    except ValueError as e:
        return [f'data.{e}']
    problems = [validation.range_problem(f'data.preprocess.{field}', preprocess[field], low=0,
                                         integer=True) for field in ('pad', 'crop', 'resize')]
    return [p for p in problems if p]


def stage_problems(config: ml_collections.ConfigDict, block: str) -> list[str]:
    """Problems of the train and optim settings of one stage block ('' = top level)."""
    if block and block not in config:
        return [f'config.{block} is missing; recipe {config.recipe!r} trains a stage from it.']
    stage, prefix = (config[block], f'{block}.') if block else (config, '')
    return (loop.train_config_problems(stage.train, f'{prefix}train')
            + optim.config_problems(stage.optim, f'{prefix}optim'))


def config_problems(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
    """Every problem of ``config`` and ``workdir`` found without reading data or building a model."""
    problem = validation.choice_problem('recipe', config.recipe, tuple(RECIPES))
    if problem:
        return [problem]
    recipe = RECIPES[config.recipe]
    read = SHARED_BLOCKS + recipe.top_level_blocks()
    problems = [unread_problem(field, config.recipe) for field in config if field not in read]
    problems += model_problems(config.model)
    problems += sources.data_problems(config.data) + preprocess_problems(config.data.preprocess)
    for block in recipe.stage_blocks:
        problems += stage_problems(config, block)
    problems += recipe.option_problems(config)
    return problems + [p for p in (validation.workdir_problem(workdir),) if p]


def validate(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises ``validation.ConfigError`` listing every problem of ``config`` and ``workdir``."""
    validation.raise_problems(config_problems(config, workdir))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Validates ``config``, then runs the recipe it names; returns its summary."""
    validate(config, workdir)
    return RECIPES[config.recipe].train_and_evaluate(config, workdir)

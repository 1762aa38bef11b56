"""Every check of a config that runs before any data is read or model built; imports no jax.

``experiments.run`` calls ``validate`` before it imports the training machinery (jax, flax,
optax and orbax take seconds to load), so a bad flag fails at once; ``recipes.train_and_evaluate``
calls it too. The names a setting may take are declared here or in ``models/names.py``; the
loop, the optimiser and the recipes check their settings with these functions.
"""
import dataclasses
import os
import re
from collections.abc import Callable

import ml_collections

from nofe_jax import validation
from nofe_jax.data import pipeline, sources
from nofe_jax.grouping import DEEPME_GROUPINGS, ONTOLOGY_SOURCES
from nofe_jax.models import names
from nofe_jax.training.durations import duration_problem

# ----------------------------------------------------------------------------- a stage's train block

# Periods where 0 is meaningful: the action then happens only at the end of the stage.
_AT_END_WHEN_ZERO = ('log_every', 'eval_every', 'checkpoint_every')


def train_config_problems(config: ml_collections.ConfigDict, prefix: str = 'train') -> list[str]:
    """Every problem of one stage's loop settings, one line each (``prefix`` names its place)."""
    problems = [duration_problem(f'{prefix}.duration', config.duration,
                                 zero='a stage must train at least one step.'),
                *(duration_problem(f'{prefix}.{field}', config[field]) for field in _AT_END_WHEN_ZERO),
                validation.range_problem(f'{prefix}.keep_checkpoints', config.keep_checkpoints,
                                         low=1, integer=True)]
    # Eval pads its batches up to the device count by itself; training batches must split evenly.
    rules = {'batch_size': 'must be a positive multiple of the device count',
             'eval_batch_size': 'must be a positive integer'}
    for field, rule in rules.items():
        value = config[field]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f'{prefix}.{field}={value!r}: {field} {rule}.')
    return [p for p in problems if p]


# ----------------------------------------------------------------------------- a stage's optim block

OPTIMIZERS = ('caffe_sgd', 'sgd', 'adamw')
SCHEDULES = ('constant', 'piecewise', 'cosine', 'exponential')


def optim_config_problems(config: ml_collections.ConfigDict, prefix: str = 'optim') -> list[str]:
    """Every problem of one stage's optimiser config, one line each (``prefix`` names its place)."""
    piecewise_drops = config.schedule == 'piecewise' and bool(config.boundaries)
    problems = [
        validation.choice_problem(f'{prefix}.name', config.name, OPTIMIZERS),
        validation.choice_problem(f'{prefix}.schedule', config.schedule, SCHEDULES),
        # 0 is a frozen stage (allowed); an exponential decay, or piecewise drops (ratios),
        # need a start above 0.
        validation.range_problem(f'{prefix}.lr', config.lr, low=0,
                                 low_open=config.schedule == 'exponential' or piecewise_drops),
        validation.range_problem(f'{prefix}.final_lr', config.final_lr, low=0),
        validation.range_problem(f'{prefix}.momentum', config.momentum, low=0, high=1),
        validation.range_problem(f'{prefix}.weight_decay', config.weight_decay, low=0),
        duration_problem(f'{prefix}.warmup', config.warmup),
        *(validation.range_problem(f'{prefix}.boundary_lrs[{i}]', v, low=0, low_open=True)
          for i, v in enumerate(config.boundary_lrs)),
        *(duration_problem(f'{prefix}.boundaries[{i}]', b) for i, b in enumerate(config.boundaries)),
    ]
    if config.schedule == 'piecewise' and len(config.boundary_lrs) != len(config.boundaries):
        problems.append(f'{prefix}.boundary_lrs needs one rate per entry of {prefix}.boundaries '
                        f'(got {len(config.boundary_lrs)} and {len(config.boundaries)}).')
    for i, rule in enumerate(config.multipliers):
        try:
            pattern, _, _ = rule
            re.compile(pattern)
        except (ValueError, TypeError, re.error) as e:
            problems.append(f'{prefix}.multipliers[{i}]={rule!r} must be (regex, lr_mult, decay_mult): {e}')
    return [p for p in problems if p]


# ----------------------------------------------------------------------------- the NofE's options

SPECIALTY_SOURCES = ('learned', 'spectral', 'random', 'wordnet', 'file')
# The count-matrix assigners of grouping.specialties.ASSIGNERS (which imports scipy).
SPECIALTY_ASSIGNERS = ('fully_balanced', 'elasso', 'greedy', 'optimal_balanced')
SUBSET_SOURCES = ('train', 'holdout')
INITS = ('generalist', 'scratch')
LISTED_PARTITION_PROBLEMS = 5


def partition_entries(path: str) -> list[tuple[str, str]]:
    """(where, token) of every specialty id in a partition file, as ``specialties.load_partition`` reads it."""
    with open(path) as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
    if len(lines) == 1 and len(lines[0][1]) > 1 and lines[0][1].isdigit():  # the release's digit string
        n, digits = lines[0]
        return [(f'character {i} of line {n}', d) for i, d in enumerate(digits, 1)]
    return [(f'line {n}', token) for n, token in lines]


def partition_file_problems(path: str, num_experts: int) -> list[str]:
    """Problems of a ``specialties=file`` partition file: missing, non-integer ids, ids outside [0, K)."""
    if not path or not os.path.isfile(path):
        return [f'nofe.partition_file={path!r} is not a file; nofe.specialties=file needs one '
                'specialty id per class, one per line.']
    bad = [f'{where} of {path}: ' + (f'specialty {token} is outside [0, K={num_experts})'
                                     if token.isdigit() else
                                     f'{token!r} is not a specialty id (a non-negative integer)')
           for where, token in partition_entries(path)
           if not token.isdigit() or int(token) >= num_experts]
    more = len(bad) - LISTED_PARTITION_PROBLEMS
    return bad[:LISTED_PARTITION_PROBLEMS] + ([f'... and {more} more in {path}.'] if more > 0 else [])


def nofe_config_problems(config: ml_collections.ConfigDict) -> list[str]:
    """Problems of ``config.nofe`` found before any data is read (K <= C is checked once it is)."""
    nc = config.nofe
    never = ('the specialties would never be re-learned; use nofe.specialties=random for a fixed '
             'random partition.')
    k_problem = validation.range_problem('nofe.num_experts', nc.num_experts, low=1, integer=True)
    problems = [
        validation.choice_problem('nofe.specialties', nc.specialties, SPECIALTY_SOURCES),
        validation.choice_problem('nofe.balance', nc.balance, SPECIALTY_ASSIGNERS),
        validation.choice_problem('nofe.subset_source', nc.subset_source, SUBSET_SOURCES),
        validation.choice_problem('nofe.init', nc.init, INITS),
        validation.choice_problem('nofe.generalist_head', nc.generalist_head, names.GENERALIST_HEADS),
        validation.choice_problem('nofe.branch_init', nc.branch_init, names.BRANCH_INITS),
        k_problem,
        validation.range_problem('nofe.min_kappa', nc.min_kappa, high=1),
        validation.range_problem('nofe.stay_margin', nc.stay_margin, low=0),
        validation.range_problem('nofe.elasso_lam', nc.elasso_lam, low=0),
        validation.range_problem('nofe.elasso_sweeps', nc.elasso_sweeps, low=0, integer=True),
        validation.range_problem('nofe.subset_size', nc.subset_size, low=1, integer=True),
        duration_problem('nofe.update_every', nc.update_every,
                         zero=never if nc.specialties == 'learned' else None),
        duration_problem('nofe.update_warmup', nc.update_warmup),
    ]
    if nc.branch_init != 'release' and config.model.name not in names.BRANCH_INIT_MODELS:
        problems.append(f'nofe.branch_init={nc.branch_init!r} applies to the branches of '
                        f'{", ".join(names.BRANCH_INIT_MODELS)}; {config.model.name!r} keeps its fillers.')
    if nc.generalist_head == 'branch' and nc.init != 'generalist':
        problems.append("nofe.generalist_head='branch' starts the experts from the generalist's branch, "
                        f"so it needs nofe.init='generalist' (got {nc.init!r}).")
    if nc.specialties == 'file' and k_problem is None:
        problems += partition_file_problems(nc.partition_file, nc.num_experts)
    return [p for p in problems if p]


def dmde_config_problems(config: ml_collections.ConfigDict) -> list[str]:
    """Problems of ``config.dmde`` found before any data is read (M <= C is checked once it is)."""
    dc = config.dmde
    group_problem = validation.range_problem('dmde.group_size', dc.group_size, low=1, integer=True)
    overlap_problem = validation.range_problem('dmde.overlap', dc.overlap, low=0, high=1, high_open=True)
    problems = [
        validation.choice_problem('dmde.ontology', dc.ontology, ONTOLOGY_SOURCES),
        validation.choice_problem('dmde.fusion', dc.fusion, names.FUSIONS),
        validation.range_problem('dmde.num_categories', dc.num_categories, low=1, integer=True),
        group_problem, overlap_problem,
        validation.range_problem('dmde.not_in_group_weight', dc.not_in_group_weight, low=0, high=1,
                                 high_open=True),
        validation.range_problem('dmde.mu', dc.mu, low=0, low_open=True),
        validation.range_problem('dmde.delta1', dc.delta1, low=0),
        validation.range_problem('dmde.delta2', dc.delta2, low=0),
        validation.range_problem('dmde.similarity_subset_size', dc.similarity_subset_size, low=1,
                                 integer=True),
        duration_problem('dmde.similarity_update_every', dc.similarity_update_every,
                         zero=('the visual Laplacians would never be computed; set dmde.delta2=0 '
                               'to train without them.' if dc.multitask and dc.delta2 > 0 else None)),
        validation.range_problem('dmde.phi_eps', dc.phi_eps, low=0, high=0.5, low_open=True,
                                 high_open=True),
        validation.range_problem('dmde.lambda_overlap', dc.lambda_overlap, low=0),
        validation.range_problem('dmde.base_lr_mult', dc.base_lr_mult, low=0),
    ]
    if not group_problem and not overlap_problem:
        repeats = 1.0 / (1.0 - dc.overlap)
        if abs(repeats - round(repeats)) > 1e-9:
            problems.append(f'dmde.overlap={dc.overlap}: 1 / (1 - overlap) must be an integer so every '
                            'class is in equally many groups; use 0, 0.5, 2/3, 0.75, ...')
        elif dc.group_size < round(repeats):
            problems.append(f'dmde.group_size={dc.group_size} is smaller than the {round(repeats)} '
                            f'groups each class joins at overlap {dc.overlap}.')
    return [p for p in problems if p]


def deepme_config_problems(config: ml_collections.ConfigDict) -> list[str]:
    """Problems of ``config.deepme`` found before any data is read (T <= C is checked once it is)."""
    dc = config.deepme
    problems = [
        validation.choice_problem('deepme.groups', dc.groups, DEEPME_GROUPINGS),
        validation.choice_problem('deepme.gate', dc.gate, names.GATES),
        validation.choice_problem('deepme.gate_input', dc.gate_input, names.GATE_INPUTS),
        validation.choice_problem('deepme.consistency', dc.consistency, names.CONSISTENCIES),
        validation.range_problem('deepme.num_groups', dc.num_groups, low=2, integer=True),
        validation.range_problem('deepme.membership_threshold', dc.membership_threshold, low=0,
                                 high=1, low_open=True),
        (validation.range_problem('deepme.fuzzifier', dc.fuzzifier, low=1, low_open=True)
         if dc.fuzzifier else None),
        validation.range_problem('deepme.mu', dc.mu, low=0, low_open=True),
        *(validation.range_problem(f'deepme.{field}', dc[field], low=0)
          for field in ('lambda1', 'lambda2', 'lambda3', 'consistency_weight', 'alpha', 'beta',
                        'mixture_ce', 'base_lr_mult')),
        validation.range_problem('deepme.gate_hidden', dc.gate_hidden, low=1, integer=True),
        validation.range_problem('deepme.similarity_subset_size', dc.similarity_subset_size, low=1,
                                 integer=True),
        duration_problem('deepme.similarity_update_every', dc.similarity_update_every,
                         zero=('the visual Laplacians would never be computed; set '
                               'deepme.lambda2=0 to train without them.' if dc.lambda2 > 0 else None)),
    ]
    return [p for p in problems if p]


# ----------------------------------------------------------------------------- the whole config

@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """What a recipe reads of a config: the blocks its stages read, its own options and their checks."""
    stage_blocks: tuple[str, ...]  # blocks holding a stage's train/optim ('' = top level)
    option_blocks: tuple[str, ...] = ()
    option_problems: Callable[[ml_collections.ConfigDict], list[str]] = lambda config: []

    def top_level_blocks(self) -> tuple[str, ...]:
        """The top-level config fields this recipe reads beyond the shared ones."""
        return tuple(b for block in self.stage_blocks for b in ((block,) if block else ('train', 'optim'))
                     ) + self.option_blocks


# The recipes' entry points are ``recipes.RECIPES``, under the same names.
RECIPE_CONFIGS: dict[str, RecipeConfig] = {
    'base': RecipeConfig(('',)),
    'nofe': RecipeConfig(('generalist', 'experts'), ('nofe',), nofe_config_problems),
    'dmde': RecipeConfig(('bases', 'fusion'), ('dmde',), dmde_config_problems),
    'deepme': RecipeConfig(('bases', 'gate'), ('deepme',), deepme_config_problems),
}
SHARED_BLOCKS = ('recipe', 'seed', 'model', 'data', 'distributed')
MODEL_DTYPES = ('float32', 'bfloat16')


def unread_problem(field: str, recipe: str) -> str:
    """A top-level field ``recipe`` never reads: names the fields its stages read instead."""
    instead = [f'{block}.{field}' for block in RECIPE_CONFIGS[recipe].stage_blocks if block]
    hint = (f'its stages read {" and ".join(instead)}' if field in ('train', 'optim') and instead
            else 'remove it')
    return f'config.{field} is not read by recipe {recipe!r}; {hint}.'


def model_problems(model: ml_collections.ConfigDict) -> list[str]:
    """Problems of ``config.model``: its name, compute dtype and Table 4 options."""
    return [p for p in (
        validation.choice_problem('model.name', model.name, sorted(names.MODEL_NAMES)),
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
    return (train_config_problems(stage.train, f'{prefix}train')
            + optim_config_problems(stage.optim, f'{prefix}optim'))


def config_problems(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
    """Every problem of ``config`` and ``workdir`` found without reading data or building a model."""
    problem = validation.choice_problem('recipe', config.recipe, tuple(RECIPE_CONFIGS))
    if problem:
        return [problem]
    recipe = RECIPE_CONFIGS[config.recipe]
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

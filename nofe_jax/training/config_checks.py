"""The checks every method's config shares, run before any data is read or model built;
imports no jax.

``nofe_jax.methods.validate`` runs them with the checks of the method a config names (its
``options.py``) before the training machinery is imported (jax, flax, optax and orbax take
seconds to load), so a bad flag fails at once. The names a setting may take are declared here or
in ``models/names.py``; the loop and the optimiser check their settings with these functions.
"""
import re
from collections.abc import Callable
from typing import Protocol

import ml_collections

from nofe_jax import validation
from nofe_jax.data import pipeline, sources
from nofe_jax.models import names
from nofe_jax.training import init_files
from nofe_jax.training.durations import duration_problem

# ----------------------------------------------------------------------------- a stage's train block

# Periods where 0 is meaningful: the action then happens only at the end of the stage.
_AT_END_WHEN_ZERO = ('log_every', 'eval_every', 'checkpoint_every')


def train_config_problems(config: ml_collections.ConfigDict, prefix: str = 'train',
                          untrained_ok: bool = False) -> list[str]:
    """Every problem of one stage's loop settings, one line each (``prefix`` names its place).
    ``untrained_ok``: the stage's model is whole at its start, so a duration of 0 is allowed."""
    problems = [duration_problem(f'{prefix}.duration', config.duration,
                                 zero=None if untrained_ok else 'a stage must train at least one step.'),
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
        duration_problem(f'{prefix}.last_layer_only', config.last_layer_only),
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


# ----------------------------------------------------------------------------- the whole config

class MethodConfig(Protocol):
    """What a method reads of a config (``nofe_jax.methods.Method``)."""
    name: str
    stage_blocks: tuple[str, ...]  # blocks holding a stage's train/optim ('' = top level)
    untrained_stage_blocks: tuple[str, ...]  # those whose duration may be 0
    option_problems: Callable[[ml_collections.ConfigDict], list[str]]

    def top_level_blocks(self) -> tuple[str, ...]: ...


SHARED_BLOCKS = ('recipe', 'seed', 'init_from', 'model', 'data', 'distributed')
MODEL_DTYPES = ('float32', 'bfloat16')


def unread_problem(field: str, method: MethodConfig) -> str:
    """A top-level field ``method`` never reads: names the fields its stages read instead."""
    instead = [f'{block}.{field}' for block in method.stage_blocks if block]
    hint = (f'its stages read {" and ".join(instead)}' if field in ('train', 'optim') and instead
            else 'remove it')
    return f'config.{field} is not read by recipe {method.name!r}; {hint}.'


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


def stage_problems(config: ml_collections.ConfigDict, block: str, untrained_ok: bool = False) -> list[str]:
    """Problems of the train and optim settings of one stage block ('' = top level)."""
    if block and block not in config:
        return [f'config.{block} is missing; recipe {config.recipe!r} trains a stage from it.']
    stage, prefix = (config[block], f'{block}.') if block else (config, '')
    return (train_config_problems(stage.train, f'{prefix}train', untrained_ok)
            + optim_config_problems(stage.optim, f'{prefix}optim'))


def config_problems(config: ml_collections.ConfigDict, workdir: str,
                    method: MethodConfig) -> list[str]:
    """Every problem of ``config`` (of ``method``) and ``workdir`` found without reading data or
    building a model; ``nofe_jax.methods.config_problems`` picks the method."""
    read = SHARED_BLOCKS + method.top_level_blocks()
    problems = [unread_problem(field, method) for field in config if field not in read]
    problems += model_problems(config.model)
    problems += sources.data_problems(config.data) + preprocess_problems(config.data.preprocess)
    for block in method.stage_blocks:
        problems += stage_problems(config, block, block in method.untrained_stage_blocks)
    problems += method.option_problems(config)
    problems += [p for p in (init_files.init_from_problem(config.init_from, config.model.name),) if p]
    return problems + [p for p in (validation.workdir_problem(workdir),) if p]

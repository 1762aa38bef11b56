"""What every recipe shares: the run's set-up (workdir, config.json, data, normalisation),
model constructor options, the checkpoint fingerprint, running a stage, and the summary."""
import contextlib
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import jax.numpy as jnp
import ml_collections
import numpy as np

from nofe_jax import parallel, reporting
from nofe_jax.data import pipeline, sources
from nofe_jax.grouping import clustering
from nofe_jax.models import registry
from nofe_jax.training import durations, loop, tasks


@dataclasses.dataclass
class Run:
    """What every recipe starts from."""
    config: ml_collections.ConfigDict
    workdir: str
    dataset: sources.Dataset
    normalization: pipeline.Normalization
    writer: reporting.MetricWriter
    run_log: reporting.RunLog  # also this process's wall time
    # The config fields every stage's checkpoint fits only (``config_fingerprint``).
    fingerprint: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The method's stage blocks in the order its stages run (for the run's ETA).
    stage_blocks: tuple[str, ...] = ()
    # What the grouping said about itself (e.g. an arbitrary spectral split), for summary.json.
    grouping_warnings: list[str] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def grouping_warnings_reported(run: Run) -> Iterator[None]:
    """Inside: every ``clustering.ArbitrarySplitWarning`` is logged at once as one WARNING line and
    kept in ``run.grouping_warnings`` (summary.json); other warnings show as usual."""
    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        show_other = warnings.showwarning

        def show(message, category, *args, **kwargs):
            if not issubclass(category, clustering.ArbitrarySplitWarning):
                return show_other(message, category, *args, **kwargs)
            reporting.log(f'WARNING: {message}')
            run.grouping_warnings.append(str(message))

        warnings.simplefilter('always', clustering.ArbitrarySplitWarning)
        warnings.showwarning = show
        yield


class MethodInfo(Protocol):
    """What the run scaffolding reads of a method (``nofe_jax.methods.Method``)."""
    stage_blocks: tuple[str, ...]
    fingerprint_fields: tuple[str, ...]


# Config fields every method's checkpoints fit only (shapes, meaning of the outputs); a method adds
# its own (``Method.fingerprint_fields``). Anything else, e.g. the duration, the periods or the
# learning rate, may change when a run is resumed.
SHARED_FINGERPRINT_FIELDS = ('recipe', 'model.name', 'model.width_multiplier', 'model.extra_layers',
                             'data.source')


def config_value(config: ml_collections.ConfigDict, path: str):
    """The field at dotted ``path``, or None where the config has no such field."""
    for name in path.split('.'):
        if name not in config:
            return None
        config = config[name]
    return config


def config_fingerprint(config: ml_collections.ConfigDict, fields: Sequence[str]) -> dict[str, Any]:
    """{path: value} of the shared fingerprint fields and ``fields`` (a method's)."""
    return {path: config_value(config, path) for path in (*SHARED_FINGERPRINT_FIELDS, *fields)}


def prepare_run(config: ml_collections.ConfigDict, workdir: str,
                method: MethodInfo | None = None) -> Run:
    """Joins the processes, creates the workdir, writes config.json and loads the data.

    ``method`` (its ``Method``): the option fields its checkpoints fit only, its stage blocks.
    """
    start_time = time.perf_counter()
    parallel.initialize_distributed(**config.distributed)
    os.makedirs(workdir, exist_ok=True)
    run_log = reporting.RunLog(workdir, start=start_time)
    reporting.write_json(os.path.join(workdir, 'config.json'), json.loads(config.to_json()))
    dataset = sources.load_dataset(config.data)
    normalization = pipeline.compute_normalization(dataset.train, config.data.preprocess)
    reporting.log(f'data: {dataset.description} — {len(dataset.train)} train / '
                  f'{len(dataset.test)} test images, {dataset.num_classes} classes'
                  + (' (SYNTHETIC)' if dataset.synthetic else ''))
    return Run(config, workdir, dataset, normalization, reporting.MetricWriter(workdir, run_log),
               run_log, config_fingerprint(config, method.fingerprint_fields if method else ()),
               method.stage_blocks if method else ())


# config.model fields passed to the model constructor only when they differ from these defaults
# (the constructors' own), so models without the option still build.
_OPTIONAL_MODEL_FIELDS = {'width_multiplier': 1.0, 'extra_layers': 0}


def model_overrides(config: ml_collections.ConfigDict) -> dict:
    """Model constructor overrides from ``config.model``: compute dtype, Table 4 width/depth options."""
    overrides = {'dtype': jnp.dtype(config.model.dtype)}
    for field, default in _OPTIONAL_MODEL_FIELDS.items():
        if field in config.model and config.model[field] != default:
            overrides[field] = config.model[field]
    return overrides


def flat_stage(run: Run, name: str, block: str = '',
               train_indices: np.ndarray | None = None) -> loop.Stage:
    """A flat base model over all C classes, on config ``block``'s train/optim settings ('' = the
    top level's): the flat method's stage, and the one NofE's spectral and DMDE's visual
    groupings start from."""
    config, num_classes = run.config, run.dataset.num_classes
    settings = config[block] if block else config
    return loop.Stage(name=name, model=registry.build_base(config.model.name, num_classes,
                                                           **model_overrides(config)),
                      task=tasks.ClassificationTask(num_classes), train_config=settings.train,
                      optim_config=settings.optim, train_indices=train_indices, config_block=block)


def run_stage(run: Run, stage: loop.Stage) -> loop.StageResult:
    """``loop.run_stage`` with the run's data, config and writer; the stage's fingerprint gets the
    run's (the method's fields), under the stage's own entries."""
    stage = dataclasses.replace(stage, fingerprint={**run.fingerprint, **stage.fingerprint})
    return loop.run_stage(stage, run.dataset, run.normalization, run.config, run.workdir,
                          run.writer, later_examples(run, stage.config_block))


def later_examples(run: Run, block: str) -> int:
    """The training examples of the method's stages after the one of config ``block`` (0 if the
    block is not one of them): the rest of the run, for its ETA."""
    if block not in run.stage_blocks:
        return 0
    total = 0
    for later in run.stage_blocks[run.stage_blocks.index(block) + 1:]:
        train_config = (run.config[later] if later else run.config).train
        steps_per_epoch = pipeline.steps_per_epoch(len(run.dataset.train), train_config.batch_size)
        total += durations.to_steps(train_config.duration, steps_per_epoch=steps_per_epoch,
                                    batch_size=train_config.batch_size) * train_config.batch_size
    return total


def finish(run: Run, final: dict, stages: dict[str, loop.StageResult], **extra) -> dict:
    """Writes summary.json and the learning-curve plot; returns the summary.

    ``wall_time_s`` is this process's; ``total_wall_time_s`` adds the earlier runs of the
    workdir (``restarts`` of them) that this one resumed.
    """
    run.writer.close()
    summary = {
        'recipe': run.config.recipe,
        'model': run.config.model.name,
        'dataset': run.dataset.name,
        'data_description': run.dataset.description,
        'synthetic': run.dataset.synthetic,
        'final': final,
        'wall_time_s': run.run_log.elapsed_s,
        'total_wall_time_s': run.run_log.total_wall_time_s,
        'restarts': run.run_log.restarts,
        'stages': {name: {'final': r.final, 'test_top1_measures': r.top1_label,
                          'wall_time_s': r.wall_time_s, 'health_warnings': r.meta.get('health', [])}
                   for name, r in stages.items()},
        'health_warnings': [f'{name}: {w["message"]}' for name, r in stages.items()
                            for w in r.meta.get('health', [])],
        'grouping_warnings': run.grouping_warnings,
        'class_names': list(run.dataset.class_names),
        **extra,
    }
    summary = reporting.json_safe(summary)
    reporting.write_json(os.path.join(run.workdir, 'summary.json'), summary)
    reporting.plot_learning_curves(run.workdir, os.path.join(run.workdir, 'learning_curves.png'),
                                   {name: r.top1_label for name, r in stages.items()})
    took = f'{summary["wall_time_s"]:.0f} s'
    if summary['restarts']:
        took += f', {summary["total_wall_time_s"]:.0f} s over {summary["restarts"] + 1} runs'
    reporting.log('final: ' + ' '.join(f'{k}={v:.4f}' if v is not None else f'{k}=n/a'
                                       for k, v in summary['final'].items()) +
                  f' ({took}) -> {os.path.join(run.workdir, "summary.json")}')
    return summary

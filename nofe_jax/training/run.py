"""What every recipe shares: the run's set-up (workdir, config.json, data, normalisation),
model constructor options, the checkpoint fingerprint, running a stage, and the summary."""
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nofe_jax import parallel, paths, reporting, validation
from nofe_jax.data import pipeline, sources
from nofe_jax.grouping import clustering
from nofe_jax.models import registry
from nofe_jax.training import durations, init_from, loop, tasks


@dataclasses.dataclass
class Run:
    """What every recipe starts from.

    Nothing is written before the run's set-up has passed: ``workdir`` creates the folder, its
    config.json and this run's entry in runs.json on first use (a stage, a grouping's files, the
    summary), so a start refused at set-up (missing data, K > C, a model too large for the
    images) leaves the workdir as it was and is never counted as a restart.
    """
    config: ml_collections.ConfigDict
    workdir_path: str  # ``~`` expanded
    dataset: sources.Dataset
    normalization: pipeline.Normalization
    start_time: float  # ``time.perf_counter()`` when this process's run began
    # The config fields every stage's checkpoint fits only (``config_fingerprint``).
    fingerprint: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The method's stage blocks in the order its stages run (for the run's ETA).
    stage_blocks: tuple[str, ...] = ()
    # Those whose stage may train no steps (``Method.untrained_stage_blocks``).
    untrained_stage_blocks: tuple[str, ...] = ()
    # What the grouping said about itself (e.g. an arbitrary spectral split), for summary.json.
    grouping_warnings: list[str] = dataclasses.field(default_factory=list)
    _records: tuple[reporting.MetricWriter, reporting.RunLog] | None = dataclasses.field(
        default=None, repr=False)

    @property
    def workdir(self) -> str:
        """The workdir, with config.json and this run's entry in runs.json (made on first use)."""
        if self._records is None:
            os.makedirs(self.workdir_path, exist_ok=True)
            run_log = reporting.RunLog(self.workdir_path, start=self.start_time)
            reporting.write_json(os.path.join(self.workdir_path, 'config.json'),
                                 json.loads(self.config.to_json()))
            self._records = (reporting.MetricWriter(self.workdir_path, run_log), run_log)
        return self.workdir_path

    @property
    def writer(self) -> reporting.MetricWriter:
        """metrics.jsonl and TensorBoard events of the run (starts the workdir's records)."""
        self.workdir  # pylint: disable=pointless-statement
        return self._records[0]

    @property
    def run_log(self) -> reporting.RunLog:
        """This run's entry in runs.json, also its wall time (starts the workdir's records)."""
        self.workdir  # pylint: disable=pointless-statement
        return self._records[1]


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
    untrained_stage_blocks: tuple[str, ...]
    fingerprint_fields: tuple[str, ...]

    def recipe(self) -> Any: ...  # its module: ``build_models(config, num_classes)``


# Config fields every method's checkpoints fit only (shapes, meaning of the outputs, and the seed
# that drew the weights and the batch order); a method adds its own (``Method.fingerprint_fields``).
# Anything else, e.g. the duration, the periods or the learning rate, may change when a run is
# resumed.
SHARED_FINGERPRINT_FIELDS = ('recipe', 'seed', 'model.name', 'model.width_multiplier',
                             'model.extra_layers', 'data.source')


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
    """Joins the processes, loads the data and checks that the method's models take its images;
    writes nothing (``Run.workdir`` starts the workdir's records once the set-up has passed).

    ``method`` (its ``Method``): the option fields its checkpoints fit only, its stage blocks, and
    its recipe's ``build_models``, whose models are checked against the data here (and which
    raise a ``ConfigError`` of their own, e.g. for more experts than classes).
    """
    start_time = time.perf_counter()
    parallel.initialize_distributed(**config.distributed)
    dataset = sources.load_dataset(config.data)
    normalization = pipeline.compute_normalization(dataset.train, config.data.preprocess)
    reporting.log(f'data: {dataset.description} — {len(dataset.train)} train / '
                  f'{len(dataset.test)} test images, {dataset.num_classes} classes'
                  + (' (SYNTHETIC)' if dataset.synthetic else ''))
    if method is not None:
        models = method.recipe().build_models(config, dataset.num_classes)
        input_shape = model_input_shape(dataset, normalization, config.data.preprocess)
        for name, (model, extra) in models.items():
            problem = input_fit_problem(config.model.name, name, model, extra, input_shape)
            if problem:  # one line: the first model that does not fit
                raise validation.ConfigError(problem)
        if config.init_from:
            validation.raise_problems(init_from_problems(config, dataset.num_classes, input_shape))
    return Run(config, paths.expand(workdir), dataset, normalization, start_time,
               config_fingerprint(config, method.fingerprint_fields if method else ()),
               method.stage_blocks if method else (), method.untrained_stage_blocks if method else ())


def model_input_shape(dataset: sources.Dataset, normalization: pipeline.Normalization,
                      preprocess: ml_collections.ConfigDict) -> tuple[int, ...]:
    """[H, W, C] of one test image as the models see it (after the preprocessing)."""
    batch = next(pipeline.eval_batches(dataset.test, 1, preprocess=preprocess,
                                       normalization=normalization, num_workers=0))
    image = batch['image'][0]
    return tuple(image.shape[1:] if image.ndim == 4 else image.shape)  # multi-view [V, H, W, C]


def input_fit_problem(model_name: str, name: str, model, extra_args: Sequence[Any],
                      input_shape: tuple[int, ...]) -> str | None:
    """Why ``model`` (the recipe's model ``name``) cannot take images of ``input_shape`` [H, W, C]:
    a layer whose input or parameters come out empty (a shape-only init: no compilation), or None."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x, *a: model.init(
        {'params': jax.random.key(0), 'dropout': jax.random.key(0)}, x, *a, train=False,
        capture_intermediates=True), x, *extra_args)
    empty = []  # (layer, shape): modules' outputs first (trunk before head), then parameters
    for collection in ('intermediates', 'params'):
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables.get(collection, {}))[0]:
            names = [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]
            layer = '/'.join(n for n in names if n not in ('__call__', 'kernel', 'bias', 'scale'))
            if 0 in leaf.shape and layer and (collection == 'params' or names[-1] == '__call__'):
                empty.append((layer, 'x'.join(str(d) for d in leaf.shape)))
    if not empty:
        return None
    # The first innermost one: trunk/conv1 rather than the trunk holding it.
    layer, shape = next((layer, shape) for layer, shape in empty
                        if not any(other.startswith(f'{layer}/') for other, _ in empty))
    built_for = registry.get_model_spec(model_name).input_shape
    size = 'x'.join(str(d) for d in input_shape)
    return (f'model.name={model_name!r} does not fit the data\'s {size} images (after '
            f'data.preprocess): layer {layer} of its {name} model comes out empty ({shape}). It is '
            f'built for {"x".join(str(d) for d in built_for)} images; choose a model for images this small '
            '(e.g. tiny_cnn) or enlarge them (--config.data.preprocess.resize=...).')


def init_from_problems(config: ml_collections.ConfigDict, num_classes: int,
                       input_shape: tuple[int, ...]) -> list[str]:
    """Why ``config.init_from`` cannot start the config's base model on images of ``input_shape``
    (a layer of another shape; nothing in common), from its metadata and headers only."""
    model = registry.build_base(config.model.name, num_classes, **model_overrides(config))
    source = init_from.source_shapes(paths.expand(config.init_from), config.model.name)
    problem = init_from.fit_problem(config.init_from, config.model.name, source,
                                    init_from.model_shapes(model, input_shape))
    return [problem] if problem else []


def started_from_init(run: Run, stage: loop.Stage, fit: init_from.Fit) -> loop.Stage:
    """``stage`` with its networks started from ``config.init_from`` (when set), which its
    checkpoints record: resuming after changing it is refused."""
    path = run.config.init_from
    fingerprint = {**stage.fingerprint, 'init_from': path}
    if not path:
        return dataclasses.replace(stage, fingerprint=fingerprint)
    assert stage.init_variables is None, stage.name  # one start per stage
    return dataclasses.replace(stage, fingerprint=fingerprint, init_variables=init_from.loader(
        path, run.config.model.name, fit, stage.name))


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
    top level's), started from ``config.init_from`` when set: the flat method's stage, and the
    one NofE's spectral and DMDE's visual groupings start from."""
    config, num_classes = run.config, run.dataset.num_classes
    settings = config[block] if block else config
    stage = loop.Stage(name=name, model=registry.build_base(config.model.name, num_classes,
                                                            **model_overrides(config)),
                       task=tasks.ClassificationTask(num_classes), train_config=settings.train,
                       optim_config=settings.optim, train_indices=train_indices, config_block=block)
    return started_from_init(run, stage, init_from.FLAT)


def run_stage(run: Run, stage: loop.Stage) -> loop.StageResult:
    """``loop.run_stage`` with the run's data, config and writer; the stage's fingerprint gets the
    run's (the method's fields), under the stage's own entries, and it may train no steps where
    the method says so."""
    stage = dataclasses.replace(stage, fingerprint={**run.fingerprint, **stage.fingerprint},
                                untrained_ok=stage.config_block in run.untrained_stage_blocks)
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


PROVENANCE_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy')


def git_state(directory: str) -> dict[str, Any] | None:
    """{'commit', 'dirty'} of the git checkout holding ``directory``; None when it is not one (an
    installed package) or git is absent."""
    def git(*args: str) -> str:
        return subprocess.run(['git', '-C', directory, *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    try:
        commit = git('rev-parse', 'HEAD')
        dirty = bool(git('status', '--porcelain', '--untracked-files=no'))
    except (OSError, subprocess.SubprocessError):
        return None
    return {'commit': commit, 'dirty': dirty}


def provenance() -> dict[str, Any]:
    """What made this run: the code (git commit, package versions), the devices, the command."""
    import nofe_jax  # pylint: disable=import-outside-toplevel

    versions = {}
    for package in PROVENANCE_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    versions['nofe_jax'] = nofe_jax.__version__
    device = jax.devices()[0]
    return {
        'git': git_state(os.path.dirname(os.path.abspath(nofe_jax.__file__))),
        'versions': versions,
        'devices': {'backend': jax.default_backend(), 'kind': device.device_kind,
                    'count': jax.device_count(), 'process_count': jax.process_count()},
        'command': list(sys.argv),
    }


def finish(run: Run, final: dict, stages: dict[str, loop.StageResult], **extra) -> dict:
    """Writes summary.json and the learning-curve plot; returns the summary.

    ``wall_time_s`` is this process's; ``total_wall_time_s`` adds the earlier runs of the
    workdir (``restarts`` of them) that this one resumed: both from one reading of the clock.
    """
    run.writer.close()
    wall_time_s = run.run_log.update()
    summary = {
        'recipe': run.config.recipe,
        'model': run.config.model.name,
        'dataset': run.dataset.name,
        'data_description': run.dataset.description,
        'synthetic': run.dataset.synthetic,
        'final': final,
        'wall_time_s': wall_time_s,
        'total_wall_time_s': run.run_log.total_wall_time_s,
        'restarts': run.run_log.restarts,
        'stages': {name: {'final': r.final, 'test_top1_measures': r.top1_label,
                          'wall_time_s': r.wall_time_s,
                          'parameters': registry.count_parameters(r.variables),
                          'health_warnings': r.meta.get('health', [])}
                   for name, r in stages.items()},
        'health_warnings': [f'{name}: {w["message"]}' for name, r in stages.items()
                            for w in r.meta.get('health', [])],
        'grouping_warnings': run.grouping_warnings,
        'class_names': list(run.dataset.class_names),
        **provenance(),
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

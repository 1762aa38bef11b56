"""The one training loop: steps, periodic host-side hooks, eval, checkpoints, metrics.

Recipes configure a ``Stage`` (model, task, grouping arrays, hooks) and call
``run_stage``; everything with side effects happens here or in the hooks.
Rerunning a stage on the same workdir resumes from its latest checkpoint and
continues exactly: the data order is a function of (seed, epoch), the step's
randomness of (state.rng, step), and hooks draw from (seed, step). SIGTERM or
SIGINT during a stage saves a checkpoint at the next step boundary and raises
``TrainingStopped``.
"""
import contextlib
import dataclasses
import functools
import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from nofe_jax import parallel, reporting, validation
from nofe_jax.data import pipeline, sources
from nofe_jax.training import checkpoints, config_checks, durations, faults, health, optim, steps, tasks
from nofe_jax.training.state import TrainState, create_train_state


# (training example indices, output names) -> {'label': [N], name: [N, ...]}; see _Runner.predict.
Predict = Callable[..., dict[str, np.ndarray]]


class NonFiniteLossError(FloatingPointError):
    """The training loss or the parameters became NaN or Inf."""


class TrainingStopped(Exception):
    """SIGTERM or SIGINT stopped a stage at a step boundary, after a checkpoint of that step."""

    def __init__(self, signum: int, stage: str, step: int):
        super().__init__(f'[{stage}] stopped by {signal.Signals(signum).name} at step {step}, '
                         'checkpoint saved; rerun the same command to resume.')
        self.exit_code = 128 + signum  # the shell's status for a process ended by that signal


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_signals() -> Iterator[list[int]]:
    """Within: SIGTERM/SIGINT are appended to the yielded list instead of acting at once.

    A second signal of the same kind acts as usual (e.g. a second Ctrl-C interrupts).
    Outside the main thread, where Python cannot catch signals, the list stays empty.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def record(signum, frame):
        del frame
        received.append(signum)
        signal.signal(signum, previous[signum])

    for signum in STOP_SIGNALS:
        signal.signal(signum, record)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclasses.dataclass
class HookContext:
    """What a hook sees between steps; it may replace ``grouping`` and extend ``meta``."""
    step: int
    epoch: float
    state: TrainState
    grouping: dict[str, np.ndarray]
    meta: dict[str, Any]
    rng: np.random.Generator
    predict: Predict
    log: Callable[[dict[str, float]], None]


@dataclasses.dataclass(frozen=True)
class Hook:
    """A host-side action every ``every`` (a duration), e.g. a specialty update.

    It first runs at the first period end at or after ``start`` (a duration).
    ``fn(ctx)`` returns new grouping arrays (same shapes) or None.
    """
    name: str
    every: str
    fn: Callable[[HookContext], dict[str, np.ndarray] | None]
    start: str = '0 steps'


@dataclasses.dataclass
class Stage:
    """One trained model: what to train, on which grouping, with which hooks."""
    name: str
    model: nn.Module
    task: tasks.Task
    train_config: ml_collections.ConfigDict
    optim_config: ml_collections.ConfigDict
    grouping: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    hooks: tuple[Hook, ...] = ()
    # Replaces the fresh init (e.g. copy a generalist's trunk); gets the fresh variables. Not
    # called when the stage resumes from a checkpoint.
    init_variables: Callable[[dict], dict] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Indices into dataset.train this stage trains on (None: all), e.g. all but a held-out S.
    train_indices: np.ndarray | None = None
    # The config block holding train_config/optim_config ('' = top level), named in messages.
    config_block: str = ''
    # The model is whole at its start (after ``init_variables``): a duration of 0 is allowed, and
    # the stage then evaluates and saves its start (``training.run.run_stage`` sets it from
    # ``Method.untrained_stage_blocks``).
    untrained_ok: bool = False
    # {dotted config field: value} the stage's checkpoints fit only (shapes of its grouping arrays
    # and networks, meaning of its outputs): resuming with another value is refused, naming the
    # field. ``training.run.run_stage`` adds the method's fields (``Method.fingerprint_fields``).
    fingerprint: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class StageResult:
    """The trained state, final grouping, metadata and final test metrics."""
    state: TrainState
    grouping: dict[str, np.ndarray]
    meta: dict[str, Any]
    final: dict[str, float]
    wall_time_s: float
    top1_label: str  # what final['test/top1'] measures, e.g. 'specialty top-1 (5-way)'
    predict: Predict  # the trained state's named outputs on training examples

    @property
    def variables(self) -> dict[str, Any]:
        """The trained model's variables: {'params': ..., and its other collections}."""
        return {'params': self.state.params, **self.state.model_state}


def reduce_metrics(sums: dict[str, tuple]) -> dict[str, float]:
    """Mean of each (sum, count) pair; per-class vectors become their class average."""
    result = {}
    for name, (total, count) in sums.items():
        total, count = np.asarray(total, np.float64), np.asarray(count, np.float64)
        if total.ndim:  # per-class (correct, count) vectors
            seen = count > 0
            result[name] = float(np.mean(total[seen] / count[seen])) if seen.any() else float('nan')
        else:
            result[name] = float(total / count) if count else float('nan')
    return result


def _add(a, b):
    return jax.tree.map(lambda x, y: x + y, a, b)


def config_field(stage: Stage, name: str) -> str:
    """The dotted config path of ``name`` ('train', 'optim', ...) in ``stage``'s config block."""
    return f'{stage.config_block}.{name}' if stage.config_block else name


def learning_rate_fields(stage: Stage) -> str:
    """The config fields that set ``stage``'s learning rate, with their values."""
    optim_config, prefix = stage.optim_config, config_field(stage, 'optim')
    rate = f'{prefix}.lr={optim_config.lr}'
    if optim_config.schedule == 'piecewise' and optim_config.boundary_lrs:
        rate += f', {prefix}.boundary_lrs={tuple(optim_config.boundary_lrs)}'
    return f'{rate} ({prefix}.schedule={optim_config.schedule!r}, {prefix}.warmup={optim_config.warmup!r})'


def non_finite_error(stage: Stage, what: str, step: int) -> NonFiniteLossError:
    """The error for a NaN/Inf found at ``step``: names the stage and its learning-rate fields."""
    return NonFiniteLossError(
        f'[{stage.name}] {what} at step {step}; the run stopped and nothing from that step on was '
        f'saved (the last good checkpoint is kept). Lower {learning_rate_fields(stage)}, add a '
        'warm-up, or compute in float32.')


def _check_finite(stage: Stage, step_losses: list, first_step: int) -> None:
    if not step_losses:
        return
    losses = np.asarray(jax.device_get(step_losses), np.float64)[:, 0]
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise non_finite_error(stage, f'training loss became {losses[bad[0]]}',
                               first_step + int(bad[0]) + 1)


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def check_state_finite(stage: Stage, state: TrainState, step_losses: list, first_step: int) -> None:
    """Raises ``NonFiniteLossError`` unless the unchecked losses and the parameters are finite.

    Runs before every checkpoint save and hook, so a NaN never reaches either.
    """
    _check_finite(stage, step_losses, first_step)
    if not bool(_all_finite(state.params)):
        raise non_finite_error(stage, 'parameters became NaN or Inf', int(jax.device_get(state.step)))


def checkpoint_fingerprint(stage: Stage, dataset, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """What a checkpoint of ``stage`` records of its config and data, to refuse resuming another:
    the stage's own ``fingerprint`` (config fields), its name, its last-layer warm-up (which adds
    a counter to the optimiser's state), the data's classes and input shape."""
    return {'stage': stage.name, **stage.fingerprint,
            config_field(stage, 'optim.last_layer_only'): stage.optim_config.last_layer_only,
            'dataset': dataset.name, 'num_classes': dataset.num_classes,
            'input_shape': [int(d) for d in input_shape]}


class _Runner:
    """Compiled steps, data and devices of one stage."""

    def __init__(self, stage: Stage, dataset, normalization, config):
        self.stage, self.dataset, self.config = stage, dataset, config
        self.normalization = normalization
        self.preprocess = config.data.preprocess
        self.mesh = parallel.data_mesh()
        self.batch_sharding = parallel.batch_sharded(self.mesh)
        train_config = stage.train_config
        validation.raise_problems(config_checks.train_config_problems(
            train_config, config_field(stage, 'train'), stage.untrained_ok))
        parallel.check_batch_size(train_config.batch_size, self.mesh, 'batch_size')
        # Eval pads with masked examples anyway, so any eval batch size runs on any device count.
        self.eval_batch_size = parallel.padded_batch_size(train_config.eval_batch_size, self.mesh)
        self.train_source = (dataset.train if stage.train_indices is None
                             else sources.SubsetSource(dataset.train, stage.train_indices))
        self.steps_per_epoch = pipeline.steps_per_epoch(len(self.train_source), train_config.batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f'batch_size={train_config.batch_size} is larger than the training set '
                             f'({len(self.train_source)} examples).')
        self.total_steps = self.to_steps(train_config.duration)
        self.schedule = optim.learning_rate_schedule(
            stage.optim_config, total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch, batch_size=train_config.batch_size)
        repl = parallel.replicated(self.mesh)
        self.train_step = jax.jit(steps.make_train_step(stage.task),
                                  donate_argnums=0, out_shardings=repl)
        self.eval_step = jax.jit(steps.make_eval_step(stage.task), out_shardings=repl)
        self.predict_steps: dict[tuple[str, ...], Callable] = {}  # compiled per set of outputs

    def to_steps(self, duration: str) -> int:
        """A duration of this stage ('2 epochs', '500 steps', '10000 examples') in steps."""
        return durations.to_steps(duration, steps_per_epoch=self.steps_per_epoch,
                                  batch_size=self.stage.train_config.batch_size)

    def process_kwargs(self) -> dict:
        return {'process_index': jax.process_index(), 'process_count': jax.process_count()}

    def train_batches(self, epoch: int) -> Iterator[dict]:
        train_config = self.stage.train_config
        # Preprocess the next batches on a host thread while the device runs the step.
        return pipeline.prefetch(pipeline.train_batches(
            self.train_source, train_config.batch_size, epoch=epoch, seed=self.config.seed,
            preprocess=self.preprocess, normalization=self.normalization, **self.process_kwargs()))

    def eval_batches(self, source, indices=None) -> Iterator[dict]:
        return pipeline.eval_batches(
            source, self.eval_batch_size, preprocess=self.preprocess,
            normalization=self.normalization, seed=self.config.seed, indices=indices,
            **self.process_kwargs())

    def model_input(self) -> np.ndarray:
        """One preprocessed test image [1, H, W, C], as the model sees it."""
        sample = next(self.eval_batches(self.dataset.test))['image'][:1]
        return sample[:, 0] if sample.ndim == 5 else sample  # multi-view [1, V, H, W, C]: one view

    def init_state(self, sample: np.ndarray, resuming: bool = False) -> TrainState:
        """The stage's start; when ``resuming``, only a template the checkpoint restores into
        (``init_variables`` is skipped: what it reads is not read again)."""
        stage = self.stage
        init_rng, state_rng = jax.random.split(jax.random.key(self.config.seed))
        kwargs = stage.task.model_kwargs(stage.grouping)
        variables = jax.jit(lambda r: stage.model.init(
            {'params': r, 'dropout': r}, sample, train=False, **kwargs))(init_rng)
        if stage.init_variables is not None and not resuming:
            variables = stage.init_variables(variables)
        tx = optim.create_optimizer(stage.optim_config, variables['params'], self.schedule,
                                    last_layer_steps=self.to_steps(stage.optim_config.last_layer_only))
        # Jitted: the optimiser's zero buffers in one program, not one eager op per leaf shape.
        state = jax.jit(lambda v, r: create_train_state(stage.model.apply, v, tx, r))(
            variables, state_rng)
        return parallel.replicate(state, self.mesh)

    def device_grouping(self, grouping: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return parallel.replicate({k: np.asarray(v) for k, v in grouping.items()}, self.mesh)

    def evaluate(self, state, grouping_dev, source) -> tuple[dict[str, float], tuple | None]:
        """(metrics, (predicted, true) target histograms or None if the task has none) over the
        whole of ``source``."""
        sums = None
        for batch in self.eval_batches(source):
            metrics = self.eval_step(state, parallel.to_global(batch, self.batch_sharding),
                                     grouping_dev)
            sums = metrics if sums is None else _add(sums, metrics)
        sums = jax.device_get(sums)
        histograms = sums.pop(tasks.PREDICTION_HISTOGRAMS, None)
        return reduce_metrics(sums), histograms

    def predict(self, state, grouping_dev, indices: np.ndarray,
                outputs: tuple[str, ...] = ('top1',)) -> dict[str, np.ndarray]:
        """{'label': [N], name: [N, ...] for each of the task's ``outputs``} of the training
        examples ``indices``, in eval mode, on every process."""
        if outputs not in self.predict_steps:
            self.predict_steps[outputs] = jax.jit(steps.make_predict_step(self.stage.task, outputs))
        predict_step, parts = self.predict_steps[outputs], []
        for batch in self.eval_batches(self.dataset.train, indices):
            predicted = predict_step(state, parallel.to_global(batch, self.batch_sharding),
                                     grouping_dev)
            local = {'label': batch['label'], 'mask': batch['mask']}
            predicted, local = multihost_utils.process_allgather((predicted, local), tiled=True)
            keep = np.asarray(local['mask']) > 0
            parts.append({'label': np.asarray(local['label'])[keep],
                          **{name: np.asarray(v)[keep] for name, v in predicted.items()}})
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def run_stage(stage: Stage, dataset, normalization, config: ml_collections.ConfigDict,
              workdir: str, writer: reporting.MetricWriter, later_examples: int = 0) -> StageResult:
    """Trains ``stage`` to its duration (resuming if a checkpoint exists) and evaluates it.

    ``later_examples``: what the run's stages after this one will train on, for the ETA.
    Raises ``TrainingStopped`` after saving a checkpoint if SIGTERM or SIGINT arrives.
    """
    with stop_signals() as received:
        result = _StageTraining(stage, dataset, normalization, config, workdir, writer, received,
                                later_examples).train()
    if received:  # after the last step's check: the stage is complete and saved
        raise TrainingStopped(received[0], stage.name, int(jax.device_get(result.state.step)))
    return result


@dataclasses.dataclass(frozen=True)
class Periodic:
    """An action between steps, under one timing rule: after every ``every``-th step from
    ``start`` on (``every`` 0: never), after the stage's last step if ``at_end``, and when a stop
    signal has arrived if ``on_stop``. Actions that keep or act on the state (hooks, checkpoints)
    set ``needs_finite``: the loop checks the losses and parameters first, so a NaN never
    reaches them."""
    name: str
    every: int
    run: Callable[[], None]
    start: int = 0
    at_end: bool = True
    on_stop: bool = False
    needs_finite: bool = False

    def due(self, step: int, last: bool, stopping: bool) -> bool:
        return ((last and self.at_end) or (stopping and self.on_stop)
                or (step >= self.start and durations.is_time(step, self.every)))


class GroupingArrays:
    """A stage's grouping arrays on the host (hooks, checkpoints) and on the devices (steps),
    replaced together so the two never differ."""

    def __init__(self, host: dict[str, Any], to_device: Callable[[dict], dict]):
        self._to_device = to_device
        self.host = {k: np.asarray(v) for k, v in host.items()}
        self.device = to_device(self.host)

    def update(self, new: dict[str, Any]) -> None:
        self.host = {**self.host, **{k: np.asarray(v) for k, v in new.items()}}
        self.device = self._to_device(self.host)


class _StageTraining:
    """One stage trained from its start (or its latest checkpoint) to its end: the state, the
    grouping arrays and metadata, the current log period, and the periodic actions over them."""

    def __init__(self, stage: Stage, dataset, normalization, config: ml_collections.ConfigDict,
                 workdir: str, writer: reporting.MetricWriter, stop: list[int], later_examples: int):
        self.start_time = time.perf_counter()
        self.stage, self.dataset, self.config, self.writer, self.stop = stage, dataset, config, writer, stop
        self.runner = runner = _Runner(stage, dataset, normalization, config)
        train_config = stage.train_config
        sample = runner.model_input()
        self.ckpt = checkpoints.StageCheckpoints(workdir, stage.name,
                                                 max_to_keep=train_config.keep_checkpoints)
        resuming = self.ckpt.latest_step() is not None
        state = runner.init_state(sample, resuming)
        host_grouping = {k: np.asarray(v) for k, v in stage.grouping.items()}
        fingerprint = checkpoint_fingerprint(stage, dataset, sample.shape[1:])
        meta = {'stage': stage.name, 'wall_time_s': 0.0, **stage.meta}
        meta.setdefault('health', [])
        if resuming:
            restored = self.ckpt.restore(state, host_grouping, fingerprint)
            for line in restored.set_aside:
                reporting.log(f'[{stage.name}] WARNING: {line}')
            state, meta, host_grouping = restored.state, restored.meta, restored.grouping
            reporting.log(f'[{stage.name}] resumed from step {int(state.step)} ({self.ckpt.directory})')
        meta['fingerprint'] = fingerprint
        self.state, self.meta = state, meta
        self.grouping = GroupingArrays(host_grouping, runner.device_grouping)
        self.step = int(jax.device_get(state.step))
        self.progress = reporting.Progress(runner.total_steps, train_config.batch_size, stage.name,
                                           later_examples)
        self.period: list[dict] = []  # the step metrics since the last log
        self.period_start = self.step
        self.final: dict[str, float] = {}
        # The training loss is judged over the log period holding the end of the first epoch.
        self.learning_check_step = min(runner.steps_per_epoch, runner.total_steps)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.writer.write(step, scalars, stage=self.stage.name,
                          epoch=round(step / self.runner.steps_per_epoch, 4))

    def warn(self, found: str | None) -> None:
        """Prints and records a health warning, once per message."""
        if found is not None and found not in (w['message'] for w in self.meta['health']):
            reporting.log(f'[{self.stage.name}] WARNING: {found}')
            self.meta['health'].append({'step': self.step, 'message': found})

    def evaluate(self, last: bool) -> dict[str, float]:
        metrics, histograms = self.runner.evaluate(self.state, self.grouping.device, self.dataset.test)
        if last and histograms is not None:  # a model may pass through a collapsed phase early
            self.warn(health.collapse_warning(*histograms))
        return {f'test/{k}': v for k, v in metrics.items()}

    def log_period(self) -> None:
        stage, runner, step = self.stage, self.runner, self.step
        _check_finite(stage, [m['objective'] for m in self.period], self.period_start)
        sums = jax.tree.map(lambda *xs: sum(xs), *self.period)
        scalars = {f'train/{k}': v for k, v in reduce_metrics(jax.device_get(sums)).items()}
        scalars['train/lr'] = float(runner.schedule(step - 1))
        rate = self.progress.report(step, step / runner.steps_per_epoch,
                                    {'loss': scalars['train/loss'], 'top1': scalars['train/top1']})
        if np.isfinite(rate):  # NaN for a period of the first step only (its compilation)
            scalars['train/images_per_s'] = rate
        self.log(step, scalars)
        if self.period_start < self.learning_check_step <= step:
            self.warn(health.chance_loss_warning(scalars['train/loss'], stage.task.num_targets,
                                                 step=step, epoch=step / runner.steps_per_epoch))
        self.period, self.period_start = [], step

    def run_hook(self, hook: Hook) -> None:
        step = self.step
        ctx = HookContext(step=step, epoch=step / self.runner.steps_per_epoch, state=self.state,
                          grouping=self.grouping.host, meta=self.meta,
                          rng=np.random.default_rng([self.config.seed, step]),
                          predict=functools.partial(self.runner.predict, self.state,
                                                    self.grouping.device),
                          log=lambda scalars: self.log(step, scalars))
        new_grouping = hook.fn(ctx)
        faults.reached('hook')
        if new_grouping is not None:
            self.grouping.update(new_grouping)

    def evaluate_and_log(self) -> None:
        self.final = self.evaluate(self.step == self.runner.total_steps)
        self.log(self.step, self.final)
        reporting.log(f'[{self.stage.name}] step {self.step}: '
                      + ' '.join(f'{k}={v:.4f}' for k, v in self.final.items()))

    def save(self) -> None:
        self.meta['wall_time_s'] += time.perf_counter() - self.start_time
        self.start_time = time.perf_counter()
        self.ckpt.save(self.state, self.grouping.host, self.meta)
        faults.reached('checkpoint')

    def actions(self) -> tuple[Periodic, ...]:
        """What runs between steps, in this order: log, hooks, eval, checkpoint."""
        every, train_config = self.runner.to_steps, self.stage.train_config
        return (
            Periodic('log', every(train_config.log_every), self.log_period),
            *(Periodic(f'hook {h.name}', every(h.every), functools.partial(self.run_hook, h),
                       start=every(h.start), at_end=False, needs_finite=True)
              for h in self.stage.hooks),
            Periodic('eval', every(train_config.eval_every), self.evaluate_and_log),
            Periodic('checkpoint', every(train_config.checkpoint_every), self.save, on_stop=True,
                     needs_finite=True),
        )

    def run_actions(self, actions: tuple[Periodic, ...], last: bool) -> None:
        """The actions due after the current step; their time is not training time (but the log's)."""
        for action in actions:
            if action.due(self.step, last, bool(self.stop)):
                began = time.perf_counter()
                if action.needs_finite:
                    check_state_finite(self.stage, self.state,
                                       [m['objective'] for m in self.period], self.period_start)
                action.run()
                if action.name != 'log':
                    self.progress.exclude(time.perf_counter() - began)

    def train(self) -> StageResult:
        """Steps to the stage's end (raising ``TrainingStopped`` on a stop signal), then the result."""
        runner, actions, clock_started = self.runner, self.actions(), False
        in_flight = None  # the metrics of the step dispatched before the current one
        while self.step < runner.total_steps:
            epoch = self.step // runner.steps_per_epoch
            batches = itertools.islice(runner.train_batches(epoch),
                                       self.step % runner.steps_per_epoch, None)
            for batch in batches:
                self.state, metrics = runner.train_step(
                    self.state, parallel.to_global(batch, runner.batch_sharding), self.grouping.device)
                faults.reached('step')
                # At most one step ahead of the device: a stop signal (a preemption's grace period)
                # must not wait behind a queue of dispatched steps before its checkpoint is written.
                jax.block_until_ready(in_flight)
                in_flight = metrics
                self.period.append(metrics)
                self.step += 1
                if not clock_started:  # the rate starts after the first step's compilation
                    jax.block_until_ready(metrics)
                    self.progress.start_clock(self.step)
                    clock_started = True
                last = self.step == runner.total_steps
                self.run_actions(actions, last)
                if self.stop:
                    self.ckpt.close()
                    raise TrainingStopped(self.stop[0], self.stage.name, self.step)
                if last:
                    break
        if runner.total_steps == 0 and self.ckpt.latest_step() is None:  # a stage of no steps
            self.evaluate_and_log()
            self.save()
        if not self.final:  # resumed after the last step: evaluate the restored state
            self.final = self.evaluate(True)
        self.ckpt.close()
        self.meta['wall_time_s'] += time.perf_counter() - self.start_time
        return StageResult(state=self.state, grouping=self.grouping.host, meta=self.meta,
                           final=self.final, wall_time_s=self.meta['wall_time_s'],
                           top1_label=self.stage.task.top1_label,
                           predict=functools.partial(runner.predict, self.state, self.grouping.device))

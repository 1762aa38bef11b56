"""The loop on real data (sklearn digits, tiny CNN): learning, resume, NaN guard,
no recompile when the grouping changes, multi-device equivalence."""
import dataclasses
import functools
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import common
from nofe_jax import reporting
from nofe_jax.data import pipeline, sources
from nofe_jax.models import registry
from nofe_jax.training import checkpoints, loop, steps, tasks


@pytest.fixture(scope='module')
def digits():
    dataset = sources.load_digits_dataset()
    config = common.get_config()
    return dataset, pipeline.compute_normalization(dataset.train, config.data.preprocess)


def _config(duration='2 epochs', schedule='constant'):
    config = common.get_config()
    config.train.update(duration=duration, batch_size=32, eval_batch_size=250,
                        log_every='10 steps', eval_every='1 epoch', checkpoint_every='1 epoch')
    config.optim.update(name='sgd', lr=0.05, schedule=schedule)
    return config


@dataclasses.dataclass(frozen=True)
class _LossTask(tasks.ClassificationTask):
    """A test task whose loss is ``loss_fn(logits, out, targets, params, grouping)``."""
    loss_fn: Callable | None = None

    def loss(self, logits, out, targets, params, grouping):
        return self.loss_fn(logits, out, targets, params, grouping)


def _stage(config, num_classes=10, loss_fn=None, **kw):
    task = (tasks.ClassificationTask(num_classes) if loss_fn is None
            else _LossTask(num_classes, loss_fn=loss_fn))
    return loop.Stage(name='base', model=registry.build_base('tiny_cnn', num_classes), task=task,
                      train_config=config.train, optim_config=config.optim, **kw)


def _run(stage, digits, config, workdir):
    dataset, normalization = digits
    writer = reporting.MetricWriter(str(workdir))
    try:
        return loop.run_stage(stage, dataset, normalization, config, str(workdir), writer)
    finally:
        writer.close()


def test_tiny_cnn_learns_digits(digits, tmp_path):
    config = _config('8 epochs', 'cosine')
    result = _run(_stage(config), digits, config, tmp_path)
    assert result.final['test/top1'] >= 0.90
    train_losses = [r['train/loss'] for r in reporting.read_metrics(str(tmp_path)) if 'train/loss' in r]
    assert train_losses[-1] < 0.5 * train_losses[0]
    # per-class average accuracy is reported and close to overall accuracy on balanced digits
    assert abs(result.final['test/per_class_top1'] - result.final['test/top1']) < 0.05


class Preempted(Exception):
    pass


def _preempt_after_save(monkeypatch, at_step):
    original = checkpoints.StageCheckpoints.save
    def save(self, state, grouping, meta):
        original(self, state, grouping, meta)
        if int(state.step) == at_step:
            self.wait()
            raise Preempted
    monkeypatch.setattr(checkpoints.StageCheckpoints, 'save', save)


def test_resumed_run_equals_uninterrupted_run(digits, tmp_path, monkeypatch):
    config = _config('3 epochs', 'cosine')  # the schedule depends on the total: a real test
    full = _run(_stage(config), digits, config, tmp_path / 'full')
    steps_per_epoch = len(digits[0].train) // 32
    with monkeypatch.context() as m:
        _preempt_after_save(m, steps_per_epoch)
        with pytest.raises(Preempted):
            _run(_stage(config), digits, config, tmp_path / 'cut')
    resumed = _run(_stage(config), digits, config, tmp_path / 'cut')
    assert resumed.final == full.final
    chex.assert_trees_all_close(resumed.state.params, full.state.params, rtol=0, atol=0)


@pytest.fixture
def default_sigint_handler():
    """Python's own SIGINT handler during the test: a pytest-xdist worker starts with SIGINT ignored
    (Ctrl-C is the controller's), as does a background job."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_saves_the_current_step_and_stops_with_status_130(digits, tmp_path, default_sigint_handler):
    config = _config('2 epochs')
    interrupt = loop.Hook('interrupt', '10 steps', lambda ctx: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(loop.TrainingStopped, match=r'\[base\] stopped by SIGINT at step 10, ') as e:
        _run(_stage(config, hooks=(interrupt,)), digits, config, tmp_path)
    assert e.value.exit_code == 130
    assert checkpoints.StageCheckpoints(str(tmp_path), 'base').latest_step() == 10
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_the_host_dispatches_at_most_one_step_ahead_of_the_device(digits, tmp_path, monkeypatch):
    """A stop signal is acted on at the next step; the checkpoint it writes then waits for the
    steps already dispatched, so the host must not queue a log period's worth of them."""
    not_ready_at_dispatch = []
    make_runner = loop._Runner.__init__

    def runner_with_a_slow_step(self, *args, **kwargs):
        make_runner(self, *args, **kwargs)
        step, dispatched = self.train_step, []
        # Far slower than the host's loop, so without the bound the host runs ahead.
        burn = jax.jit(lambda x: functools.reduce(lambda y, _: jnp.tanh(y @ y), range(20), x))

        def slow_step(state, batch, grouping):
            not_ready_at_dispatch.append(sum(not m.is_ready() for m in dispatched))
            state, metrics = step(state, batch, grouping)
            total, count = metrics['objective']
            slow = burn(jnp.full((256, 256), 1e-3) + total)
            metrics = {**metrics, 'objective': (total + 0 * slow[0, 0], count)}
            dispatched.append(metrics['objective'][0])
            return state, metrics

        self.train_step = slow_step

    monkeypatch.setattr(loop._Runner, '__init__', runner_with_a_slow_step)
    config = _config('30 steps')
    config.train.update(log_every='30 steps')
    _run(_stage(config), digits, config, tmp_path)
    assert len(not_ready_at_dispatch) == 30 and max(not_ready_at_dispatch) <= 1


def test_non_finite_loss_stops_with_step_and_keeps_last_checkpoint(digits, tmp_path):
    config = _config('1 epochs')
    _run(_stage(config), digits, config, tmp_path)
    saved = checkpoints.StageCheckpoints(str(tmp_path), 'base').latest_step()
    config.train.duration = '2 epochs'
    poisoned = lambda logits, out, targets, params, grouping: jnp.mean(logits) * jnp.nan
    with pytest.raises(loop.NonFiniteLossError, match=f'step {saved + 1}'):
        _run(_stage(config, loss_fn=poisoned), digits, config, tmp_path)
    ckpt = checkpoints.StageCheckpoints(str(tmp_path), 'base')
    assert ckpt.latest_step() == saved
    result = _run(_stage(_config('1 epochs')), digits, _config('1 epochs'), tmp_path)
    assert np.isfinite(result.final['test/loss'])


def _nan_gradients(logits, out, targets, params, grouping):
    """A finite loss whose gradient is NaN (d sqrt(z)/dz at 0 is inf, times dz/dp = 0)."""
    zero = sum(jnp.sum(p * 0.0) for p in jax.tree.leaves(params))
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean() + jnp.sqrt(zero)


def test_nan_parameters_never_reach_a_checkpoint(digits, tmp_path):
    """The loss of the last step is finite, the parameters after it are not: no save."""
    config = _config('1 steps')
    with pytest.raises(loop.NonFiniteLossError) as e:
        _run(_stage(config, loss_fn=_nan_gradients), digits, config, tmp_path)
    message = str(e.value)
    assert '[base] parameters became NaN or Inf at step 1' in message
    assert "optim.lr=0.05 (optim.schedule='constant'" in message
    assert checkpoints.StageCheckpoints(str(tmp_path), 'base').latest_step() is None


def test_nan_loss_stops_before_hooks_and_checkpoints_between_log_steps(digits, tmp_path):
    """Logged only at the end: the epoch-end hook and checkpoint check the loss themselves."""
    config = _config('2 epochs')
    config.train.log_every = '0 steps'
    ran = []
    stage = _stage(config, loss_fn=lambda logits, *_: jnp.mean(logits) * jnp.nan,
                   hooks=(loop.Hook('record', '1 epoch', ran.append),), config_block='experts')
    with pytest.raises(loop.NonFiniteLossError, match=r'\[base\] training loss became nan at step 1;'
                                                      r'.*experts\.optim\.lr=0\.05'):
        _run(stage, digits, config, tmp_path)
    assert ran == []
    assert checkpoints.StageCheckpoints(str(tmp_path), 'base').latest_step() is None


def test_changing_the_grouping_never_recompiles(digits, tmp_path, monkeypatch):
    """A generalist whose class -> specialty map changes every epoch traces its step once."""
    original = steps.make_train_step
    monkeypatch.setattr(steps, 'make_train_step',
                        lambda *a, **k: chex.assert_max_traces(original(*a, **k), n=1))
    seen = []

    def reshuffle(ctx):
        new = ctx.rng.permutation(np.arange(10) % 3).astype(np.int32)
        seen.append(new)
        return {'class_to_specialty': new}

    config = _config('3 epochs')
    stage = loop.Stage(name='generalist', model=registry.build_base('tiny_cnn', 3),
                       task=tasks.ClassificationTask(3, target_map='class_to_specialty'),
                       train_config=config.train, optim_config=config.optim,
                       grouping={'class_to_specialty': (np.arange(10) % 3).astype(np.int32)},
                       hooks=(loop.Hook('reshuffle', '1 epoch', reshuffle),))
    result = _run(stage, digits, config, tmp_path)
    assert len(seen) == 3 and len({tuple(s) for s in seen}) > 1
    np.testing.assert_array_equal(result.grouping['class_to_specialty'], seen[-1])


_DEVICE_SCRIPT = textwrap.dedent('''
    import json, sys
    from experiments.configs import quickstart
    from nofe_jax import methods
    config = quickstart.get_config('base')
    config.train.update(duration='1 epochs', batch_size=32, eval_batch_size=256)
    summary = methods.train_and_evaluate(config, sys.argv[1])
    import jax
    print(json.dumps({'devices': jax.device_count(), **summary['final']}))
''')


def test_eight_simulated_devices_give_the_same_metrics(tmp_path):
    results = []
    for count in (1, 8):
        env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={count}')
        out = subprocess.run([sys.executable, '-c', _DEVICE_SCRIPT, str(tmp_path / str(count))],
                             env=env, capture_output=True, text=True, timeout=300, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    one, eight = results
    assert one['devices'] == 1 and eight['devices'] == 8
    for key in ('test/top1', 'test/top5', 'test/loss', 'test/per_class_top1'):
        assert eight[key] == pytest.approx(one[key], abs=1e-4), key


def test_corrupt_checkpoint_says_what_to_do_and_deletes_nothing(digits, tmp_path):
    config = _config('1 epochs')
    _run(_stage(config), digits, config, tmp_path)
    step_dir = glob.glob(str(tmp_path / 'checkpoints' / 'base' / '*'))[0]
    for path in glob.glob(os.path.join(step_dir, 'state', '**', '*'), recursive=True):
        if os.path.isfile(path):
            with open(path, 'wb') as f:
                f.write(b'not a checkpoint')
    before = sorted(glob.glob(os.path.join(step_dir, '**'), recursive=True))
    with pytest.raises(checkpoints.CheckpointError, match='move the folder'):
        _run(_stage(config), digits, config, tmp_path)
    assert sorted(glob.glob(os.path.join(step_dir, '**'), recursive=True)) == before

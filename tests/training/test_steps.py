"""Step functions: no hidden host<->device transfers, multi-view eval averages softmax."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nofe_jax.models import registry
from nofe_jax.training import steps, tasks
from nofe_jax.training.state import create_train_state


def _state(num_outputs=3):
    model = registry.build_base('tiny_cnn', num_outputs)
    x = jnp.zeros((1, 8, 8, 1))
    variables = jax.jit(lambda r: model.init(r, x, train=False))(jax.random.key(0))
    return create_train_state(model.apply, variables, optax.sgd(0.1), jax.random.key(1))


def _batch(n=4, views=None):
    rng = np.random.default_rng(0)
    shape = (n, 8, 8, 1) if views is None else (n, views, 8, 8, 1)
    return {'image': rng.normal(size=shape).astype(np.float32),
            'label': rng.integers(0, 10, n).astype(np.int32),
            'mask': np.ones(n, np.float32)}


def test_steps_make_no_implicit_transfers():
    """Everything a step needs is placed explicitly; inside it nothing crosses to the host."""
    task = tasks.ClassificationTask(3, target_map='class_to_specialty')
    state = jax.device_put(_state())
    batch = jax.device_put(_batch())
    grouping = jax.device_put({'class_to_specialty': (np.arange(10) % 3).astype(np.int32)})
    train_step = jax.jit(steps.make_train_step(task))
    eval_step = jax.jit(steps.make_eval_step(task))
    with jax.transfer_guard('disallow'):
        new_state, metrics = train_step(state, batch, grouping)
        eval_metrics = eval_step(new_state, batch, grouping)
    assert int(new_state.step) == 1
    assert float(metrics['loss'][1]) == 4 and float(eval_metrics['top1'][1]) == 4


def test_multi_view_eval_averages_the_softmax_over_views():
    task = tasks.ClassificationTask(3)
    state = _state()
    batch = _batch(n=2, views=4)
    logits, _ = steps.eval_logits(state, batch, {}, task)
    per_view = [steps.eval_logits(state, {'image': batch['image'][:, v]}, {}, task)[0]
                for v in range(4)]
    expected = jnp.log(jnp.mean(jnp.stack([jax.nn.softmax(l) for l in per_view]), axis=0))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_predict_step_returns_the_named_outputs_asked_for():
    """Top-1, softmax and features; of a multi-view batch, the features' mean over the views."""
    task = tasks.ClassificationTask(3)
    state = _state()
    batch = _batch(n=2, views=4)
    predicted = jax.jit(steps.make_predict_step(task, ('top1', 'probabilities', 'features')))(
        state, batch, {})
    assert set(predicted) == {'top1', 'probabilities', 'features'}
    np.testing.assert_allclose(np.sum(predicted['probabilities'], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(predicted['top1'], np.argmax(predicted['probabilities'], axis=1))
    per_view = [steps.eval_logits(state, {'image': batch['image'][:, v]}, {}, task)[1]['features']
                for v in range(4)]
    expected = np.mean([np.reshape(f, (2, -1)) for f in per_view], axis=0)
    np.testing.assert_allclose(predicted['features'], expected, rtol=1e-5, atol=1e-6)
    only_top1 = jax.jit(steps.make_predict_step(task, ('top1',)))(state, batch, {})
    assert set(only_top1) == {'top1'}

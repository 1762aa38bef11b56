"""--config.model.dtype=bfloat16: bf16 compute, float32 master weights and loss, and it still learns.

Model and loss calls run under jax.jit: eagerly, each op compiles on its own (hundreds of small
XLA programs per test).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.configs import quickstart
from nofe_jax import methods
from nofe_jax.models import registry
from nofe_jax.training import steps, tasks
from nofe_jax.training.state import create_train_state


def test_bfloat16_train_step_keeps_float32_weights_and_loss():
    model = registry.build_base('tiny_cnn', 10, dtype=jnp.bfloat16)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(8, 8, 8, 1)), jnp.float32)
    batch = {'image': images, 'label': jnp.arange(8, dtype=jnp.int32)}
    variables = jax.jit(model.init, static_argnames='train')(jax.random.key(0), images, train=False)
    state = create_train_state(model.apply, variables, optax.sgd(0.1), jax.random.key(1))
    new, metrics = jax.jit(steps.make_train_step(tasks.ClassificationTask(10)))(state, batch, {})
    for before, after in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params)):
        assert before.dtype == after.dtype == jnp.float32
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params)))
    loss_sum, _ = metrics['loss']
    assert loss_sum.dtype == jnp.float32 and np.isfinite(loss_sum)
    # The forward pass really runs in bf16: its intermediates are bf16, the logits float32.
    logits, out = jax.jit(model.apply, static_argnames='train')(variables, images, train=False)
    assert logits.dtype == jnp.float32
    assert any(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(out))


def test_bfloat16_nofe_learns_digits(tmp_path):
    config = quickstart.get_config()
    config.model.dtype = 'bfloat16'
    config.generalist.train.duration = '2 epochs'
    config.experts.train.duration = '3 epochs'
    summary = methods.train_and_evaluate(config, str(tmp_path))
    # float32 reaches about 0.97 with the full 10 + 20 epochs (bf16 with these 2 + 3: 0.98); chance 0.1.
    assert summary['final']['test/top1'] > 0.85, summary['final']
    assert not summary['health_warnings']

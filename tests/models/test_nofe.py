"""Network of Experts assembly, generalist weight transfer, dtype and the tiny CNN on digits.

Model and loss calls run under jax.jit: eagerly, each op compiles on its own (hundreds of small
XLA programs per test).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from nofe_jax.models import alexnet, registry
from nofe_jax.models.experts import expert_layout


def test_nofe_takes_generalist_trunk_verbatim_and_gathers_in_class_order():
    layout = expert_layout(np.array([2, 0, 1, 0, 2, 2, 1, 0, 0, 1]))
    generalist = registry.generalist("tiny_cnn", layout.num_experts)
    nofe = registry.build_nofe("tiny_cnn", layout)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8, 8, 1)), jnp.float32)
    slots = jnp.asarray(layout.class_slots)
    g_vars = jax.jit(generalist.init, static_argnames="train")(jax.random.key(1), x, train=False)
    n_vars = jax.jit(nofe.init, static_argnames="train")(jax.random.key(2), x, slots, train=False)
    params = {**n_vars["params"], "trunk": g_vars["params"]["trunk"]}
    logits, out = jax.jit(nofe.apply, static_argnames="train")({"params": params}, x, slots, train=False)
    _, g_out = jax.jit(generalist.apply, static_argnames="train")(g_vars, x, train=False)
    np.testing.assert_allclose(out["features"], g_out["features"], rtol=1e-6)
    assert logits.shape == (3, 10)
    assert out["branch_logits"].shape == (3, layout.num_experts, layout.c_max)
    flat = np.asarray(out["branch_logits"]).reshape(3, -1)
    np.testing.assert_array_equal(logits, flat[:, layout.class_slots])


def test_changing_class_slots_does_not_recompile():
    nofe = registry.build_nofe("tiny_cnn", 2, 3)
    x = jnp.ones((2, 8, 8, 1))
    variables = jax.jit(nofe.init, static_argnames="train")(jax.random.key(0), x, jnp.arange(5, dtype=jnp.int32),
                                                            train=False)
    traces = []

    @jax.jit
    def predict(variables, x, slots):
        traces.append(1)
        return nofe.apply(variables, x, slots, train=False)[0]

    permuted = [4, 3, 1, 0, 2]
    a = predict(variables, x, jnp.arange(5, dtype=jnp.int32))
    b = predict(variables, x, jnp.asarray(permuted, jnp.int32))
    assert len(traces) == 1
    np.testing.assert_array_equal(b, np.asarray(a)[:, permuted])


def test_alexnet_c100_nofe_applies_norm3_once_before_branches():
    nofe = registry.build_nofe("alexnet_c100", 2, 3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 32, 32, 3)), jnp.float32) * 50
    slots = jnp.arange(6, dtype=jnp.int32)
    variables = jax.jit(lambda x: nofe.init(jax.random.key(1), x, slots, train=False))(x)
    _, out = jax.jit(lambda v, x: nofe.apply(v, x, slots, train=False))(variables, x)
    branch = alexnet.AlexNetC100Branch(3)
    branch_logits = jax.jit(lambda p, f: branch.apply({"params": p}, alexnet.alexnet_c100_norm3(f), train=False))
    for k in range(2):
        params = jax.tree.map(lambda a: np.asarray(a)[k], variables["params"]["experts"]["branch"])
        expected = branch_logits(params, out["features"])
        np.testing.assert_allclose(np.asarray(out["branch_logits"])[:, k], expected, rtol=1e-5, atol=1e-7)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    nofe = registry.build_nofe("tiny_cnn", 2, 3, dtype=jnp.bfloat16)
    x = jnp.ones((2, 8, 8, 1))
    slots = jnp.arange(6, dtype=jnp.int32)
    variables = jax.jit(nofe.init, static_argnames="train")(jax.random.key(0), x, slots, train=False)
    logits, out = jax.jit(nofe.apply, static_argnames="train")(variables, x, slots, train=False)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert logits.dtype == jnp.float32 and out["features"].dtype == jnp.bfloat16


def test_tiny_cnn_learns_digits():
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[:1400], order[1400:]
    model = registry.build_base("tiny_cnn", 10)
    params = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images[:1])["params"]
    optimizer = optax.adam(3e-3)
    opt_state = jax.jit(optimizer.init)(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss(p):
            logits, _ = model.apply({"params": p}, x, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state)
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(1)
    for _ in range(200):
        batch = rng.choice(train, 64)
        params, opt_state = step(params, opt_state, images[batch], labels[batch])
    logits, _ = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))(params, images[test])
    assert (np.asarray(logits).argmax(-1) == labels[test]).mean() > 0.9

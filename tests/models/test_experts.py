"""Stacked expert branches vs a loop, the class gather, and expert layouts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nofe_jax.models import alexnet, resnet, tiny
from nofe_jax.models.experts import ExpertBranches, expert_layout, gather_class_logits

K = 3


def _sliced(tree, k):
    return jax.tree.map(lambda a: a[k], tree)


@pytest.mark.parametrize(
    "branch, feature_shape",
    [
        (tiny.TinyCNNBranch(5), (2, 4, 4, 8)),
        (alexnet.AlexNetC100Branch(4), (2, 4, 4, 64)),
    ],
    ids=["tiny_cnn", "alexnet_c100"],
)
def test_vmapped_branches_equal_a_loop_outputs_and_grads(branch, feature_shape):
    experts = ExpertBranches(branch, K)
    features = jnp.asarray(np.random.default_rng(0).normal(size=feature_shape), jnp.float32)
    params = jax.jit(lambda f: experts.init(jax.random.key(1), f, train=False))(features)["params"]
    stacked_params = params["branch"]
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(feature_shape[0], K, branch.num_outputs)), jnp.float32)

    def stacked_loss(p, f):
        out = experts.apply({"params": {"branch": p}}, f, train=False)  # [B, K, c_max]
        return jnp.sum(out * weights), out

    def loop_loss(p, f):
        outs = [branch.apply({"params": _sliced(p, k)}, f, train=False) for k in range(K)]
        out = jnp.stack(outs, axis=1)
        return jnp.sum(out * weights), out

    grad = jax.jit(jax.grad(stacked_loss, argnums=(0, 1), has_aux=True))
    loop_grad = jax.jit(jax.grad(loop_loss, argnums=(0, 1), has_aux=True))
    (g_params, g_features), out = grad(stacked_params, features)
    (l_params, l_features), loop_out = loop_grad(stacked_params, features)
    assert out.shape == (feature_shape[0], K, branch.num_outputs)
    np.testing.assert_allclose(out, loop_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_features, l_features, rtol=1e-4, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_params, l_params)
    # The K branches are initialised independently.
    kernels = np.asarray(stacked_params["ip1"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1])


def test_vmapped_batchnorm_branches_update_their_own_stats():
    branch = resnet.ResNet56C100Branch(4, features=8)
    experts = ExpertBranches(branch, K)
    features = jnp.asarray(np.random.default_rng(0).normal(size=(4, 7, 7, 8)), jnp.float32)
    variables = jax.jit(lambda f: experts.init(jax.random.key(1), f, train=False))(features)
    assert variables["batch_stats"]["branch"]["bn1"]["mean"].shape == (K, 8)
    out, updates = jax.jit(lambda v, f: experts.apply(v, f, train=True, mutable=["batch_stats"]))(variables, features)
    train_branch = jax.jit(lambda v, f: branch.apply(v, f, train=True, mutable=["batch_stats"]))
    for k in range(K):
        branch_vars = {c: _sliced(variables[c]["branch"], k) for c in ("params", "batch_stats")}
        loop_out, loop_updates = train_branch(branch_vars, features)
        np.testing.assert_allclose(out[:, k], loop_out, rtol=1e-5, atol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                     _sliced(updates["batch_stats"]["branch"], k), loop_updates["batch_stats"])


def test_dropout_masks_differ_between_branches():
    branch = alexnet.AlexNetBranch(3, dropout_rate=0.5)
    experts = ExpertBranches(branch, 2)
    features = jnp.ones((1, 6, 6, 256))
    variables = jax.eval_shape(lambda f: experts.init(jax.random.key(0), f, train=False), features)
    # Same params in both branches: any difference in outputs comes from per-branch dropout rngs.
    one = jax.tree.map(lambda s: jnp.full(s.shape[1:], 0.01, s.dtype), variables["params"])
    params = jax.tree.map(lambda a: jnp.stack([a, a]), one)
    out = jax.jit(lambda p: experts.apply({"params": p}, features, train=True, rngs={"dropout": jax.random.key(3)}))(
        params)
    assert not np.allclose(out[:, 0], out[:, 1])


def test_gather_puts_each_class_where_its_slot_says():
    layout = expert_layout(np.array([1, 0, 1, 2, 0, 1]))
    b, k, c = 2, layout.num_experts, layout.c_max
    branch_logits = jnp.arange(b * k * c, dtype=jnp.float32).reshape(b, k, c)
    got = np.asarray(gather_class_logits(branch_logits, jnp.asarray(layout.class_slots)))
    assert got.shape == (b, 6)
    flat = np.asarray(branch_logits).reshape(b, -1)
    np.testing.assert_array_equal(got, flat[:, layout.class_slots])
    # Class 3 is the only member of specialty 2 -> expert 2, slot 0.
    np.testing.assert_array_equal(got[:, 3], np.asarray(branch_logits)[:, 2, 0])


def test_padded_slots_never_win():
    layout = expert_layout(np.array([0, 0, 0, 1, 2, 2]))  # sizes 3, 1, 2 -> c_max 3
    rng = np.random.default_rng(0)
    branch_logits = rng.normal(size=(5, layout.num_experts, layout.c_max)).astype(np.float32)
    used = np.zeros(layout.num_experts * layout.c_max, bool)
    used[layout.class_slots] = True
    padded = branch_logits.reshape(5, -1).copy()
    padded[:, ~used] = 1e9
    clean = gather_class_logits(jnp.asarray(branch_logits), jnp.asarray(layout.class_slots))
    dirty = gather_class_logits(jnp.asarray(padded.reshape(branch_logits.shape)), jnp.asarray(layout.class_slots))
    np.testing.assert_array_equal(np.argmax(clean, -1), np.argmax(dirty, -1))
    assert np.asarray(dirty).max() < 1e9


def test_expert_layout_drops_empty_specialties_and_is_a_bijection():
    class_to_specialty = np.array([4, 1, 4, 1, 7, 4, 4])  # specialties 0, 2, 3, 5, 6 are empty
    layout = expert_layout(class_to_specialty)
    assert layout.num_experts == 3
    np.testing.assert_array_equal(layout.specialty_ids, [1, 4, 7])
    np.testing.assert_array_equal(layout.sizes, [2, 4, 1])
    assert layout.c_max == 4
    assert layout.class_slots.dtype == np.int32
    assert len(set(layout.class_slots.tolist())) == class_to_specialty.size
    experts_of_class, local = np.divmod(layout.class_slots, layout.c_max)
    np.testing.assert_array_equal(layout.specialty_ids[experts_of_class], class_to_specialty)
    # Inside a specialty, local order is ascending class id.
    np.testing.assert_array_equal(local[[0, 2, 5, 6]], [0, 1, 2, 3])
    np.testing.assert_array_equal(local[[1, 3]], [0, 1])
    assert np.all(local < layout.sizes[experts_of_class])


def test_expert_layout_of_balanced_partition():
    class_to_specialty = np.repeat(np.arange(10), 10)[np.random.default_rng(0).permutation(100)]
    layout = expert_layout(class_to_specialty)
    assert (layout.num_experts, layout.c_max) == (10, 10)
    np.testing.assert_array_equal(np.sort(layout.class_slots), np.arange(100))


@pytest.mark.parametrize("bad", [np.array([]), np.array([[0, 1]]), np.array([0, -1]), np.array([0.0, 1.0])])
def test_expert_layout_rejects_bad_maps(bad):
    with pytest.raises(ValueError):
        expert_layout(bad)

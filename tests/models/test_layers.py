"""Caffe semantics of pooling, LRN and fillers; the convolution lowerings agree with XLA's."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from nofe_jax.models import layers


def _caffe_pool_reference(x: np.ndarray, kind: str, k: int, s: int, p: int) -> np.ndarray:
    """Loop translation of Caffe's PoolingLayer forward (one 2-D map)."""
    height, width = x.shape
    out_h = layers.pool_output_size(height, k, s, p)
    out_w = layers.pool_output_size(width, k, s, p)
    out = np.zeros((out_h, out_w), np.float32)
    for i, j in itertools.product(range(out_h), range(out_w)):
        h0, w0 = i * s - p, j * s - p
        h1, w1 = min(h0 + k, height + p), min(w0 + k, width + p)
        pool_size = (h1 - h0) * (w1 - w0)
        window = x[max(h0, 0):min(h1, height), max(w0, 0):min(w1, width)]
        out[i, j] = window.max() if kind == "max" else window.sum() / pool_size
    return out


@pytest.mark.parametrize(
    "size, k, s, p, expected",
    [(32, 3, 2, 0, 16), (16, 3, 2, 0, 8), (8, 3, 2, 0, 4), (4, 3, 2, 0, 2), (6, 3, 2, 0, 3),
     (55, 3, 2, 0, 27), (13, 3, 2, 0, 6), (4, 2, 3, 1, 2), (7, 3, 2, 1, 4)],
)
def test_caffe_pool_output_size(size, k, s, p, expected):
    assert layers.pool_output_size(size, k, s, p) == expected
    formula = int(np.ceil((size + 2 * p - k) / s)) + 1
    assert expected == (formula - 1 if p > 0 and (formula - 1) * s >= size + p else formula)


def test_floor_pool_output_size():
    assert layers.pool_output_size(4, 3, 2, 0, caffe=False) == 1
    assert layers.pool_output_size(32, 3, 2, 0, caffe=False) == 15


@pytest.mark.parametrize("kind", ["max", "ave"])
@pytest.mark.parametrize(
    "size, k, s, p", [(8, 3, 2, 0), (7, 3, 2, 0), (4, 3, 2, 0), (6, 3, 2, 1), (4, 2, 3, 1), (6, 6, 1, 0)]
)
def test_pool2d_matches_caffe_reference(kind, size, k, s, p):
    x = np.random.default_rng(size + k + s + p).normal(size=(size, size)).astype(np.float32)
    got = layers.pool2d(jnp.asarray(x)[None, :, :, None], kind, k, s, p)[0, :, :, 0]
    np.testing.assert_allclose(np.asarray(got), _caffe_pool_reference(x, kind, k, s, p), rtol=1e-6, atol=1e-6)


def _max_pool_grads(x, k, s, p, probe):
    """d sum(pool2d(x) * probe) / dx with the backend's max pool lowering, and with XLA's."""
    grad = jax.jit(jax.grad(lambda x: jnp.sum(layers.pool2d(x, "max", k, s, p) * probe)))
    got = grad(x)
    with layers.xla_lowerings():
        want = jax.jit(jax.grad(lambda x: jnp.sum(layers.pool2d(x, "max", k, s, p) * probe)))(x)
    return np.asarray(got), np.asarray(want)


@pytest.mark.parametrize("size, k, s, p", [(8, 2, 2, 0), (9, 3, 2, 0), (8, 3, 2, 1), (6, 6, 1, 0)])
def test_tap_max_pool_gradient_equals_xla_select_and_scatter(size, k, s, p):
    rng = np.random.default_rng(size + k)
    x = jnp.asarray(rng.normal(size=(2, size, size + 3, 3)), jnp.float32)
    out_shape = jax.eval_shape(lambda x: layers.pool2d(x, "max", k, s, p), x).shape
    probe = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
    got, want = _max_pool_grads(x, k, s, p, probe)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_tap_max_pool_gradient_goes_to_each_windows_first_maximum():
    # Every pixel ties: each window sends its gradient to its top-left cell (Caffe's rule, XLA's
    # too); overlapping 3/2 windows share their border pixels, which no window claims first
    # except at the top-left corner.
    x = jnp.zeros((1, 5, 5, 1), jnp.float32)
    probe = jnp.asarray(np.arange(1, 5, dtype=np.float32).reshape(1, 2, 2, 1))
    got, want = _max_pool_grads(x, 3, 2, 0, probe)
    expected = np.zeros((5, 5), np.float32)
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(got[0, :, :, 0], expected)
    np.testing.assert_array_equal(want[0, :, :, 0], expected)


def test_max_pool_lowering_is_taps_on_cpu_only_outside_xla_lowerings():
    def primitives():
        jaxpr = jax.make_jaxpr(lambda x: layers.pool2d(x, "max", 2, 2))(jnp.ones((1, 4, 4, 1)))
        return {e.primitive.name for e in jaxpr.eqns}

    on_cpu = jax.default_backend() == "cpu"
    assert ("reduce_window_max" in primitives()) is not on_cpu
    with layers.xla_lowerings():
        assert "reduce_window_max" in primitives()
    assert layers.max_pool_lowering("gpu") == layers.max_pool_lowering("tpu") == "xla"


def test_max_pool_of_a_map_smaller_than_its_window_is_empty_with_either_lowering():
    # What training.run.input_fit_problem reads to refuse a model too large for its images.
    x = jnp.ones((1, 2, 2, 3))
    assert layers.pool2d(x, "max", 3, 2, caffe=False).shape == (1, 0, 0, 3)
    with layers.xla_lowerings():
        assert layers.pool2d(x, "max", 3, 2, caffe=False).shape == (1, 0, 0, 3)


def test_tap_max_pool_under_vmap_equals_each_network_alone():
    # Stacked group networks vmap the pool over their leading axis.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 2, 8, 8, 4)), jnp.float32)
    probe = jnp.asarray(rng.normal(size=(3, 2, 4, 4, 4)), jnp.float32)
    grad = jax.grad(lambda x, p: jnp.sum(layers.tap_max_pool(x, 2, 2) * p))
    stacked = jax.jit(jax.vmap(grad))(x, probe)
    for g in range(3):
        np.testing.assert_array_equal(stacked[g], jax.jit(grad)(x[g], probe[g]))


def test_ave_pool_edge_windows_divide_by_in_bounds_cells():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    got = np.asarray(layers.pool2d(jnp.asarray(x)[None, :, :, None], "ave", 3, 2)[0, :, :, 0])
    # Windows start at 0 and 2; the second one only has rows/cols 2..3 inside the map.
    expected = np.array([
        [x[0:3, 0:3].sum() / 9, x[0:3, 2:4].sum() / 6],
        [x[2:4, 0:3].sum() / 6, x[2:4, 2:4].sum() / 4],
    ])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_lrn_within_channel_by_hand():
    x = np.array([[1.0, 2.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 4.0]], np.float32)
    alpha, beta = 0.9, 0.75  # alpha / n^2 = 0.1
    got = np.asarray(layers.lrn_within_channel(jnp.asarray(x)[None, :, :, None], 3, alpha, beta)[0, :, :, 0])
    # Corner (0, 0): zero padding leaves 1 + 4 + 0 + 9 = 14 in the window, divisor still 9.
    assert got[0, 0] == pytest.approx(1.0 * (1 + 0.1 * 14) ** -beta, rel=1e-6)
    # Centre (1, 1): the whole map, 1 + 4 + 9 + 16 = 30.
    assert got[1, 1] == pytest.approx(3.0 * (1 + 0.1 * 30) ** -beta, rel=1e-6)
    # (2, 2): rows/cols 1..2 -> 9 + 16 = 25.
    assert got[2, 2] == pytest.approx(4.0 * (1 + 0.1 * 25) ** -beta, rel=1e-6)


def test_lrn_across_channels_by_hand():
    x = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    alpha, beta = 0.3, 0.75  # alpha / n = 0.1
    got = np.asarray(layers.lrn_across_channels(x, 3, alpha, beta)).ravel()
    sums = [1 + 4, 1 + 4 + 9, 4 + 9 + 16, 9 + 16]
    np.testing.assert_allclose(got, [v * (1 + 0.1 * s) ** -beta for v, s in zip([1, 2, 3, 4], sums)], rtol=1e-6)


def test_xavier_is_uniform_within_caffe_bound():
    w = np.asarray(layers.xavier()(jax.random.key(0), (3, 3, 16, 64)))
    bound = np.sqrt(3.0 / (3 * 3 * 16))
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.98 * bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_msra_fan_out_and_gaussian_std():
    w = np.asarray(layers.msra_fan_out()(jax.random.key(0), (3, 3, 64, 128)))
    assert w.std() == pytest.approx(np.sqrt(2.0 / (128 * 9)), rel=0.05)
    assert np.abs(w).max() > 4 * w.std()  # a plain, untruncated normal
    g = np.asarray(layers.gaussian(0.01)(jax.random.key(1), (256, 512)))
    assert g.std() == pytest.approx(0.01, rel=0.05)


def test_frozen_projection_is_identity_subsample_with_zero_channels():
    proj = layers.FrozenProjection(6, stride=2)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 3)), jnp.float32)
    variables = proj.init(jax.random.key(1), x)
    assert set(variables) == {"frozen"}
    kernel = np.asarray(variables["frozen"]["kernel"])[0, 0]
    np.testing.assert_array_equal(kernel, np.eye(3, 6))
    y = np.asarray(proj.apply(variables, x))
    np.testing.assert_allclose(y[..., :3], np.asarray(x)[:, ::2, ::2, :], rtol=1e-6)
    np.testing.assert_array_equal(y[..., 3:], 0.0)


# --- convolution lowering --------------------------------------------------------------------


def _xla_conv(x, kernel, strides, padding):
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize(
    "size, in_ch, out_ch, kernel, stride, padding",
    [
        (23, 3, 4, 11, 4, ((0, 0), (0, 0))),  # AlexNet conv1: large kernel, stride 4, no padding
        (8, 5, 6, 5, 1, ((2, 2), (2, 2))),  # AlexNet-C100: 5x5, pad 2
        (9, 4, 3, 3, 2, ((1, 1), (1, 1))),  # ResNet strided 3x3 on an odd size
        (7, 2, 3, 3, 1, "SAME"),
        (7, 2, 3, 1, 2, "VALID"),  # 1x1 strided projection
    ],
)
@pytest.mark.parametrize("lowering", ["im2col", "tap_grad"])
def test_lowered_conv_equals_xla_outputs_and_grads(lowering, size, in_ch, out_ch, kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, size, size, in_ch)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, in_ch, out_ch)), jnp.float32)
    probe = jnp.asarray(rng.normal(size=_xla_conv(x, w, (stride, stride), padding).shape), jnp.float32)

    def loss(conv):
        return jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(conv(x, w, (stride, stride), padding) * probe),
                                          argnums=(0, 1)))

    pads = layers._explicit_padding(padding, x.shape[1:3], (kernel, kernel), (stride, stride))
    lowered = {"im2col": layers.im2col_conv,
               "tap_grad": lambda x, w, strides, padding: layers.tap_grad_conv(x, w, strides, pads)}[lowering]
    (value, grads), (ref_value, ref_grads) = loss(lowered)(x, w), loss(_xla_conv)(x, w)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_stacked_kernels_under_vmap_equal_xla_per_expert():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 4, 4, 6)), jnp.float32)
    kernels = jnp.asarray(rng.normal(size=(5, 5, 5, 6, 7)), jnp.float32)  # K=5 stacked 5x5 kernels

    def stacked(x, kernels):
        with layers.stacked_kernels():
            return jax.vmap(lambda k: layers.auto_conv_general_dilated(
                x, k, (1, 1), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC")))(kernels)

    out = jax.jit(stacked)(x, kernels)
    for k in range(5):
        np.testing.assert_allclose(out[k], _xla_conv(x, kernels[k], (1, 1), ((2, 2), (2, 2))), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("avx512", [False, True])
def test_conv_lowering_picks_im2col_for_stacked_and_tap_grad_for_1x1_and_large_plain_convs_on_cpu(avx512):
    big = layers.TAP_GRAD_MIN_OUTPUT_PIXELS
    plain = dict(stacked=False, feature_group_count=1, dilated=False, avx512=avx512)
    assert layers.conv_lowering("cpu", stacked=True, feature_group_count=1, dilated=False,
                                kernel_shape=(3, 3, 8, 8), output_pixels=big, avx512=avx512) == "im2col"
    # XLA's 3x3 kernel gradient is the faster one on a large map only where the CPU has AVX-512.
    assert layers.conv_lowering("cpu", **plain, kernel_shape=(3, 3, 8, 8), output_pixels=big) == (
        "xla" if avx512 else "tap_grad")
    assert layers.conv_lowering("cpu", **plain, kernel_shape=(3, 3, 8, 8), output_pixels=big - 1) == "xla"
    assert layers.conv_lowering("cpu", **plain, kernel_shape=(1, 1, 8, 8), output_pixels=1) == "tap_grad"
    for stacked in (True, False):
        assert layers.conv_lowering("cpu", stacked, feature_group_count=2, dilated=False,
                                    kernel_shape=(3, 3, 8, 8), output_pixels=big, avx512=avx512) == "xla"
        assert layers.conv_lowering("cpu", stacked, feature_group_count=1, dilated=True,
                                    kernel_shape=(3, 3, 8, 8), output_pixels=big, avx512=avx512) == "xla"
        for accelerator in ("gpu", "tpu"):
            assert layers.conv_lowering(accelerator, stacked, feature_group_count=1, dilated=False,
                                        kernel_shape=(1, 1, 8, 8), output_pixels=big, avx512=avx512) == "xla"


def test_cpu_has_avx512_reads_the_hosts_flags():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    assert layers.cpu_has_avx512() == ("avx512f" in flags)


@pytest.mark.parametrize("avx512", [False, True])
def test_a_large_plain_conv_takes_its_kernel_gradient_where_the_cpu_rule_says_and_matches_xla(avx512, monkeypatch):
    monkeypatch.setattr(layers, "cpu_has_avx512", lambda: avx512)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(8, 64, 64, 2)), jnp.float32)  # 32,768 output pixels at stride 1
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 3)), jnp.float32)
    probe = jnp.asarray(rng.normal(size=(8, 64, 64, 3)), jnp.float32)

    def kernel_grad(x, w):
        return jax.grad(lambda w: jnp.sum(layers.auto_conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) * probe))(w)

    jaxpr = jax.make_jaxpr(kernel_grad)(x, w)
    conv_shapes = [e.outvars[0].aval.shape for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
    if jax.default_backend() == "cpu" and not avx512:  # XLA's forward and input gradient, the kernel's from tap matmuls
        assert conv_shapes == [(8, 64, 64, 3), (8, 64, 64, 2)] and len(dots) == 9
    else:  # XLA's forward and kernel gradient
        assert conv_shapes == [(8, 64, 64, 3), (3, 3, 2, 3)] and not dots
    with layers.xla_lowerings():
        want = jax.jit(kernel_grad)(x, w)
    np.testing.assert_allclose(jax.jit(kernel_grad)(x, w), want, rtol=1e-4, atol=1e-3)


def test_stacked_kernels_flag_is_scoped():
    def conv_primitives(stacked):
        def f(x, w):
            return layers.auto_conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
        if stacked:
            with layers.stacked_kernels():
                jaxpr = jax.make_jaxpr(f)(x, w)
        else:
            jaxpr = jax.make_jaxpr(f)(x, w)
        return [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]

    assert len(conv_primitives(stacked=False)) == 1
    assert len(conv_primitives(stacked=True)) == (0 if jax.default_backend() == "cpu" else 1)
    assert len(conv_primitives(stacked=False)) == 1  # the flag does not leak out of its block


def test_xla_lowerings_overrides_im2col_inside_its_block_only():
    def conv_primitives(x, w):
        with layers.stacked_kernels():
            jaxpr = jax.make_jaxpr(lambda x, w: layers.auto_conv_general_dilated(
                x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))(x, w)
        return [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]

    x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
    with layers.xla_lowerings():
        assert len(conv_primitives(x, w)) == 1
    assert len(conv_primitives(x, w)) == (0 if jax.default_backend() == "cpu" else 1)

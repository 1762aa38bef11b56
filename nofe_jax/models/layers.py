"""Shared building blocks with Caffe semantics: fillers, pooling, LRN, conv helpers, residual block."""

import contextlib
import contextvars
import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Initializer = Callable[..., jax.Array]


# --- fillers (Caffe names) -------------------------------------------------------------------


def _flat_sampled(
    sample: Callable[[jax.Array, int, Any], jax.Array], scale: Callable[[tuple[int, ...]], float]
) -> Initializer:
    """Initializer drawing prod(shape) values as a flat vector times scale(shape), then reshaping.

    Same distribution as sampling the N-d shape directly; XLA:CPU compiles N-d random sampling
    slowly (seconds per kernel shape), which makes every model init slow on CPU.
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        size = int(np.prod(shape))
        return (sample(key, size, dtype) * scale(shape)).astype(dtype).reshape(shape)

    return init


def _normal(key: jax.Array, size: int, dtype: Any) -> jax.Array:
    return jax.random.normal(key, (size,), dtype)


def _symmetric_uniform(key: jax.Array, size: int, dtype: Any) -> jax.Array:
    return jax.random.uniform(key, (size,), dtype, -1.0, 1.0)


def gaussian(std: float) -> Initializer:
    """Caffe gaussian filler: N(0, std^2)."""
    return _flat_sampled(_normal, lambda shape: std)


def xavier() -> Initializer:
    """Caffe xavier filler: Uniform(+-sqrt(3 / fan_in)), fan_in = in_ch * kh * kw (all axes but the last)."""
    return _flat_sampled(_symmetric_uniform, lambda shape: float(np.sqrt(3.0 / np.prod(shape[:-1]))))


def msra_fan_out() -> Initializer:
    """Caffe msra filler with variance_norm FAN_OUT: N(0, 2 / fan_out), fan_out = out_ch * kh * kw."""
    # Kernels are [..., in, out]: fan_out is every axis except the input-channel one.
    return _flat_sampled(_normal, lambda shape: float(np.sqrt(2.0 * shape[-2] / np.prod(shape))))


def constant(value: float) -> Initializer:
    """Caffe constant filler."""
    return nn.initializers.constant(value)


def scaled_width(features: int, multiplier: float) -> int:
    """Channel count `features` scaled by `multiplier`, rounded half up, at least 1 (1.0 keeps it)."""
    return max(1, int(features * multiplier + 0.5))


def identity_filler(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """Caffe identity filler for a 1x1 kernel [1, 1, in, out]: w[o, i] = 1 if o == i else 0."""
    del key
    *_, fan_in, fan_out = shape
    return jnp.eye(fan_in, fan_out, dtype=dtype).reshape(shape)


# --- pooling ---------------------------------------------------------------------------------


def pool_output_size(size: int, window: int, stride: int, padding: int = 0, caffe: bool = True) -> int:
    """Pooled length of one spatial axis: Caffe ceil mode, or standard floor mode."""
    span = size + 2 * padding - window
    if not caffe:
        return span // stride + 1
    out = -(-span // stride) + 1
    # Caffe drops the last window when it would start inside the right padding.
    if padding > 0 and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _ave_divisor(size: int, out: int, window: int, stride: int, padding: int) -> np.ndarray:
    """Per-window cell count inside [-padding, size + padding), as Caffe's AVE pooling divides."""
    starts = np.arange(out) * stride - padding
    ends = np.minimum(starts + window, size + padding)
    return (ends - starts).astype(np.float32)


def pool2d(
    x: jax.Array, kind: str, window: int, stride: int, padding: int = 0, caffe: bool = True
) -> jax.Array:
    """MAX or AVE pooling of NHWC x with Caffe's output size and AVE divisor (or floor mode)."""
    _, height, width, _ = x.shape
    out_h = pool_output_size(height, window, stride, padding, caffe)
    out_w = pool_output_size(width, window, stride, padding, caffe)
    # Pad (or crop, when negative) so the last window ends exactly at the array edge.
    pad_h = (padding, (out_h - 1) * stride + window - height - padding)
    pad_w = (padding, (out_w - 1) * stride + window - width - padding)
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    if kind == "max":
        padded = lax.pad(x, jnp.array(-jnp.inf, x.dtype), ((0, 0, 0), (*pad_h, 0), (*pad_w, 0), (0, 0, 0)))
        # No window fits a map smaller than it (a model too large for its images): reduce_window
        # gives the empty output that `training.run.input_fit_problem` names.
        if min(out_h, out_w) > 0 and max_pool_lowering(jax.default_backend()) == "taps":
            return tap_max_pool(padded, window, stride)
        # Python-scalar identities let jax pick its differentiable max/add window reducers.
        return lax.reduce_window(padded, -jnp.inf, lax.max, dims, strides, "VALID")
    if kind == "ave":
        padded = lax.pad(x, jnp.array(0, x.dtype), ((0, 0, 0), (*pad_h, 0), (*pad_w, 0), (0, 0, 0)))
        summed = lax.reduce_window(padded, 0.0, lax.add, dims, strides, "VALID")
        divisor = np.outer(
            _ave_divisor(height, out_h, window, stride, padding),
            _ave_divisor(width, out_w, window, stride, padding),
        )
        return summed / jnp.asarray(divisor[None, :, :, None], x.dtype)
    raise ValueError(f"pooling kind must be 'max' or 'ave', got {kind!r}")


def max_pool_lowering(backend: str) -> str:
    """'taps' on CPU (outside `xla_lowerings`), else 'xla'.

    XLA:CPU differentiates a max pool with select-and-scatter, which took 5-8x the time of the
    window's strided slices and their transposes (`python -m experiments.benchmarks.conv_lowering`,
    its max pool rows): on the tiny CNN's 28x84 maps it was most of a train step.
    """
    return "taps" if backend == "cpu" and not _XLA_ONLY.get() else "xla"


def _window_taps(x: jax.Array, window: int, stride: int) -> list[jax.Array]:
    """Per window cell (row-major), the pixels it covers in every VALID window: [B, out_h, out_w, C] each."""
    return _kernel_taps(x, (window, window), (stride, stride), "VALID")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def tap_max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
    """MAX pooling of NHWC x over VALID windows as the maximum of the window's strided slices.

    The gradient goes to each window's first maximum in row-major order: Caffe's rule, and XLA's
    select-and-scatter's, so both lowerings give the same gradients (up to the order in which a
    pixel shared by overlapping windows sums them).
    """
    return functools.reduce(jnp.maximum, _window_taps(x, window, stride))


def _tap_max_pool_fwd(x, window, stride):
    pooled = tap_max_pool(x, window, stride)
    return pooled, (x, pooled)


def _tap_max_pool_bwd(window, stride, residuals, dy):
    x, pooled = residuals
    claimed = jnp.zeros(pooled.shape, bool)
    tap_grads = []
    for tap in _window_taps(x, window, stride):
        first = (tap == pooled) & ~claimed
        claimed = claimed | first
        tap_grads.append(jnp.where(first, dy, jnp.zeros_like(dy)))
    # The slices' transpose: each cell's gradient padded back to where its pixels came from, summed.
    return jax.linear_transpose(lambda x: _window_taps(x, window, stride), x)(tap_grads)


tap_max_pool.defvjp(_tap_max_pool_fwd, _tap_max_pool_bwd)


def global_ave_pool(x: jax.Array) -> jax.Array:
    """Average over all spatial positions: [B, H, W, C] -> [B, C]."""
    return jnp.mean(x, axis=(1, 2))


# --- local response normalisation ------------------------------------------------------------


def lrn_within_channel(x: jax.Array, size: int, alpha: float, beta: float) -> jax.Array:
    """Caffe LRN WITHIN_CHANNEL: x * (1 + alpha / size^2 * sum of x^2 over a size x size window)^-beta."""
    half = (size - 1) // 2
    squares = lax.reduce_window(
        x * x, 0.0, lax.add, (1, size, size, 1), (1, 1, 1, 1),
        ((0, 0), (half, size - 1 - half), (half, size - 1 - half), (0, 0)),
    )
    return x * (1.0 + (alpha / size**2) * squares) ** (-beta)


def lrn_across_channels(
    x: jax.Array, size: int, alpha: float, beta: float, k: float = 1.0
) -> jax.Array:
    """Caffe LRN ACROSS_CHANNELS: x * (k + alpha / size * sum of x^2 over size channels)^-beta."""
    half = (size - 1) // 2
    squares = lax.reduce_window(
        x * x, 0.0, lax.add, (1, 1, 1, size), (1, 1, 1, 1),
        ((0, 0), (0, 0), (0, 0), (half, size - 1 - half)),
    )
    return x * (k + (alpha / size) * squares) ** (-beta)


# --- convolution lowering --------------------------------------------------------------------

CONV_LOWERINGS = ("xla", "im2col", "tap_grad")
_STACKED_KERNELS = contextvars.ContextVar("stacked_kernels", default=False)
_XLA_ONLY = contextvars.ContextVar("xla_lowerings", default=False)
_NHWC_HWIO = ("NHWC", "HWIO", "NHWC")
# Where XLA:CPU's kernel gradient is slow (`python -m experiments.benchmarks.conv_lowering`): it
# runs as a convolution whose window is the whole output map, 1.8-21x slower than one matmul per
# tap for every 1x1 kernel on both CPUs measured. For 3x3 and 5x5 kernels it depends on the CPU.
# On an AMD EPYC whose flags were not recorded XLA's took 1.9-5.8x the tap matmuls' time from
# this many output pixels up (batch x out_h x out_w: 26x26 to 32x32 maps at batch 100) and
# 0.5-1.4x below. On an AMD EPYC with AVX-512 (its other convolutions 2-5x faster than there, the
# tap matmuls as fast) it took 0.32-0.97x their time on those maps: the rule keys on AVX-512.
TAP_GRAD_MIN_OUTPUT_PIXELS = 32768


@functools.cache
def cpu_has_avx512() -> bool:
    """Whether the host CPU reports AVX-512F (Linux's /proc/cpuinfo; False where it is unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "avx512f" in line.split() for line in f)
    except OSError:
        return False


@contextlib.contextmanager
def _set_within(flag: contextvars.ContextVar) -> Iterator[None]:
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def stacked_kernels() -> contextlib.AbstractContextManager[None]:
    """Marks the convolutions traced inside as having kernels vmapped over a leading K axis."""
    return _set_within(_STACKED_KERNELS)


def xla_lowerings() -> contextlib.AbstractContextManager[None]:
    """Traces every convolution and max pool inside with XLA's lowering, whatever the backend would pick.

    For counting FLOPs: XLA's cost analysis counts a convolution's in-bounds taps only, while the
    patches of im2col multiply the padding's zeros too (twice the taps of a padded 5x5 conv on a
    4x4 map), so a count taken over whichever lowering runs would depend on the backend.
    """
    return _set_within(_XLA_ONLY)


def conv_lowering(backend: str, stacked: bool, feature_group_count: int, dilated: bool,
                  kernel_shape: Sequence[int], output_pixels: int, avx512: bool) -> str:
    """The lowering measured fastest for this convolution: 'im2col', 'tap_grad' or 'xla'.

    On CPU, XLA turns a convolution whose kernel is vmapped over K experts into one convolution
    with K times the output channels, which it runs slowly at the small spatial sizes of expert
    branches, so stacked kernels go through patches + one batched matmul ('im2col',
    `python -m experiments.benchmarks.expert_branches`). An unstacked convolution (HWIO
    `kernel_shape`, `output_pixels` = batch x out_h x out_w) keeps XLA's forward pass and input
    gradient; its kernel gradient becomes one matmul per tap ('tap_grad') where XLA's is slow:
    every 1x1 kernel, and on a CPU without AVX-512 (`avx512`) larger kernels on at least
    `TAP_GRAD_MIN_OUTPUT_PIXELS` output pixels. GPUs and TPUs keep XLA's convolution.
    """
    if backend != "cpu" or feature_group_count != 1 or dilated:
        return "xla"
    if stacked:
        return "im2col"
    if tuple(kernel_shape[:2]) == (1, 1) or (not avx512 and output_pixels >= TAP_GRAD_MIN_OUTPUT_PIXELS):
        return "tap_grad"
    return "xla"


def _explicit_padding(padding: str | Sequence[tuple[int, int]], in_spatial: Sequence[int],
                      window: Sequence[int], strides: Sequence[int]) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads(in_spatial, window, strides, padding))
    return tuple(tuple(p) for p in padding)


def _conv_output_hw(in_hw: Sequence[int], pads: Sequence[tuple[int, int]], window: Sequence[int],
                    strides: Sequence[int]) -> tuple[int, ...]:
    """Output height and width of an undilated convolution with explicit padding."""
    return tuple((size + lo + hi - w) // stride + 1
                 for size, (lo, hi), w, stride in zip(in_hw, pads, window, strides))


def _kernel_taps(x: jax.Array, kernel_hw: Sequence[int], strides: Sequence[int],
                 padding: str | Sequence[tuple[int, int]]) -> list[jax.Array]:
    """Per kernel tap (row-major over kh x kw), the input pixels it multiplies: [B, out_h, out_w, C] each."""
    (kh, kw), (sh, sw) = kernel_hw, strides
    pads = _explicit_padding(padding, x.shape[1:3], (kh, kw), strides)
    out_h, out_w = _conv_output_hw(x.shape[1:3], pads, kernel_hw, strides)
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    batch, _, _, channels = x.shape
    return [lax.slice(x, (0, i, j, 0), (batch, i + sh * (out_h - 1) + 1, j + sw * (out_w - 1) + 1, channels),
                      (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]


def im2col_conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                padding: str | Sequence[tuple[int, int]], precision: Any = None) -> jax.Array:
    """NHWC x HWIO convolution as patches (strided slices, cheap to differentiate) + one matmul."""
    kh, kw, in_ch, out_ch = kernel.shape
    # Patch channels ordered (row, column, input channel), as an HWIO kernel flattens.
    patches = jnp.concatenate(_kernel_taps(x, (kh, kw), strides, padding), axis=-1)
    return jnp.dot(patches, kernel.reshape(kh * kw * in_ch, out_ch), precision=precision)


def xla_conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Any, precision: Any = None) -> jax.Array:
    """XLA's NHWC x HWIO convolution."""
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_NHWC_HWIO, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def tap_grad_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                  padding: tuple[tuple[int, int], ...], precision: Any = None) -> jax.Array:
    """XLA's NHWC x HWIO convolution and input gradient; the kernel gradient as one matmul per tap.

    Tap (i, j) of the kernel gradient is the input pixels that tap multiplied, channel-major
    [in_ch, B*out_h*out_w], times dy [B*out_h*out_w, out_ch]. `padding` is explicit ((lo, hi)
    per spatial dim).
    """
    return xla_conv(x, kernel, strides, padding, precision)


def _tap_grad_conv_fwd(x, kernel, strides, padding, precision):
    return xla_conv(x, kernel, strides, padding, precision), (x, kernel)


def _tap_grad_conv_bwd(strides, padding, precision, residuals, dy):
    x, kernel = residuals
    kh, kw, in_ch, out_ch = kernel.shape
    input_grad = jax.linear_transpose(lambda x: xla_conv(x, kernel, strides, padding, precision), x)
    dy_rows = dy.reshape(-1, out_ch)
    # Each tap's pixels channel-major [in_ch, B*out_h*out_w]: one well-shaped matmul per tap.
    taps = [jnp.dot(jnp.transpose(tap, (3, 0, 1, 2)).reshape(in_ch, -1), dy_rows, precision=precision)
            for tap in _kernel_taps(x, (kh, kw), strides, padding)]
    kernel_grad = jnp.stack(taps).reshape(kh, kw, in_ch, out_ch)
    return input_grad(dy)[0], kernel_grad.astype(kernel.dtype)


tap_grad_conv.defvjp(_tap_grad_conv_fwd, _tap_grad_conv_bwd)


def _is_nhwc_hwio(dimension_numbers: Any) -> bool:
    expected = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), _NHWC_HWIO)
    return dimension_numbers in (None, expected, _NHWC_HWIO)


def auto_conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any, *,
                              lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
                              dimension_numbers: Any = None, feature_group_count: int = 1,
                              precision: Any = None) -> jax.Array:
    """`lax.conv_general_dilated` with the lowering `conv_lowering` picks for this backend and call
    (XLA's inside `xla_lowerings`)."""
    dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    if not _XLA_ONLY.get() and _is_nhwc_hwio(dimension_numbers):
        pads = _explicit_padding(padding, lhs.shape[1:3], rhs.shape[:2], window_strides)
        output_pixels = lhs.shape[0] * math.prod(_conv_output_hw(lhs.shape[1:3], pads, rhs.shape[:2], window_strides))
        lowering = conv_lowering(jax.default_backend(), _STACKED_KERNELS.get(), feature_group_count, dilated,
                                 rhs.shape, output_pixels, cpu_has_avx512())
        if lowering == "im2col":
            return im2col_conv(lhs, rhs, window_strides, pads, precision)
        if lowering == "tap_grad":
            return tap_grad_conv(lhs, rhs, tuple(window_strides), pads, precision)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count, precision=precision)


# --- layer constructors ----------------------------------------------------------------------


def conv(
    features: int,
    kernel: int,
    *,
    name: str,
    init: Initializer,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    use_bias: bool = True,
    bias_init: Initializer = nn.initializers.zeros,
    dtype: Any = jnp.float32,
) -> nn.Conv:
    """Caffe Convolution layer: square kernel, symmetric zero padding, float32 params.

    Lowered by `auto_conv_general_dilated`: same parameters and results, whichever lowering runs.
    """
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        feature_group_count=groups,
        use_bias=use_bias,
        kernel_init=init,
        bias_init=bias_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        conv_general_dilated=auto_conv_general_dilated,
        name=name,
    )


def dense(
    features: int,
    *,
    name: str,
    init: Initializer,
    bias_init: Initializer = nn.initializers.zeros,
    dtype: Any = jnp.float32,
) -> nn.Dense:
    """Caffe InnerProduct layer with float32 params."""
    return nn.Dense(
        features, kernel_init=init, bias_init=bias_init, dtype=dtype, param_dtype=jnp.float32, name=name
    )


def batch_norm(*, name: str, train: bool, dtype: Any = jnp.float32) -> nn.BatchNorm:
    """Caffe BatchNorm + Scale: running stats with fraction 0.999, eps 1e-5; scale/bias are gamma/beta."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.999,
        epsilon=1e-5,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def flatten(x: jax.Array) -> jax.Array:
    """[B, ...] -> [B, prod(...)]."""
    return x.reshape(x.shape[0], -1)


def fc_relu_dropout_stack(
    x: jax.Array,
    widths: tuple[int, ...],
    num_outputs: int,
    names: tuple[str, ...],
    *,
    init: Initializer,
    out_init: Initializer,
    dropout_rate: float,
    train: bool,
    bias_init: Initializer = nn.initializers.zeros,
    dtype: Any = jnp.float32,
) -> jax.Array:
    """Classifier of flattened x: FC-ReLU-dropout layers of `widths`, then an FC of `num_outputs`.

    `names` lists the hidden FCs, then the output FC (zero bias; `bias_init` is the hidden ones').
    Call it inside a compact method: its layers become children of the caller.
    """
    x = flatten(x)
    for width, name in zip(widths, names):
        x = nn.relu(dense(width, init=init, bias_init=bias_init, name=name, dtype=dtype)(x))
        x = nn.Dropout(dropout_rate, deterministic=not train)(x)
    return dense(num_outputs, init=out_init, name=names[-1], dtype=dtype)(x)


class FrozenProjection(nn.Module):
    """1x1 strided conv, no bias, identity-filled weights kept in the 'frozen' collection (never trained)."""

    features: int
    stride: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Project NHWC x with the frozen identity kernel."""
        kernel = self.variable(
            "frozen", "kernel", identity_filler, None, (1, 1, x.shape[-1], self.features), jnp.float32
        ).value
        return lax.conv_general_dilated(
            x,
            kernel.astype(self.dtype),
            (self.stride, self.stride),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )


def basic_block(
    x: jax.Array,
    features: int,
    *,
    conv_names: tuple[str, str],
    bn_names: tuple[str, str],
    train: bool,
    stride: int = 1,
    proj_name: str | None = None,
    dtype: Any = jnp.float32,
) -> jax.Array:
    """Post-activation ResNet basic block: conv-BN-ReLU-conv-BN, add the shortcut, ReLU.

    Call it inside a compact method: its layers become direct children of the calling module,
    under the caller's Caffe names (the release numbers convs globally, e.g. conv_19/conv_20).
    A strided block uses the release's frozen identity projection `proj_name` as its shortcut.
    """
    y = x
    for i, (conv_name, bn_name) in enumerate(zip(conv_names, bn_names)):
        y = conv(features, 3, name=conv_name, init=msra_fan_out(), stride=stride if i == 0 else 1,
                 padding=1, use_bias=False, dtype=dtype)(y)
        y = batch_norm(name=bn_name, train=train, dtype=dtype)(y)
        if i == 0:
            y = nn.relu(y)
    shortcut = x if proj_name is None else FrozenProjection(features, stride, dtype=dtype, name=proj_name)(x)
    return nn.relu(y + shortcut)

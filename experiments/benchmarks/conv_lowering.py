r"""Kernel-gradient time of every unstacked convolution of the models: XLA's vs one matmul per tap.

  python -m experiments.benchmarks.conv_lowering
  python -m experiments.benchmarks.conv_lowering --models=tiny_cnn:28x56x1,alexnet_c100 --json_out=/tmp/conv.json

For each model (`name` at its registry input shape, or `name:HxWxC` at another), the forward
pass is traced at `--batch_size` to collect its convolutions (kernels not stacked over experts;
the stacked ones are `expert_branches`' subject). For each distinct shape, the gradient of a
fixed random projection of its output with respect to the kernel is computed both ways:
XLA's convolution (`models/layers.py`, lowering 'xla') and `tap_grad_conv` (XLA's forward, the
kernel gradient as one matmul per tap). The forward pass and the input gradient are XLA's in
both, so this is the only part that differs. Both are compiled and checked to agree, then timed
in alternating rounds (median ms per round); the row shows the output pixels (batch x out_h x
out_w) and the lowering `conv_lowering` picks on this backend, so its rule
(`layers.TAP_GRAD_MIN_OUTPUT_PIXELS`) can be read against the measurement.

Prints a table and one JSON line {'rows': [...]}; `--json_out` also writes that JSON to a file.
"""
import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import benchmarks
from experiments.benchmarks import train_speed
from nofe_jax.models import layers, registry

DEFAULT_MODELS = ('tiny_cnn:28x28x1', 'tiny_cnn:28x56x1', 'alexnet_c100', 'alexnet_quick_c100', 'nin_c100',
                  'vgg11_c100', 'resnet56_c100')


def parse_models(value: str) -> list[tuple[str, tuple[int, ...]]]:
    """[(name, input shape)] of a comma-separated `--models` value; one-line errors argparse prints as they are."""
    return [_parse_model(item) for item in value.split(',')]


def _parse_model(value: str) -> tuple[str, tuple[int, ...]]:
    name, _, shape = value.partition(':')
    if name not in registry.MODELS:
        raise argparse.ArgumentTypeError(f'unknown model {name!r}; choose from {", ".join(sorted(registry.MODELS))}')
    if not shape:
        return name, tuple(registry.get_model_spec(name).input_shape)
    dims = shape.split('x')
    if len(dims) != 3 or not all(d.isdigit() and int(d) > 0 for d in dims):
        raise argparse.ArgumentTypeError(f'input shape {shape!r} of {name} is not HxWxC')
    return name, tuple(int(d) for d in dims)


def forward_equations(name: str, input_shape: tuple[int, ...], batch_size: int) -> list[Any]:
    """Every equation of the flat `name`'s forward pass on [batch_size, *input_shape], traced with
    XLA's lowerings (nested jaxprs included)."""
    model = registry.build_base(name, 10)
    x = jax.ShapeDtypeStruct((batch_size, *input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    with layers.xla_lowerings():
        jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return list(_equations(jaxpr.jaxpr))


def model_convolutions(name: str, input_shape: tuple[int, ...], batch_size: int) -> list[dict[str, Any]]:
    """Each distinct convolution in the forward pass of the flat `name` on [batch_size, *input_shape]."""
    convs = {}
    for eqn in forward_equations(name, input_shape, batch_size):
        if eqn.primitive.name != 'conv_general_dilated':
            continue
        params = eqn.params
        if params['feature_group_count'] != 1 or any(d != 1 for d in (*params['lhs_dilation'], *params['rhs_dilation'])):
            continue
        shape = {'input': tuple(eqn.invars[0].aval.shape), 'kernel': tuple(eqn.invars[1].aval.shape),
                 'strides': tuple(params['window_strides']), 'padding': tuple(map(tuple, params['padding']))}
        convs[repr(shape)] = shape
    return list(convs.values())


def _equations(jaxpr):
    """Every equation of `jaxpr` and of the jaxprs nested in its equations' params."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            inner = getattr(value, 'jaxpr', value)
            if hasattr(inner, 'eqns'):
                yield from _equations(inner)


def _kernel_grad(conv):
    return jax.jit(jax.grad(lambda kernel, x, probe: jnp.sum(conv(x, kernel) * probe)))


def measure(shape: dict[str, Any], iterations: int, rounds: int, seed: int) -> dict[str, Any]:
    """Median ms of the kernel gradient of `shape`'s convolution, XLA's and tap_grad's."""
    strides, padding = shape['strides'], shape['padding']
    xla = _kernel_grad(lambda x, kernel: layers.xla_conv(x, kernel, strides, padding, None))
    tap = _kernel_grad(lambda x, kernel: layers.tap_grad_conv(x, kernel, strides, padding))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape['input']), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=shape['kernel']), jnp.float32)
    probe = jnp.asarray(rng.normal(size=jax.eval_shape(
        lambda: layers.xla_conv(x, kernel, strides, padding, None)).shape), jnp.float32)
    want, got = xla(kernel, x, probe), tap(kernel, x, probe)
    agree = bool(np.allclose(got, want, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(want)))))
    seconds = train_speed.time_alternating(
        {name: lambda grad=grad: jax.block_until_ready(grad(kernel, x, probe))
         for name, grad in (('xla', xla), ('tap_grad', tap))}, iterations, rounds)
    output_pixels = math.prod(probe.shape[:3])
    xla_ms, tap_ms = 1e3 * seconds['xla'], 1e3 * seconds['tap_grad']
    return {**{key: list(value) for key, value in shape.items() if key != 'padding'},
            'padding': [list(p) for p in padding],
            'xla_ms': xla_ms, 'tap_grad_ms': tap_ms, 'xla_over_tap_grad': xla_ms / tap_ms, 'same_grad': agree,
            'output_pixels': output_pixels,
            'picked': layers.conv_lowering(jax.default_backend(), stacked=False, feature_group_count=1, dilated=False,
                                           kernel_shape=shape['kernel'], output_pixels=output_pixels,
                                           avx512=layers.cpu_has_avx512())}


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per model convolution."""
    lines = [f'kernel gradient, batch {rows[0]["input"][0]}, on {jax.default_backend()} ({jax.devices()[0].device_kind})',
             '| model | input | kernel | stride | output pixels | XLA ms | tap_grad ms | XLA / tap_grad | picked | same grad |',
             '|---|---|---|---|---:|---:|---:|---:|---|---|']
    lines += [f"| {r['model']} | {'x'.join(map(str, r['input'][1:]))} | {'x'.join(map(str, r['kernel']))} | "
              f"{r['strides'][0]} | {r['output_pixels']} | {r['xla_ms']:.1f} | {r['tap_grad_ms']:.1f} | "
              f"{r['xla_over_tap_grad']:.2f} | {r['picked']} | {'PASS' if r['same_grad'] else 'FAIL'} |" for r in rows]
    return '\n'.join(lines)


def layer_benchmark(argv: Sequence[str] | None, doc: str, layers_of: Callable[..., list[dict[str, Any]]],
                    measure_layer: Callable[..., dict[str, Any]],
                    table: Callable[[list[dict[str, Any]]], str]) -> dict[str, Any]:
    """The command line of a per-layer lowering benchmark: parses `argv`, measures each layer that
    `layers_of(name, shape, batch_size)` finds in every model, prints `table(rows)` and one JSON line."""
    parser = argparse.ArgumentParser(description=doc.split('\n\n')[0].strip())
    parser.add_argument('--models', type=parse_models, default=','.join(DEFAULT_MODELS),
                        help='comma-separated model names, each optionally :HxWxC for another input shape')
    parser.add_argument('--batch_size', type=int, default=100)
    parser.add_argument('--iterations', type=int, default=3, help='timed gradients per round')
    parser.add_argument('--rounds', type=int, default=5, help='alternating timed rounds per lowering')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json_out', default=None, help='also write the JSON result here')
    args = parser.parse_args(argv)
    rows = [{'model': f'{name}:{"x".join(map(str, shape))}', **measure_layer(layer, args.iterations, args.rounds, args.seed)}
            for name, shape in args.models for layer in layers_of(name, shape, args.batch_size)]
    return benchmarks.report(table(rows), {'rows': rows}, args.json_out)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses `argv`, measures every model's convolutions, prints the table and one JSON line."""
    return layer_benchmark(argv, __doc__, model_convolutions, measure, format_table)


if __name__ == '__main__':
    main()

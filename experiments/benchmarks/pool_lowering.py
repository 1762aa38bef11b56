r"""Input-gradient time of every max pool of the models: XLA's select-and-scatter vs the window's slices.

  python -m experiments.benchmarks.pool_lowering
  python -m experiments.benchmarks.pool_lowering --models=tiny_cnn:28x84x1,alexnet_c100 --json_out=/tmp/pool.json

For each model (`name` at its registry input shape, or `name:HxWxC` at another; the same
argument as `conv_lowering`), the forward pass is traced at `--batch_size` to collect its max
pools. For each distinct shape, the gradient of a fixed random projection of the pool's output
with respect to its input is computed both ways: XLA's `reduce_window` max (differentiated by
select-and-scatter) and `layers.tap_max_pool` (the maximum of the window's strided slices; the
gradient to each window's first maximum, padded back and summed). Both are compiled and checked
to agree, then timed in alternating rounds (median ms per round); the row shows the lowering
`layers.max_pool_lowering` picks on this backend.

Prints a table and one JSON line {'rows': [...]}; `--json_out` also writes that JSON to a file.
"""
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from experiments.benchmarks import conv_lowering, train_speed
from nofe_jax.models import layers


def model_max_pools(name: str, input_shape: tuple[int, ...], batch_size: int) -> list[dict[str, Any]]:
    """Each distinct max pool (its padded input, window and stride) in the flat `name`'s forward pass."""
    pools = {}
    for eqn in conv_lowering.forward_equations(name, input_shape, batch_size):
        if eqn.primitive.name == 'reduce_window_max':
            shape = {'input': tuple(eqn.invars[0].aval.shape), 'window': eqn.params['window_dimensions'][1],
                     'stride': eqn.params['window_strides'][1]}
            pools[repr(shape)] = shape
    return list(pools.values())


def _input_grad(pool):
    return jax.jit(jax.grad(lambda x, probe: jnp.sum(pool(x) * probe)))


def measure(shape: dict[str, Any], iterations: int, rounds: int, seed: int) -> dict[str, Any]:
    """Median ms of the input gradient of `shape`'s max pool, XLA's and the slices'."""
    window, stride = shape['window'], shape['stride']
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    grads = {'xla': _input_grad(lambda x: lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, 'VALID')),
             'taps': _input_grad(lambda x: layers.tap_max_pool(x, window, stride))}
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape['input']), jnp.float32)
    out_shape = jax.eval_shape(lambda x: layers.tap_max_pool(x, window, stride), x).shape
    probe = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
    want, got = (grads[name](x, probe) for name in ('xla', 'taps'))
    # Overlapping windows sum a shared pixel's gradients in another order: equal to rounding.
    agree = bool(np.allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want)))))
    seconds = train_speed.time_alternating(
        {name: lambda grad=grad: jax.block_until_ready(grad(x, probe)) for name, grad in grads.items()},
        iterations, rounds)
    xla_ms, taps_ms = 1e3 * seconds['xla'], 1e3 * seconds['taps']
    return {'input': list(shape['input']), 'window': window, 'stride': stride,
            'xla_ms': xla_ms, 'taps_ms': taps_ms, 'xla_over_taps': xla_ms / taps_ms, 'same_grad': agree,
            'picked': layers.max_pool_lowering(jax.default_backend())}


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per model max pool."""
    lines = [f'max pool input gradient, batch {rows[0]["input"][0]}, on {jax.default_backend()} '
             f'({jax.devices()[0].device_kind})',
             '| model | padded input | window / stride | XLA ms | taps ms | XLA / taps | picked | same grad |',
             '|---|---|---|---:|---:|---:|---|---|']
    lines += [f"| {r['model']} | {'x'.join(map(str, r['input'][1:]))} | {r['window']}/{r['stride']} | "
              f"{r['xla_ms']:.1f} | {r['taps_ms']:.1f} | {r['xla_over_taps']:.2f} | {r['picked']} | "
              f"{'PASS' if r['same_grad'] else 'FAIL'} |" for r in rows]
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses `argv`, measures every model's max pools, prints the table and one JSON line."""
    return conv_lowering.layer_benchmark(argv, __doc__, model_max_pools, measure, format_table)


if __name__ == '__main__':
    main()

r"""Train-step time of G stacked base networks (DMDE's and DeepME's bases) vs a Python loop over G,
and vs G times one base network's step.

  python -m experiments.benchmarks.group_networks --model=alexnet_c100   # G = 4, 8, 16
  python -m experiments.benchmarks.group_networks --model=tiny_cnn --num_groups=4,8 --json_out=/tmp/g.json

Three jitted SGD steps on one fixed random batch of the model's input shape, every image through
every group network (as the bases train: an image's loss counts in the groups holding its class,
the not-in-group output elsewhere), each group a softmax over m + 1 outputs:
(a) stacked: `GroupNetworks` (one `nn.vmap` module, parameters on a leading G axis);
(b) loop: the same stacked parameters, a Python loop over G applying one base network to each
    slice, which XLA sees as G independent sub-graphs;
(c) one: a single base network's step, the same batch and outputs; the report multiplies it by G
    (G networks trained one after another).
Before timing, (a) and (b) are checked to give the same loss. All are compiled first, then timed
in alternating rounds (`train_speed.time_alternating`); the report is the median ms per step and
the ratios loop / stacked and G x one / stacked. The classifier is not split (w_0 + v_k, DMDE's
multi-task softmax, adds one small matmul per group), so the three compute the same network.

Prints a table (one row per G) and one JSON line; `--json_out` also writes that JSON to a file.
"""
import argparse
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import benchmarks
from experiments.benchmarks import train_speed
from nofe_jax.models import group_networks, registry

_LR = 1e-3


def _sgd_step(apply: Callable, targets: jax.Array) -> Callable:
    """Jitted SGD step for `apply(variables, images) -> (logits [B, G, m + 1], new batch_stats)`;
    the loss is the mean over groups of each group's cross-entropy."""

    def loss_fn(params, rest, images):
        logits, new_rest = apply({'params': params, **rest}, images)
        per_group = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # [B, G]
        return per_group.mean(), new_rest

    def step(variables, images):
        params, rest = variables['params'], {c: v for c, v in variables.items() if c != 'params'}
        (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, images)
        params = jax.tree.map(lambda p, g: p - _LR * g, params, grads)
        return {'params': params, **rest, **new_rest}, loss

    return jax.jit(step, donate_argnums=0)


def _mutable(variables: dict) -> list[str]:
    return [c for c in variables if c != 'params']


def stacked_apply(model: group_networks.GroupNetworks) -> Callable:
    def apply(variables, images):
        (logits, _), new = model.apply(variables, images, train=True, mutable=_mutable(variables))
        return logits, new
    return apply


def looped_apply(base, num_groups: int) -> Callable:
    """The stacked variables' G slices through `base` one by one, stacked back like GroupNetworks."""

    def apply(variables, images):
        logits, new = [], []
        for g in range(num_groups):
            sliced = jax.tree.map(lambda v: v[g], {c: v['base'] for c, v in variables.items()})
            group_logits, group_new = base.apply(sliced, images, train=True, mutable=_mutable(sliced))
            logits.append(group_logits[0] if isinstance(group_logits, tuple) else group_logits)
            new.append(group_new)
        stacked_new = jax.tree.map(lambda *v: jnp.stack(v), *new) if new[0] else {}
        return (jnp.stack(logits, axis=1).astype(jnp.float32),
                {c: {'base': v} for c, v in stacked_new.items()})

    return apply


def _runner(step: Callable, variables: dict, images: jax.Array) -> Callable[[], None]:
    holder = {'variables': variables}

    def run() -> None:
        holder['variables'], loss = step(holder['variables'], images)
        jax.block_until_ready(loss)

    run()  # compile
    return run


def measure(name: str, num_groups: int, group_size: int, batch_size: int, iterations: int,
            rounds: int) -> dict:
    """One row: ms per step of the stacked, looped and single networks, and the ratios."""
    image_shape = registry.get_model_spec(name).input_shape
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(batch_size, *image_shape)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, group_size + 1, (batch_size, num_groups)), jnp.int32)
    base = registry.build_base(name, group_size + 1)
    model = group_networks.GroupNetworks(base, num_groups, group_size, split_classifier=False)
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images[:2])
    stacked, looped = stacked_apply(model), looped_apply(base, num_groups)
    loss = {kind: float(_sgd_step(apply, targets)(jax.tree.map(jnp.copy, variables), images)[1])
            for kind, apply in (('stacked', stacked), ('loop', looped))}
    if not np.isclose(loss['stacked'], loss['loop'], rtol=1e-4):
        raise AssertionError(f'stacked and looped group networks disagree: {loss}')
    one_variables = jax.tree.map(lambda v: jnp.array(v[0]), {c: v['base'] for c, v in variables.items()})

    def one_apply(v, x):
        logits, new = base.apply(v, x, train=True, mutable=_mutable(v))
        logits = logits[0] if isinstance(logits, tuple) else logits
        return logits[:, None].astype(jnp.float32), new

    runs = {'stacked': _runner(_sgd_step(stacked, targets), jax.tree.map(jnp.copy, variables), images),
            'loop': _runner(_sgd_step(looped, targets), jax.tree.map(jnp.copy, variables), images),
            'one': _runner(_sgd_step(one_apply, targets[:, :1]), one_variables, images)}
    seconds = train_speed.time_alternating(runs, iterations, rounds)
    return {'model': name, 'num_groups': num_groups, 'group_size': group_size,
            'stacked_ms': seconds['stacked'] * 1e3, 'loop_ms': seconds['loop'] * 1e3,
            'one_ms': seconds['one'] * 1e3, 'loop_over_stacked': seconds['loop'] / seconds['stacked'],
            'g_times_one_over_stacked': num_groups * seconds['one'] / seconds['stacked']}


def format_table(rows: list[dict]) -> str:
    lines = [f'{"model":<16}{"G":>4}{"stacked ms":>12}{"loop ms":>10}{"one ms":>9}'
             f'{"loop/stacked":>14}{"G*one/stacked":>15}', '-' * 80]
    for r in rows:
        lines.append(f'{r["model"]:<16}{r["num_groups"]:>4}{r["stacked_ms"]:>12.1f}{r["loop_ms"]:>10.1f}'
                     f'{r["one_ms"]:>9.1f}{r["loop_over_stacked"]:>14.2f}{r["g_times_one_over_stacked"]:>15.2f}')
    return '\n'.join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='alexnet_c100', help='registry name of the base network')
    parser.add_argument('--num_groups', default='4,8,16', help='comma-separated G values')
    parser.add_argument('--group_size', type=int, default=10, help='classes per group (m)')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--iterations', type=int, default=3, help='timed steps per round')
    parser.add_argument('--rounds', type=int, default=3, help='alternating timed rounds per variant')
    parser.add_argument('--json_out', default=None, help='also write the JSON result here')
    args = parser.parse_args(argv)
    rows = [measure(args.model, int(g), args.group_size, args.batch_size, args.iterations, args.rounds)
            for g in args.num_groups.split(',')]
    device = jax.devices()[0]
    print(f'{args.model}, groups of {args.group_size} classes + not-in-group, batch {args.batch_size}, '
          f'{jax.default_backend()} ({device.device_kind}), median of {args.rounds} rounds x '
          f'{args.iterations} steps')
    result = {'backend': jax.default_backend(), 'device': device.device_kind, 'batch_size': args.batch_size,
              'rows': rows}
    return benchmarks.report(format_table(rows), result, args.json_out)


if __name__ == '__main__':
    main()

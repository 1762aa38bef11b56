r"""Inference speed of each CIFAR base model and its NofE: per-image latency at batch 1 and
throughput at a large batch, with the FLOP ratio beside the time ratios.

  python -m experiments.benchmarks.inference
  python -m experiments.benchmarks.inference --models=nin_c100 --batch_size=500 --json_out=/tmp/inf.json

For every model: the flat base (C-way head) and the NofE (K experts over a balanced layout of
C classes) each run their jitted eval-mode forward pass (`model.apply(..., train=False)`, the
predict path of a trained run) on fixed synthetic images of the model's input shape. Every
program is compiled first, then base and NofE are timed in alternating rounds
(`train_speed.time_alternating`) so background load hits both alike; the report is the median
per round. The NofE paper reports seconds per image for NIN-C100's NofE (0.0071 s on its GPU).

Prints a table and one JSON line; `--json_out` also writes that JSON to a file.
"""
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from experiments import benchmarks, describe
from experiments.benchmarks import train_speed
from nofe_jax.models import experts, registry


def _timed_forward(model, image_shape: tuple[int, ...], batch_size: int,
                   extra_args: tuple) -> tuple[Callable[[], None], float]:
    """(run one compiled eval forward pass on `batch_size` images, forward FLOPs per image)."""
    images = jnp.asarray(np.random.default_rng(0).normal(size=(batch_size, *image_shape)), jnp.float32)
    variables = jax.jit(lambda x, *a: model.init(jax.random.key(0), x, *a, train=False))(
        images[:1], *extra_args)
    forward = jax.jit(lambda v, x, *a: model.apply(v, x, *a, train=False))

    def run() -> None:
        jax.block_until_ready(forward(variables, images, *extra_args))

    run()  # compile
    return run, describe.describe_model(model, image_shape, extra_args)['flops_per_image']


def build_models(name: str, num_classes: int, num_experts: int) -> dict:
    """{'base': (model, extra args), 'nofe': (model, extra args)} for registry model `name`."""
    layout = experts.expert_layout(np.arange(num_classes) % num_experts)
    slots = jnp.asarray(layout.class_slots)
    return {'base': (registry.build_base(name, num_classes), ()),
            'nofe': (registry.build_nofe(name, layout), (slots,))}


def measure(name: str, num_classes: int, num_experts: int, batch_size: int, iterations: int,
            rounds: int) -> dict:
    """One row: latency (batch 1) and throughput (`batch_size`) of base and NofE, and the ratios."""
    image_shape = registry.get_model_spec(name).input_shape
    models = build_models(name, num_classes, num_experts)
    row, flops = {'model': name}, {}
    for batch, key in ((1, 'latency'), (batch_size, 'throughput')):
        runs = {}
        for variant, (model, extra) in models.items():
            runs[variant], flops[variant] = _timed_forward(model, image_shape, batch, extra)
        seconds = train_speed.time_alternating(runs, iterations, rounds)
        for variant, s in seconds.items():
            row[f'{variant}_{key}'] = s * 1e3 if key == 'latency' else batch / s
        row[f'{key}_time_ratio'] = seconds['nofe'] / seconds['base']
    row['flop_ratio'] = flops['nofe'] / flops['base']
    return row


def format_table(rows: list[dict], batch_size: int) -> str:
    lines = [f'{"model":<20}{"base ms/img":>12}{"NofE ms/img":>12}{"ratio":>7}'
             f'{"base img/s":>12}{"NofE img/s":>12}{"ratio":>7}{"FLOP ratio":>12}',
             f'{"":<20}{"(batch 1)":>31}{f"(batch {batch_size})":>31}', '-' * 94]
    for row in rows:
        lines.append(f'{row["model"]:<20}{row["base_latency"]:>12.2f}{row["nofe_latency"]:>12.2f}'
                     f'{row["latency_time_ratio"]:>7.2f}{row["base_throughput"]:>12.1f}'
                     f'{row["nofe_throughput"]:>12.1f}{row["throughput_time_ratio"]:>7.2f}'
                     f'{row["flop_ratio"]:>12.2f}')
    return '\n'.join(lines)


def main(argv=None) -> dict:
    args = train_speed.model_pair_flags(__doc__.splitlines()[0], 256, 'the throughput batch').parse_args(argv)
    rows = [measure(name, args.num_classes, args.num_experts, args.batch_size, args.iterations, args.rounds)
            for name in args.models.split(',')]
    device = jax.devices()[0]
    print(f'{args.num_classes} classes, K={args.num_experts}, {jax.default_backend()} '
          f'({device.device_kind}), median of {args.rounds} rounds x {args.iterations} calls; '
          'latency in ms per image at batch 1')
    result = {'backend': jax.default_backend(), 'device': device.device_kind, 'batch_size': args.batch_size,
              'num_classes': args.num_classes, 'num_experts': args.num_experts, 'rows': rows}
    return benchmarks.report(format_table(rows, args.batch_size), result, args.json_out)


if __name__ == '__main__':
    main()

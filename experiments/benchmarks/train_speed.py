r"""Training images/s of each CIFAR base model and its NofE, with the FLOP ratio beside the time ratio.

  python -m experiments.benchmarks.train_speed
  python -m experiments.benchmarks.train_speed --models=alexnet_c100,nin_c100 --json_out=/tmp/speed.json

For every model: the flat base (C-way head) and the NofE (K experts over a balanced layout of
C classes) each run the library's own jitted train step (`training.steps.make_train_step`, SGD
with momentum, the recipe's ExpertTask for the NofE) on one fixed synthetic batch of the
model's input shape. Both are compiled first, then timed in alternating rounds (`iterations`
steps per round, ended by `block_until_ready`) so background load hits both alike; the report
is the median step time per round. Beside the time ratio NofE / base stands the ratio of their
eval-mode forward FLOPs (XLA cost analysis, as `experiments.describe` reports them): a NofE
step that costs more than its FLOPs say is lost to the lowering, not to the method.

Prints a table and one JSON line; `--json_out` also writes that JSON to a file.
"""
import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import benchmarks, describe
from nofe_jax.methods.nofe.task import ExpertTask
from nofe_jax.models import experts, registry
from nofe_jax.training import steps, tasks
from nofe_jax.training.state import create_train_state

CIFAR_MODELS = ('alexnet_c100', 'alexnet_quick_c100', 'vgg11_c100', 'nin_c100', 'resnet56_c100')


def _timed_step(model, task, grouping: dict, image_shape: tuple[int, ...], batch_size: int,
                extra_args: tuple) -> tuple[Callable[[], None], float]:
    """(run one compiled train step, forward FLOPs per image) of `model` on a fixed random batch."""
    rng = np.random.default_rng(0)
    batch = {'image': jnp.asarray(rng.normal(size=(batch_size, *image_shape)), jnp.float32),
             'label': jnp.asarray(rng.integers(0, task.num_targets, batch_size), jnp.int32)}
    variables = jax.jit(lambda x, *a: model.init(jax.random.key(0), x, *a, train=False))(
        batch['image'][:2], *extra_args)
    state = create_train_state(model.apply, variables, optax.sgd(1e-3, momentum=0.9), jax.random.key(1))
    step = jax.jit(steps.make_train_step(task), donate_argnums=0)
    holder = {'state': state}

    def run() -> None:
        holder['state'], metrics = step(holder['state'], batch, grouping)
        jax.block_until_ready(metrics)

    run()  # compile
    flops = describe.describe_model(model, image_shape, extra_args)['flops_per_image']
    return run, flops


def build_pair(name: str, num_classes: int, num_experts: int, batch_size: int) -> dict:
    """{'base': (run, flops), 'nofe': (run, flops)} for model `name`."""
    image_shape = registry.get_model_spec(name).input_shape
    base = registry.build_base(name, num_classes)
    layout = experts.expert_layout(np.arange(num_classes) % num_experts)
    slots = jnp.asarray(layout.class_slots)
    grouping = {'class_slots': slots, 'class_to_specialty': slots // layout.c_max}
    return {
        'base': _timed_step(base, tasks.ClassificationTask(num_classes), {}, image_shape, batch_size, ()),
        'nofe': _timed_step(registry.build_nofe(name, layout), ExpertTask(num_classes), grouping,
                            image_shape, batch_size, (slots,)),
    }


def time_alternating(runs: dict[str, Callable[[], None]], iterations: int, rounds: int) -> dict[str, float]:
    """Median seconds per step of each run, timed in alternating rounds."""
    per_round = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(iterations):
                run()
            per_round[name].append((time.perf_counter() - start) / iterations)
    return {name: statistics.median(times) for name, times in per_round.items()}


def measure(name: str, num_classes: int, num_experts: int, batch_size: int, iterations: int,
            rounds: int) -> dict:
    """One row: images/s of base and NofE, their step-time ratio and FLOP ratio."""
    pair = build_pair(name, num_classes, num_experts, batch_size)
    seconds = time_alternating({k: run for k, (run, _) in pair.items()}, iterations, rounds)
    flops = {k: f for k, (_, f) in pair.items()}
    return {'model': name, 'base_images_per_s': batch_size / seconds['base'],
            'nofe_images_per_s': batch_size / seconds['nofe'],
            'time_ratio': seconds['nofe'] / seconds['base'], 'flop_ratio': flops['nofe'] / flops['base'],
            'base_mflops_per_image': flops['base'] / 1e6, 'nofe_mflops_per_image': flops['nofe'] / 1e6}


def format_table(rows: list[dict]) -> str:
    lines = [f'{"model":<20}{"base img/s":>12}{"NofE img/s":>12}{"time ratio":>12}{"FLOP ratio":>12}',
             '-' * 68]
    for row in rows:
        lines.append(f'{row["model"]:<20}{row["base_images_per_s"]:>12.1f}{row["nofe_images_per_s"]:>12.1f}'
                     f'{row["time_ratio"]:>12.2f}{row["flop_ratio"]:>12.2f}')
    return '\n'.join(lines)


def model_pair_flags(description: str, batch_size: int, batch_help: str) -> argparse.ArgumentParser:
    """The flags of a benchmark that times every CIFAR model's flat base against its NofE."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--models', default=','.join(CIFAR_MODELS),
                        help='comma-separated registry names')
    parser.add_argument('--num_classes', type=int, default=100)
    parser.add_argument('--num_experts', type=int, default=10)
    parser.add_argument('--batch_size', type=int, default=batch_size, help=batch_help)
    parser.add_argument('--iterations', type=int, default=5, help='timed calls per round')
    parser.add_argument('--rounds', type=int, default=5, help='alternating timed rounds per variant')
    parser.add_argument('--json_out', default=None, help='also write the JSON result here')
    return parser


def main(argv=None) -> dict:
    args = model_pair_flags(__doc__.splitlines()[0], 100, 'the training batch').parse_args(argv)
    rows = [measure(name, args.num_classes, args.num_experts, args.batch_size, args.iterations, args.rounds)
            for name in args.models.split(',')]
    device = jax.devices()[0]
    print(f'{args.num_classes} classes, K={args.num_experts}, batch {args.batch_size}, '
          f'{jax.default_backend()} ({device.device_kind}), median of {args.rounds} rounds x '
          f'{args.iterations} steps')
    result = {'backend': jax.default_backend(), 'device': device.device_kind, 'batch_size': args.batch_size,
              'num_classes': args.num_classes, 'num_experts': args.num_experts, 'rows': rows}
    return benchmarks.report(format_table(rows), result, args.json_out)


if __name__ == '__main__':
    main()

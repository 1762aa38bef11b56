r"""Training images/s of each CIFAR base model and its NofE, with the FLOP ratio beside the time ratio.

  python -m experiments.benchmarks.train_speed
  python -m experiments.benchmarks.train_speed --models=alexnet_c100,nin_c100 --json_out=/tmp/speed.json
  python -m experiments.benchmarks.train_speed --models=alexnet_c100 --frameworks=jax,torch

For every model: the flat base (C-way head) and the NofE (K experts over a balanced layout of
C classes) each run the library's own jitted train step (`training.steps.make_train_step`, SGD
with momentum, the recipe's ExpertTask for the NofE) on one fixed synthetic batch of the
model's input shape. Both are compiled first, then timed in alternating rounds (`iterations`
steps per round, ended by `block_until_ready`) so background load hits both alike; the report
is the median step time per round. Beside the time ratio NofE / base stands the ratio of their
eval-mode forward FLOPs (XLA cost analysis, as `experiments.describe` reports them): a NofE
step that costs more than its FLOPs say is lost to the lowering, not to the method.

With `--frameworks=jax,torch` (the default when torch is installed: `pip install -e ".[torch]"`)
the models `torch_reference` implements (AlexNet-C100) also run a PyTorch implementation of the
same networks, experts fused, with the same parameter counts (checked), batch and SGD step, with
torch's threads set to the machine's cores. All four steps alternate in the same rounds, and the
row adds the JAX / PyTorch images/s ratio of base and NofE: under background load that ratio is
the figure to compare, not the absolute images/s.

Prints a table and one JSON line; `--json_out` also writes that JSON to a file.
"""
import argparse
import functools
import importlib.util
import statistics
import time
from collections.abc import Callable, Hashable

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
FRAMEWORKS = ('jax', 'torch')
VARIANTS = ('base', 'nofe')
TORCH_MODELS = ('alexnet_c100',)  # what `torch_reference` implements (it imports torch, so it is not asked)
TORCH_INSTALLED = importlib.util.find_spec('torch') is not None


def parse_frameworks(value: str, torch_installed: bool) -> tuple[str, ...]:
    """The frameworks of a comma-separated `--frameworks` value; one-line errors argparse prints as they are."""
    names = tuple(value.split(','))
    unknown = sorted(set(names) - set(FRAMEWORKS))
    if unknown:
        raise argparse.ArgumentTypeError(f'unknown frameworks {unknown}; choose from {", ".join(FRAMEWORKS)}')
    if 'torch' in names and not torch_installed:
        raise argparse.ArgumentTypeError('torch is not installed; pip install -e ".[torch]" or use --frameworks=jax')
    return names


def synthetic_batch(image_shape: tuple[int, ...], batch_size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 [B, H, W, C], labels int32 [B]): the one fixed batch every step trains on."""
    rng = np.random.default_rng(0)
    return (rng.normal(size=(batch_size, *image_shape)).astype(np.float32),
            rng.integers(0, num_classes, batch_size).astype(np.int32))


def jax_models(name: str, layout: experts.ExpertLayout) -> dict:
    """{'base' / 'nofe': (model, task, grouping, extra model args)} of model `name`, the NofE's experts
    those of `layout`."""
    num_classes = layout.class_slots.size
    slots = jnp.asarray(layout.class_slots)
    grouping = {'class_slots': slots, 'class_to_specialty': slots // layout.c_max}
    return {'base': (registry.build_base(name, num_classes), tasks.ClassificationTask(num_classes), {}, ()),
            'nofe': (registry.build_nofe(name, layout), ExpertTask(num_classes), grouping, (slots,))}


def _jax_step(model, task, grouping: dict, extra_args: tuple, images: np.ndarray,
              labels: np.ndarray) -> Callable[[], None]:
    """Runs one compiled train step of `model` on the fixed batch."""
    batch = {'image': jnp.asarray(images), 'label': jnp.asarray(labels)}
    variables = jax.jit(lambda x, *a: model.init(jax.random.key(0), x, *a, train=False))(
        batch['image'][:2], *extra_args)
    state = create_train_state(model.apply, variables, optax.sgd(1e-3, momentum=0.9), jax.random.key(1))
    step = jax.jit(steps.make_train_step(task), donate_argnums=0)
    holder = {'state': state}

    def run() -> None:
        holder['state'], metrics = step(holder['state'], batch, grouping)
        jax.block_until_ready(metrics)

    run()  # compile
    return run


def _torch_steps(layout: experts.ExpertLayout, jax_params: dict[str, int], images: np.ndarray,
                 labels: np.ndarray) -> dict[str, Callable[[], float]]:
    """{'base' / 'nofe': one PyTorch train step}, once their parameter counts are checked against `jax_params`."""
    from experiments.benchmarks import torch_reference  # torch is an optional extra

    models = torch_reference.build_models(layout.class_slots, layout.num_experts, layout.c_max)
    params = {variant: torch_reference.count_parameters(model) for variant, model in models.items()}
    if params != jax_params:
        raise RuntimeError(f'the PyTorch models have {params} parameters, the JAX ones {jax_params}')
    runs = {variant: torch_reference.make_train_step(model, images, labels) for variant, model in models.items()}
    for run in runs.values():
        run()  # warm up, as the JAX steps compile
    return runs


def time_alternating(runs: dict[Hashable, Callable[[], object]], iterations: int,
                     rounds: int) -> dict[Hashable, float]:
    """Median seconds per step of each run, timed in alternating rounds."""
    per_round = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(iterations):
                run()
            per_round[name].append((time.perf_counter() - start) / iterations)
    return {name: statistics.median(times) for name, times in per_round.items()}


def framework_speeds(seconds: dict[str, float], batch_size: int) -> dict:
    """Median step ms, images/s and the NofE / base step-time ratio of one framework's base and NofE."""
    return {**{f'{variant}_step_ms': 1e3 * seconds[variant] for variant in VARIANTS},
            **{f'{variant}_images_per_s': batch_size / seconds[variant] for variant in VARIANTS},
            'time_ratio': seconds['nofe'] / seconds['base']}


def measure(name: str, num_classes: int, num_experts: int, batch_size: int, iterations: int,
            rounds: int, frameworks: tuple[str, ...]) -> dict:
    """One row: per framework, the speeds of base and NofE; their FLOP ratio and parameters; and,
    when both frameworks ran, the JAX / PyTorch images/s ratio of each."""
    image_shape = registry.get_model_spec(name).input_shape
    images, labels = synthetic_batch(image_shape, batch_size, num_classes)
    layout = experts.expert_layout(np.arange(num_classes) % num_experts)
    models = jax_models(name, layout)
    described = {variant: describe.describe_model(model, image_shape, extra)
                 for variant, (model, _, _, extra) in models.items()}
    runs = {}
    if 'jax' in frameworks:
        runs['jax'] = {variant: _jax_step(*models[variant], images, labels) for variant in VARIANTS}
    if 'torch' in frameworks and name in TORCH_MODELS:
        runs['torch'] = _torch_steps(layout, {v: described[v]['params'] for v in VARIANTS}, images, labels)
    seconds = time_alternating({(framework, variant): run for framework, pair in runs.items()
                                for variant, run in pair.items()}, iterations, rounds)
    row = {'model': name, 'flop_ratio': described['nofe']['flops_per_image'] / described['base']['flops_per_image'],
           **{f'{variant}_mflops_per_image': described[variant]['flops_per_image'] / 1e6 for variant in VARIANTS},
           **{f'{variant}_params': described[variant]['params'] for variant in VARIANTS},
           **{framework: framework_speeds({v: seconds[framework, v] for v in VARIANTS}, batch_size)
              for framework in runs}}
    if len(runs) == 2:
        row['jax_over_torch_images_per_s'] = {
            variant: row['jax'][f'{variant}_images_per_s'] / row['torch'][f'{variant}_images_per_s']
            for variant in VARIANTS}
    return row


def format_table(rows: list[dict]) -> str:
    """One line per model and framework, and one per model with the JAX / PyTorch images/s ratios."""
    lines = [f'{"model":<20}{"framework":<11}{"base ms":>9}{"NofE ms":>9}{"base img/s":>12}{"NofE img/s":>12}'
             f'{"time ratio":>12}{"FLOP ratio":>12}', '-' * 97]
    for row in rows:
        for framework in FRAMEWORKS:
            if framework in row:
                speeds = row[framework]
                lines.append(f'{row["model"]:<20}{framework:<11}{speeds["base_step_ms"]:>9.1f}'
                             f'{speeds["nofe_step_ms"]:>9.1f}{speeds["base_images_per_s"]:>12.1f}'
                             f'{speeds["nofe_images_per_s"]:>12.1f}{speeds["time_ratio"]:>12.2f}'
                             f'{row["flop_ratio"]:>12.2f}')
        if 'jax_over_torch_images_per_s' in row:
            ratio = row['jax_over_torch_images_per_s']
            lines.append(f'{row["model"]:<20}JAX / PyTorch images/s: base {ratio["base"]:.2f}, '
                         f'NofE {ratio["nofe"]:.2f}')
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
    parser = model_pair_flags(__doc__.splitlines()[0], 100, 'the training batch')
    parser.add_argument('--frameworks', type=functools.partial(parse_frameworks, torch_installed=TORCH_INSTALLED),
                        default='jax,torch' if TORCH_INSTALLED else 'jax',
                        help=f'comma-separated, of {", ".join(FRAMEWORKS)}; torch runs {", ".join(TORCH_MODELS)} '
                             'only (default: both when torch is installed)')
    args = parser.parse_args(argv)
    facts = {}
    if 'torch' in args.frameworks:
        from experiments.benchmarks import torch_reference  # torch is an optional extra
        facts = torch_reference.use_all_cores()
    rows = [measure(name, args.num_classes, args.num_experts, args.batch_size, args.iterations, args.rounds,
                    args.frameworks) for name in args.models.split(',')]
    device = jax.devices()[0]
    print(f'{args.num_classes} classes, K={args.num_experts}, batch {args.batch_size}, '
          f'{jax.default_backend()} ({device.device_kind}), median of {args.rounds} rounds x '
          f'{args.iterations} steps' + (f', torch {facts["torch_version"]} on {facts["torch_threads"]} threads'
                                        if facts else ''))
    result = {'backend': jax.default_backend(), 'device': device.device_kind, 'batch_size': args.batch_size,
              'num_classes': args.num_classes, 'num_experts': args.num_experts,
              'frameworks': list(args.frameworks), **facts, 'rows': rows}
    return benchmarks.report(format_table(rows), result, args.json_out)


if __name__ == '__main__':
    main()

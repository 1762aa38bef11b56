r"""Share of the NofE generalist stage's time spent in specialty updates, per CIFAR-100 base model.

  python -m experiments.benchmarks.update_share
  python -m experiments.benchmarks.update_share --models=alexnet_quick_c100,nin_c100 \
      --json_out=/tmp/share.json

For every model the generalist stage is built as `cifar100_nofe.py:model=<m>` builds it
(`training.run.prepare_run`, `methods.nofe.recipe.generalist_stage`, the loop's `_Runner`), with the data
swapped for synthetic 32x32x3 images of 100 classes (`subset_size` or more of them; CIFAR-100
is not on the offline machines). Measured side by side in one run:

- train: the loop's jitted train step (`steps.make_train_step`, the config's Caffe SGD and
  batch size) on a few preprocessed batches already on the device, `iterations` steps per
  round, median over `rounds`; times the config's update period (`nofe.update_every`,
  resolved on CIFAR-100's 50,000 training images) gives the training between two updates.
  The input pipeline is not in it (experiments/benchmarks/input_pipeline.py measures that).
- predict: `_Runner.predict` (the hook's `ctx.predict`: eval batches of the training images
  with the config's preprocessing, the jitted `steps.make_predict_step`, host gather) on a
  random S of `nofe.subset_size` images, compiled first. By default only the first
  `predict_batches` (4) eval batches of S are timed and the time is scaled up to all of them
  (every eval batch, the last one padded, has the same shape, so the time per batch is the
  same; on 2 busy CPU cores resnet56_c100 takes 15-40 s per batch of 500); 0 predicts all of S.
- assign: the real hook (`methods.nofe.recipe.make_specialty_update`: count matrix, kappa, the
  config's `nofe.balance` on the counts with the stay bonus, change summary, specialties.json)
  on planted predictions for S, since a freshly initialised generalist is at chance and the
  hook would skip the assignment: `signal` of each class's images go to a preferred specialty
  (the class's current one for 80% of the classes, a random one for the rest), the others
  uniformly at random.

share = update / (update + training between updates), update = predict + assign. The
absolute times are for this machine only; as the assignment takes milliseconds at C=100, the
share is about |S| x (forward time per image) / (steps per update x batch size x train time
per image).

Measured with the defaults on 2 CPU cores shared with a training run (resnet56_c100 with
--iterations=1 --predict_batches=1): alexnet_c100 5.5%, alexnet_quick_c100 2.6%, vgg11_c100
3.8%, nin_c100 2.4%, resnet56_c100 2.2% of the generalist stage in updates (the predict pass;
the fully_balanced assignment and its bookkeeping take 1-4 ms).
Prints a Markdown table and one JSON line; `--json_out` also writes that JSON to a file.
"""
import argparse
import contextlib
import io
import itertools
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from experiments import benchmarks
from experiments.benchmarks.train_speed import CIFAR_MODELS
from experiments.configs import cifar100_nofe
from nofe_jax import parallel
from nofe_jax.data import pipeline
from nofe_jax.grouping import specialties
from nofe_jax.methods.nofe import recipe as nofe_recipe
from nofe_jax.training import durations, loop
from nofe_jax.training import run as run_lib

CIFAR100_TRAIN_SIZE = 50_000  # the update period is resolved on the real training set
CIFAR100_CLASSES = 100
TRAIN_BATCHES = 4  # distinct device-resident batches the timed train steps cycle through
MOVER_SHARE = 0.2  # of the classes, planted to prefer a specialty other than their current one


def cifar_config(model: str, num_experts: int, balance: str, subset_size: int):
    """`cifar100_nofe.py:model=<model>` on synthetic CIFAR-shaped data of at least |S| images."""
    config = cifar100_nofe.get_config(f'model={model},k={num_experts},balance={balance}')
    if subset_size:
        config.nofe.subset_size = subset_size
    train = config.generalist.train
    config.data.update(source='synthetic', synthetic_shape=(32, 32, 3), synthetic_classes=CIFAR100_CLASSES,
                       synthetic_train_size=max(config.nofe.subset_size, 2 * train.batch_size),
                       synthetic_test_size=CIFAR100_CLASSES)
    return config


def planted_predictions(labels: np.ndarray, current: np.ndarray, num_experts: int, signal: float,
                        rng: np.random.Generator) -> np.ndarray:
    """int32[|S|]: a generalist that puts `signal` of a class's images in its preferred specialty."""
    preferred = current.copy()
    movers = rng.choice(current.size, size=int(MOVER_SHARE * current.size), replace=False)
    preferred[movers] = rng.integers(0, num_experts, size=movers.size)
    hit = rng.random(labels.size) < signal
    return np.where(hit, preferred[labels], rng.integers(0, num_experts, size=labels.size)).astype(np.int32)


def _time_train(runner: loop._Runner, state, grouping_dev, iterations: int, rounds: int) -> tuple[Any, float]:
    """(state, median seconds per train step) on device-resident batches, compiled first."""
    batches = [parallel.to_global(b, runner.batch_sharding)
               for b in itertools.islice(runner.train_batches(0), TRAIN_BATCHES)]
    state, metrics = runner.train_step(state, batches[0], grouping_dev)  # compile
    jax.block_until_ready(metrics)
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(iterations):
            state, metrics = runner.train_step(state, batches[i % len(batches)], grouping_dev)
        jax.block_until_ready((state, metrics))
        per_round.append((time.perf_counter() - start) / iterations)
    return state, statistics.median(per_round)


def _time_predict(runner: loop._Runner, state, grouping_dev, subset: np.ndarray,
                  predict_batches: int) -> tuple[float, int, int]:
    """(seconds to predict all of `subset`, eval batches timed, eval batches in all)."""
    batch_size = runner.eval_batch_size
    total = pipeline.num_eval_batches(subset.size, batch_size)
    timed = total if predict_batches <= 0 else min(predict_batches, total)
    runner.predict(state, grouping_dev, subset[:1])  # compile (one padded batch of the same shape)
    start = time.perf_counter()
    labels = runner.predict(state, grouping_dev, subset[:timed * batch_size])['label']
    seconds = time.perf_counter() - start
    assert labels.size == min(subset.size, timed * batch_size)
    return seconds * total / timed, timed, total


def measure(model: str, num_experts: int = 10, balance: str = 'fully_balanced', subset_size: int = 0,
            iterations: int = 3, rounds: int = 3, predict_batches: int = 4, signal: float = 0.5,
            seed: int = 0) -> dict[str, Any]:
    """One row: train ms/step, steps per update, update seconds (predict, assign) and the share."""
    config = cifar_config(model, num_experts, balance, subset_size)
    nc, tc = config.nofe, config.generalist.train
    with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
        run = run_lib.prepare_run(config, workdir)
        rng = np.random.default_rng(seed)
        initial = specialties.random_balanced(CIFAR100_CLASSES, nc.num_experts, rng)
        subsets = nofe_recipe.count_subsets(run)
        stage = nofe_recipe.generalist_stage(run, initial, True, subsets)
        runner = loop._Runner(stage, run.dataset, run.normalization, config)  # pylint: disable=W0212
        state = runner.init_state(runner.model_input())
        grouping_dev = runner.device_grouping(stage.grouping)
        state, train_s = _time_train(runner, state, grouping_dev, iterations, rounds)

        subset = subsets.draw(rng)
        predict_s, timed_batches, eval_batches = _time_predict(runner, state, grouping_dev, subset,
                                                               predict_batches)

        labels = run.dataset.train.labels[subset]
        predicted = planted_predictions(labels, initial, nc.num_experts, signal, rng)
        steps_per_update = durations.to_steps(
            nc.update_every, steps_per_epoch=CIFAR100_TRAIN_SIZE // tc.batch_size, batch_size=tc.batch_size)
        meta, logged = {}, {}
        ctx = loop.HookContext(step=steps_per_update,
                               epoch=steps_per_update * tc.batch_size / CIFAR100_TRAIN_SIZE,
                               state=state, grouping={'class_to_specialty': initial}, meta=meta,
                               rng=np.random.default_rng([config.seed, steps_per_update]),
                               predict=lambda idx, *outputs: {'label': labels, 'top1': predicted},
                               log=logged.update)
        (hook,) = stage.hooks
        start = time.perf_counter()
        hook.fn(ctx)
        assign_s = time.perf_counter() - start
        run.writer.close()
    update_s = predict_s + assign_s
    train_between_s = train_s * steps_per_update
    return {'model': model, 'batch_size': tc.batch_size, 'eval_batch_size': runner.eval_batch_size,
            'update_every': nc.update_every, 'steps_per_update': steps_per_update,
            'subset_size': int(subset.size), 'balance': nc.balance, 'num_experts': nc.num_experts,
            'train_ms_per_step': 1e3 * train_s, 'train_s_between_updates': train_between_s,
            'predict_s': predict_s, 'predict_batches_timed': timed_batches, 'predict_batches': eval_batches,
            'predict_extrapolated': timed_batches < eval_batches, 'assign_s': assign_s, 'update_s': update_s,
            'share': update_s / (update_s + train_between_s),
            'update_skipped': bool(meta['history'][-1]['skipped']),
            'classes_moved': int(logged['specialties/moved']),
            'kappa': float(logged['specialties/kappa'])}


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of `run_benchmark`'s result."""
    lines = [f"{result['backend']} ({result['device']}); train: median of {result['rounds']} rounds x "
             f"{result['iterations']} steps; predict* = scaled up from the timed eval batches",
             '',
             '| model | batch | train ms/step | steps/update | train s/update | images in S | predict s (batches) | '
             'assign s | update s | share |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in result['rows']:
        batches = (f"{r['predict_batches_timed']} of {r['predict_batches']}*" if r['predict_extrapolated']
                   else f"{r['predict_batches']}")
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['train_ms_per_step']:.1f} | "
                     f"{r['steps_per_update']} ({r['update_every']}) | {r['train_s_between_updates']:.1f} | "
                     f"{r['subset_size']} | {r['predict_s']:.2f} ({batches}) | {r['assign_s']:.3f} | "
                     f"{r['update_s']:.2f} | {100 * r['share']:.1f}% |")
    return '\n'.join(lines)


def run_benchmark(models: Sequence[str] = CIFAR_MODELS, num_experts: int = 10,
                  balance: str = 'fully_balanced', subset_size: int = 0, iterations: int = 3,
                  rounds: int = 3, predict_batches: int = 4, signal: float = 0.5,
                  seed: int = 0) -> dict[str, Any]:
    """Every model's row, as a JSON-ready dict."""
    unknown = sorted(set(models) - set(CIFAR_MODELS))
    if unknown:
        raise ValueError(f'Unknown CIFAR-100 models {unknown}; valid: {list(CIFAR_MODELS)}.')
    rows = [measure(m, num_experts, balance, subset_size, iterations, rounds, predict_batches, signal, seed)
            for m in models]
    return {'backend': jax.default_backend(), 'device': str(jax.devices()[0].device_kind),
            'iterations': iterations, 'rounds': rounds, 'signal': signal, 'seed': seed, 'rows': rows}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses `argv`, runs the benchmark, prints the table and one JSON line; returns the result."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--models', default=','.join(CIFAR_MODELS), help='comma-separated CIFAR-100 models')
    parser.add_argument('--k', type=int, default=10, help='number of experts K')
    parser.add_argument('--balance', default='fully_balanced', choices=sorted(specialties.ASSIGNERS))
    parser.add_argument('--subset_size', type=int, default=0, help='|S|; 0 = the config\'s (10,000)')
    parser.add_argument('--iterations', type=int, default=3, help='timed train steps per round')
    parser.add_argument('--rounds', type=int, default=3, help='timed train rounds (median)')
    parser.add_argument('--predict_batches', type=int, default=4,
                        help='eval batches of S to time, scaled up to all of S; 0 = predict all of S')
    parser.add_argument('--signal', type=float, default=0.5,
                        help="share of a class's images the planted generalist puts in its preferred "
                             'specialty')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json_out', default=None, help='also write the JSON result here')
    args = parser.parse_args(argv)
    result = run_benchmark(args.models.split(','), args.k, args.balance, args.subset_size, args.iterations,
                           args.rounds, args.predict_batches, args.signal, args.seed)
    return benchmarks.report(format_table(result), result, args.json_out)


if __name__ == '__main__':
    main()

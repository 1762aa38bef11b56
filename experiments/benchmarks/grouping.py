r"""Wall time and peak memory of every grouping method at ImageNet-10K scale (C=10,184 classes).

  python -m experiments.benchmarks.grouping
  python -m experiments.benchmarks.grouping --num_classes=1000 --num_groups=10,20 --json_out=/tmp/g.json
  python -m experiments.benchmarks.grouping --ssc_only  # soft spectral quality: memberships, NMI, overlap

Input: a planted block model. The classes fall into K equal blocks (random order); each class has
10-50 images in S, of which the generalist puts `--signal` in the class's block's specialty and
the rest uniformly at random (the C x K count matrix M), and the flat base model predicts the class
itself for half of them, a class of the same block for 80% of the rest and any class otherwise
(the dense int64 C x C confusion matrix, as `confusion.confusion_matrix` gives it to the recipe).

Every measurement runs once in a fresh process (spawned, so no state or cached memory is shared):
the input is built, then the method is timed with `perf_counter`, and its memory is the peak
resident set size during the call minus the resident size just before it (Linux: peak reset
through /proc/self/clear_refs, read from VmHWM). That counts what numpy, scipy, LAPACK and ARPACK
allocate, not the input itself or the interpreter. `nmi` compares the result with the planted
blocks (1 = recovered up to relabelling).

Measured on 2 shared CPU cores (numpy 2.4, scipy 1.17), C=10,184, K=15 / K=40, seconds (peak MB):
optimal_balanced 0.04 (1) / 0.04 (10), before: 13.6 s and 2.5 GB at K=15 (Hungarian on C x C
capacity slots); elasso to convergence 0.04 (1) / 0.11 (11), before 3-13 s; fully_balanced
0.16 / 0.19; spectral_specialties 3.2 (27) / 15.2 (29), balanced 3.6 / 14.3, before 644 s and 6.6 GB
at K=15 (dense eigh); soft spectral clustering 0.6 (6) / 8.4 (20), before 0.7 / 11.1 with NMI 0.86
(fuzzy c-means from random memberships with m = 2; now from k-means with the dimension-aware m).
Every spectral variant recovers the planted blocks (NMI 1.000).
Prints a Markdown table and one JSON line; `--json_out` also writes that JSON to a file.

`--ssc_only` instead probes soft spectral clustering's memberships (`ssc_probe`): mean largest
membership, NMI, and the classes `ssc_groups` puts in two or more groups, with the default m and m = 2.
"""
import argparse
import multiprocessing
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sps

from experiments import benchmarks
from nofe_jax.grouping import clustering, specialties, task_groups

ELASSO_LAM = 1000.0  # the paper's lam for |S| = 10,000, scaled to this S
CORRECT_SHARE = 0.5  # of a class's images, predicted as the class itself by the flat base model
IN_BLOCK_SHARE = 0.8  # of the mistakes, a class of the same block


def planted_blocks(num_classes: int, num_groups: int, seed: int) -> np.ndarray:
    """int[C]: each class's block, K near-equal blocks in random order."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(num_classes) % num_groups)


def _images(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int[|S|]: the class of every image in S, 10-50 per class."""
    return np.repeat(np.arange(truth.size), rng.integers(10, 51, size=truth.size))


def count_matrix(truth: np.ndarray, num_groups: int, signal: float, seed: int) -> np.ndarray:
    """int64[C, K]: `signal` of a class's images in its block's specialty, the rest in random ones."""
    rng = np.random.default_rng(seed)
    labels = _images(truth, rng)
    predicted = np.where(rng.random(labels.size) < signal, truth[labels],
                         rng.integers(0, num_groups, size=labels.size))
    return np.bincount(labels * num_groups + predicted,
                       minlength=truth.size * num_groups).reshape(truth.size, num_groups)


def confusion_matrix(truth: np.ndarray, seed: int, second_block: np.ndarray | None = None,
                     in_block_share: float = IN_BLOCK_SHARE) -> np.ndarray:
    """int64[C, C] dense confusion of a flat model that confuses classes mostly inside their block.

    `second_block` (int[C], -1 for none; default None: no class has one): a class with one puts
    half of its in-block mistakes in that block instead, i.e. sits between two blocks.
    `in_block_share`: the share of the mistakes made in the block(s); the rest go to any class.
    """
    rng = np.random.default_rng(seed + 1)
    num_classes = truth.size
    labels = _images(truth, rng)
    members = np.argsort(truth, kind='stable')  # classes grouped by block
    block_start = np.searchsorted(truth[members], np.arange(truth.max() + 1))
    block_size = np.bincount(truth)
    mistake_block = truth[labels]
    if second_block is not None:
        moved = (second_block[labels] >= 0) & (rng.random(labels.size) < 0.5)
        mistake_block = np.where(moved, second_block[labels], mistake_block)
    same_block = members[block_start[mistake_block] + rng.integers(0, block_size[mistake_block])]
    draw = rng.random(labels.size)
    predicted = np.where(draw < CORRECT_SHARE, labels,
                         np.where(draw < CORRECT_SHARE + (1 - CORRECT_SHARE) * in_block_share, same_block,
                                  rng.integers(0, num_classes, size=labels.size)))
    return np.bincount(labels * num_classes + predicted,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _confusion_affinity(confusion: np.ndarray) -> sps.csr_array:
    """Sparse (rates + rates^T) / 2 without the diagonal, as DeepME's SSC would be given."""
    rates = sps.csr_array(confusion, dtype=np.float64)
    rates = sps.csr_array(sps.diags_array(1.0 / np.maximum(rates.sum(axis=1), 1.0)) @ rates)
    rates.setdiag(0.0)
    rates.eliminate_zeros()
    return (rates + rates.T) / 2


Setup = Callable[[np.ndarray, int, float, int], tuple[Callable[[], np.ndarray], str]]


def _on_counts(method: str) -> Setup:
    def setup(truth, num_groups, signal, seed):
        counts = count_matrix(truth, num_groups, signal, seed)
        options = {}
        if method == 'elasso':
            options['lam'] = specialties.scaled_elasso_lam(ELASSO_LAM, int(counts.sum()))
        rng = np.random.default_rng(seed)
        run = lambda: specialties.assign(method, counts, rng, **options)
        return run, f'C x K counts, {counts.sum()} images'
    return setup


def _random_balanced(truth, num_groups, signal, seed):
    del signal
    rng = np.random.default_rng(seed)
    return lambda: specialties.random_balanced(truth.size, num_groups, rng), 'sizes only'


def _spectral(balanced: bool) -> Setup:
    def setup(truth, num_groups, signal, seed):
        del signal
        confusion = confusion_matrix(truth, seed)
        rng = np.random.default_rng(seed)
        run = lambda: specialties.spectral_specialties(confusion, num_groups, rng, balanced=balanced)
        return run, f'dense int64 C x C confusion, {np.count_nonzero(confusion)} non-zeros'
    return setup


def _soft_spectral(truth, num_groups, signal, seed):
    del signal
    affinity = _confusion_affinity(confusion_matrix(truth, seed))
    rng = np.random.default_rng(seed)
    run = lambda: np.argmax(clustering.soft_spectral_clustering(affinity, num_groups, rng), axis=1)
    return run, f'sparse C x C affinity, {affinity.nnz} non-zeros'


METHODS: dict[str, Setup] = {
    **{name: _on_counts(name) for name in specialties.ASSIGNERS},
    'random_balanced': _random_balanced,
    'spectral': _spectral(balanced=False),
    'spectral_balanced': _spectral(balanced=True),
    'soft_spectral': _soft_spectral,
}


def _resident_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def _measure_in_child(method: str, num_classes: int, num_groups: int, signal: float, seed: int,
                      results: multiprocessing.Queue) -> None:
    truth = planted_blocks(num_classes, num_groups, seed)
    run, input_note = METHODS[method](truth, num_groups, signal, seed)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets VmHWM (peak RSS) to the current RSS
    before = _resident_kb('VmRSS')
    start = time.perf_counter()
    labels = run()
    seconds = time.perf_counter() - start
    peak = _resident_kb('VmHWM')
    results.put({'seconds': seconds, 'peak_mb': (peak - before) / 1024, 'input': input_note,
                 'nmi': specialties.partition_nmi(truth, np.asarray(labels)),
                 'max_size': int(np.bincount(labels, minlength=num_groups).max())})


def measure(method: str, num_classes: int, num_groups: int, signal: float, seed: int) -> dict[str, Any]:
    """One measurement of `method` in a fresh spawned process."""
    context = multiprocessing.get_context('spawn')
    results = context.Queue()
    child = context.Process(target=_measure_in_child,
                            args=(method, num_classes, num_groups, signal, seed, results))
    child.start()
    result = results.get()
    child.join()
    return {'method': method, 'num_classes': num_classes, 'num_groups': num_groups, **result}


def run_benchmark(num_classes: int = 10_184, num_groups: Sequence[int] = (15, 40),
                  methods: Sequence[str] = tuple(METHODS), signal: float = 0.5,
                  seed: int = 0) -> dict[str, Any]:
    """Every (K, method) measurement, as a JSON-ready dict."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f'Unknown methods {unknown}; valid: {sorted(METHODS)}.')
    rows = [measure(method, num_classes, k, signal, seed) for k in num_groups for method in methods]
    return {'num_classes': num_classes, 'num_groups': list(num_groups), 'signal': signal, 'seed': seed,
            'rows': rows}


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of `run_benchmark`'s result."""
    lines = [f"C={result['num_classes']}, planted blocks, signal {result['signal']}, seed {result['seed']}",
             '',
             '| K | method | seconds | peak MB | NMI vs blocks | largest specialty | input |',
             '|---:|---|---:|---:|---:|---:|---|']
    lines += [f"| {r['num_groups']} | {r['method']} | {r['seconds']:.3f} | {r['peak_mb']:.0f} | "
              f"{r['nmi']:.3f} | {r['max_size']} | {r['input']} |" for r in result['rows']]
    return '\n'.join(lines)


def ssc_probe(num_classes: int = 10_184, num_groups: Sequence[int] = (15, 40), delta: float = 0.3,
              bridge_share: float = 0.1, in_block_share: float = 0.4,
              fuzzifiers: Sequence[float | None] = (None, 2.0), seed: int = 0) -> dict[str, Any]:
    """Quality of DeepME's soft spectral clustering on a planted confusion affinity.

    The table's input, except that a `bridge_share` of the classes (random) sit between their
    block and a second random one (`confusion_matrix`'s `second_block`), and only an
    `in_block_share` of the mistakes stay in the block(s) (0.8 in the table). For each K and fuzzifier
    m (None: `clustering.default_fuzzifier`; 2.0: the textbook value), in this process: seconds of
    `soft_spectral_clustering`, the mean largest membership (1/K when memberships collapse to
    uniform), the NMI of the argmax with the planted blocks over the other classes, and the
    `ssc_groups` at `delta`: group sizes and the classes in two or more groups, bridging or not.
    """
    rows = []
    for k in num_groups:
        truth = planted_blocks(num_classes, k, seed)
        rng = np.random.default_rng(seed + 2)
        bridging = rng.random(num_classes) < bridge_share
        second_block = np.where(bridging, (truth + rng.integers(1, k, size=num_classes)) % k, -1)
        affinity = _confusion_affinity(confusion_matrix(truth, seed, second_block, in_block_share))
        for m in fuzzifiers:
            start = time.perf_counter()
            memberships = clustering.soft_spectral_clustering(affinity, k, np.random.default_rng(seed), m=m)
            seconds = time.perf_counter() - start
            groups = task_groups.ssc_groups(memberships, delta)
            coverage = np.bincount(np.concatenate(groups), minlength=num_classes)
            rows.append({
                'num_groups': k, 'm': clustering.default_fuzzifier(num_classes, k) if m is None else m,
                'm_default': m is None, 'seconds': seconds,
                'mean_largest_membership': float(np.mean(np.max(memberships, axis=1))),
                'nmi': specialties.partition_nmi(truth[~bridging], np.argmax(memberships[~bridging], axis=1)),
                'num_groups_kept': len(groups), 'min_size': min(map(len, groups)),
                'max_size': max(map(len, groups)), 'bridging': int(bridging.sum()),
                'bridging_in_two_or_more': int(np.sum(coverage[bridging] >= 2)),
                'others_in_two_or_more': int(np.sum(coverage[~bridging] >= 2)),
            })
    return {'num_classes': num_classes, 'num_groups': list(num_groups), 'delta': delta,
            'bridge_share': bridge_share, 'in_block_share': in_block_share, 'seed': seed, 'ssc_rows': rows}


def format_ssc_table(result: dict[str, Any]) -> str:
    """Markdown table of `ssc_probe`'s result."""
    lines = [f"Soft spectral clustering, C={result['num_classes']}, planted confusion affinity with "
             f"{result['bridge_share']:.0%} of classes between two blocks, {result['in_block_share']:.0%} "
             f"of mistakes in the block(s), delta {result['delta']}, seed {result['seed']}",
             '',
             '| K | m | seconds | mean largest membership | NMI vs blocks (others) | groups | sizes | '
             'bridging in 2+ groups | others in 2+ groups |',
             '|---:|---|---:|---:|---:|---:|---|---:|---:|']
    lines += [f"| {r['num_groups']} | {r['m']:.3f}{' (default)' if r['m_default'] else ''} | "
              f"{r['seconds']:.2f} | {r['mean_largest_membership']:.3f} | {r['nmi']:.3f} | "
              f"{r['num_groups_kept']} | {r['min_size']}-{r['max_size']} | "
              f"{r['bridging_in_two_or_more']} / {r['bridging']} | {r['others_in_two_or_more']} |"
              for r in result['ssc_rows']]
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses `argv`, runs the benchmark, prints the table and one JSON line; returns the result."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--num_classes', type=int, default=10_184)
    parser.add_argument('--num_groups', default='15,40', help='comma-separated K values')
    parser.add_argument('--methods', default=','.join(METHODS), help='comma-separated; default all')
    parser.add_argument('--signal', type=float, default=0.5,
                        help="share of a class's images the generalist puts in its block's specialty")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json_out', default=None, help='also write the JSON result here')
    parser.add_argument('--ssc_only', action='store_true',
                        help='only probe soft spectral clustering quality (ssc_probe), default m and m=2')
    parser.add_argument('--delta', type=float, default=0.3, help='ssc_groups threshold for --ssc_only')
    parser.add_argument('--bridge_share', type=float, default=0.1,
                        help='share of classes between two blocks for --ssc_only')
    parser.add_argument('--in_block_share', type=float, default=0.4,
                        help="share of a class's mistakes in its block(s) for --ssc_only")
    args = parser.parse_args(argv)
    if args.ssc_only:
        result = ssc_probe(args.num_classes, [int(k) for k in args.num_groups.split(',')], args.delta,
                           args.bridge_share, args.in_block_share, seed=args.seed)
        return benchmarks.report(format_ssc_table(result), result, args.json_out)
    result = run_benchmark(args.num_classes, [int(k) for k in args.num_groups.split(',')],
                           args.methods.split(','), args.signal, args.seed)
    return benchmarks.report(format_table(result), result, args.json_out)


if __name__ == '__main__':
    main()

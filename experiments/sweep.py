r"""Runs every variant of a config over seeds, then tables mean ± std and paired differences.

  python -m experiments.sweep --config=experiments/configs/fashion_tuples.py:path=/tmp/fashion_tuples.npz \
      --variants='base;;specialties=random' --seeds=3 --workdir=/tmp/sweep_tuples --baseline=base

Each variant is a comma-separated argument list appended to the config's own arguments ('' is
the config as it is, shown as 'default'); run (variant, seed k) trains in
``<workdir>/<variant slug>/seed<k>`` with ``--config.seed=k`` (the data stay the same: only the
model's initialisation, batch order and the recipe's own draws change with the seed). Runs go
seed by seed (every variant of seed 0 first), so the paired differences fill in early.

Resumable: a run whose summary.json is complete is skipped; any other run is started again in
its workdir, and the runner resumes it from its last checkpoint. Each run is a subprocess
(``python -m experiments.run``), not a call in this process, because that is what makes a kill
safe at any moment: the runner's own SIGTERM handling (a checkpoint at the next step, exit 143)
applies to every run, a run's crash or NaN leaves the sweep going on to the next, no memory or
compiled programs pile up over dozens of runs, and a killed sweep leaves nothing behind but
workdirs the next invocation resumes. SIGTERM or Ctrl-C to the sweep is passed to the running
run, which checkpoints before the sweep exits; if the sweep itself is SIGKILLed, the run gets
SIGTERM from the kernel (Linux PR_SET_PDEATHSIG), so no orphan trains on beside a rerun.

After the runs (and with ``--aggregate_only`` without training) it writes ``<workdir>/sweep.md``
and ``<workdir>/sweep.json``: per variant and metric the mean ± standard deviation over seeds
(sample std, ddof=1), and per variant the paired per-seed difference against each variant of
``--baseline`` (one table per baseline, e.g. ``--baseline='base;experts=shuffled'`` for the NofE
against its flat model and against its own control; mean ± std of the differences over the seeds
both finished; 'yes' where |mean| > 2 std, the issue's rule for a difference that counts), each run's wall time (the runner's own, summed over
its restarts: summary.json's total_wall_time_s; process start-up is not in it), the command and
the machine.
A progress line follows every finished run, with the overall ETA: each remaining run is
expected to take its variant's mean wall time over the finished runs (earlier sweeps' included),
or, for a variant with none finished yet, the mean over all finished runs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import app, flags, logging

from nofe_jax import paths

DEFAULT_NAME = 'default'
SEED_FIELD = '{seed}'  # in an --override: the run's seed
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `-m experiments.run` imports from


@dataclasses.dataclass(frozen=True)
class Run:
    variant: str   # the argument list as written in --variants
    seed: int
    workdir: str


def variant_list(spec: str) -> list[str]:
    """The variants of ``--variants`` ('a;b;' -> ['a', 'b', '']), stripped, duplicates refused."""
    variants = [v.strip() for v in spec.split(';')] if spec.strip() else ['']
    if len(set(variants)) != len(variants):
        raise ValueError(f'--variants lists a variant twice: {spec!r}.')
    return variants


def variant_name(variant: str) -> str:
    return variant or DEFAULT_NAME


def slug(variant: str) -> str:
    """A folder name for a variant: 'specialties=random,k=5' -> 'specialties-random_k-5'."""
    name = variant.replace('=', '-').replace(',', '_')
    name = re.sub(r'[^A-Za-z0-9._-]+', '+', name).strip('.')
    return name or DEFAULT_NAME


def config_argument(config: str, variant: str) -> str:
    """``path[:args]`` with the variant's arguments appended (the path made absolute)."""
    path, _, args = config.partition(':')
    path = os.path.abspath(path)
    joined = ','.join(filter(None, (args, variant)))
    return f'{path}:{joined}' if joined else path


def plan(workdir: str, variants: Sequence[str], seeds: int) -> list[Run]:
    """Every (variant, seed) run in the order they train: seed by seed."""
    slugs = [slug(v) for v in variants]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f'Two variants share a folder name: {slugs}.')
    return [Run(v, seed, os.path.join(workdir, s, f'seed{seed}'))
            for seed in range(seeds) for v, s in zip(variants, slugs)]


def run_command(config: str, run: Run, overrides: Sequence[str] = ()) -> list[str]:
    """The run's command line; ``{seed}`` in an override becomes the run's seed (e.g. each seed
    starting from its own pretrained flat run: ``init_from=<sweep>/base/seed{seed}``)."""
    return [sys.executable, '-m', 'experiments.run', f'--config={config_argument(config, run.variant)}',
            f'--workdir={run.workdir}', f'--config.seed={run.seed}',
            *(o.replace(SEED_FIELD, str(run.seed)) for o in overrides)]


def read_summary(workdir: str) -> dict | None:
    """The run's summary.json if it is complete (parses, has final test/top1), else None."""
    try:
        with open(os.path.join(workdir, 'summary.json')) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    final = summary.get('final') if isinstance(summary, dict) else None
    if not isinstance(final, dict) or final.get('test/top1') is None or 'wall_time_s' not in summary:
        return None
    return summary


def run_metrics(summary: dict) -> dict[str, float]:
    """The scalar numbers of one run: every number in ``final``, the first stage's in-group /
    not-in-group accuracies (DMDE, DeepME bases), NMI with each true grouping and its random
    partitions', and the wall time (minutes, over every restart)."""
    metrics = {key: float(value) for key, value in summary['final'].items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    for stage, result in summary.get('stages', {}).items():
        for key, value in (result.get('final') or {}).items():
            if ('in_group' in key and isinstance(value, (int, float))
                    and not isinstance(value, bool) and key not in metrics):
                metrics[f'{stage}:{key}'] = float(value)
    for name, value in summary.get('specialty_nmi', {}).items():
        metrics[f'nmi/{name}'] = float(value)
    for name, value in summary.get('random_partition_nmi', {}).items():
        metrics[f'nmi_random/{name}'] = float(value)
    metrics['wall_time_min'] = summary.get('total_wall_time_s', summary['wall_time_s']) / 60
    return metrics


def eta_seconds(remaining: Sequence[Run], finished_minutes: dict[str, list[float]]) -> float:
    """Seconds the ``remaining`` runs should take: each its variant's mean of
    ``finished_minutes`` (variant -> wall minutes of its finished runs), or the mean over every
    finished run where its variant has none (variants differ: a DeepME run may take 10x a flat one)."""
    every = [m for minutes in finished_minutes.values() for m in minutes]
    if not every:
        return 0.0
    fallback = float(np.mean(every))
    return 60.0 * sum(float(np.mean(finished_minutes[r.variant])) if finished_minutes.get(r.variant)
                      else fallback for r in remaining)


def mean_std(values: Sequence[float]) -> dict:
    """{'mean', 'std' (ddof=1; None under 2 values), 'n'}."""
    values = np.asarray(values, np.float64)
    return {'mean': float(values.mean()) if values.size else None,
            'std': float(values.std(ddof=1)) if values.size > 1 else None, 'n': int(values.size)}


def aggregate(per_run: dict[str, dict[int, dict[str, float]]], baseline: str) -> dict:
    """From {variant: {seed: {metric: value}}}: per variant and metric the mean ± std over seeds,
    and the paired per-seed differences (variant - baseline) on the seeds both have."""
    variants = list(per_run)
    metrics = sorted({m for seeds in per_run.values() for values in seeds.values() for m in values})
    table, differences = {}, {}
    for variant in variants:
        seeds = per_run[variant]
        table[variant] = {m: mean_std([seeds[s][m] for s in sorted(seeds) if m in seeds[s]])
                          for m in metrics}
        if variant == baseline or baseline not in per_run:
            continue
        base = per_run[baseline]
        differences[variant] = {}
        for m in metrics:
            paired = sorted(s for s in seeds if s in base and m in seeds[s] and m in base[s])
            diff = mean_std([seeds[s][m] - base[s][m] for s in paired])
            diff['seeds'] = paired
            diff['counts'] = bool(diff['std'] is not None and abs(diff['mean']) > 2 * diff['std'])
            differences[variant][m] = diff
    return {'metrics': metrics, 'table': table, 'differences': differences}


def machine() -> dict:
    """CPU model (and whether it has AVX-512, which decides some CPU lowerings: models/layers.py),
    core count, jax backend and devices, host and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    # Asked of a short-lived process: jax in the sweep's own would hold the accelerator (and, on a
    # GPU, preallocate its memory) while the runs need it.
    probe = subprocess.run([sys.executable, '-c', 'import jax; from nofe_jax.models import layers; '
                            'print(jax.default_backend(), len(jax.devices()), jax.__version__, '
                            'layers.cpu_has_avx512())'], capture_output=True, text=True, cwd=REPO)
    backend, devices, version, avx512 = (probe.stdout.split() + ['?'] * 4)[:4]
    return {'cpu': cpu, 'cpu_avx512': {'True': True, 'False': False}.get(avx512), 'cores': os.cpu_count(),
            'affinity_cores': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
            'jax_backend': backend, 'jax_devices': devices, 'jax_version': version,
            'host': platform.node(), 'python': platform.python_version()}


# Metrics shown in sweep.md, in this order when a run has them (sweep.json holds every one).
HEADLINE = ('test/top1', 'test/top5', 'test/specialty_top1', 'test/within_specialty_top1',
            'test/gate_top1', 'test/group_top1', 'bases:test/in_group_top1',
            'bases:test/not_in_group_top1', 'wall_time_min')


def _cell(stats: dict, percent: bool) -> str:
    if stats['mean'] is None:
        return '—'
    scale, unit = (100, '') if percent else (1, '')
    text = f'{scale * stats["mean"]:.2f}'
    if stats['std'] is not None:
        text += f' ± {scale * stats["std"]:.2f}'
    return text + unit


def _is_percent(metric: str) -> bool:
    return 'top' in metric


def markdown(result: dict) -> str:
    """sweep.md: the command, the machine, mean ± std per variant, paired differences, every run."""
    shown = [m for m in HEADLINE if m in result['metrics']]
    shown += [m for m in result['metrics'] if m.startswith('nmi')]
    label = {m: (f'{m} (%)' if _is_percent(m) else m) for m in shown}
    lines = [f'# Sweep: {result["config"]}', '', f'Command: `{result["command"]}`', '',
             'Machine: {cpu}{avx512}, {cores} cores, jax {jax_version} on {jax_backend} '
             '({jax_devices} device(s)), host {host}'.format(
                 **result['machine'], avx512=' with AVX-512' if result['machine'].get('cpu_avx512') else ''), '',
             f'Seeds: {result["seeds"]}; mean ± std over seeds (sample std, ddof=1); '
             f'{result["finished"]} of {result["planned"]} runs finished.', '',
             '## Mean ± std over seeds', '',
             '| variant | seeds | ' + ' | '.join(label[m] for m in shown) + ' |',
             '|---|---|' + '---|' * len(shown)]
    for variant, stats in result['table'].items():
        lines.append(f'| {variant_name(variant)} | {result["seeds_done"][variant]} | '
                     + ' | '.join(_cell(stats[m], _is_percent(m)) for m in shown) + ' |')
    for baseline, differences in result['differences'].items():
        if not differences:
            continue
        lines += ['', f'## Paired difference against {variant_name(baseline)} '
                  '(variant - baseline, per seed; mean ± std; * = |mean| > 2 std)', '',
                  '| variant | seeds | ' + ' | '.join(label[m] for m in shown) + ' |',
                  '|---|---|' + '---|' * len(shown)]
        for variant, diffs in differences.items():
            seeds = max((len(d['seeds']) for d in diffs.values()), default=0)
            cells = [_cell(diffs[m], _is_percent(m)) + (' *' if diffs[m]['counts'] else '')
                     for m in shown]
            lines.append(f'| {variant_name(variant)} | {seeds} | ' + ' | '.join(cells) + ' |')
    lines += ['', '## Runs', '', '| variant | seed | test top-1 | wall time | workdir |',
              '|---|---|---|---|---|']
    for run in result['runs']:
        top1 = run['metrics'].get('test/top1')
        lines.append(f'| {variant_name(run["variant"])} | {run["seed"]} | '
                     + (f'{100 * top1:.2f}%' if top1 is not None else run['status'])
                     + ' | ' + (f'{run["metrics"]["wall_time_min"]:.1f} min' if run['metrics'] else '—')
                     + f' | {run["workdir"]} |')
    return '\n'.join(lines) + '\n'


def collect(runs: Sequence[Run], statuses: dict[Run, str] | None = None) -> tuple[dict, list[dict]]:
    """({variant: {seed: metrics}} of the finished runs, one record per planned run)."""
    per_run: dict[str, dict[int, dict[str, float]]] = {}
    records = []
    for run in runs:
        per_run.setdefault(run.variant, {})
        summary = read_summary(run.workdir)
        metrics = run_metrics(summary) if summary else {}
        if summary:
            per_run[run.variant][run.seed] = metrics
        status = 'finished' if summary else (statuses or {}).get(run, 'not run')
        records.append({'variant': run.variant, 'seed': run.seed, 'workdir': run.workdir,
                        'status': status, 'metrics': metrics})
    return per_run, records


def write_report(workdir: str, config: str, runs: Sequence[Run], seeds: int, baselines: Sequence[str],
                 command: str, statuses: dict[Run, str] | None = None,
                 machine_info: dict | None = None) -> dict:
    """Aggregates the finished runs; writes sweep.json and sweep.md; returns the JSON's dict
    (its 'differences': {baseline: {variant: {metric: paired difference}}})."""
    per_run, records = collect(runs, statuses)
    by_baseline = {baseline: aggregate(per_run, baseline) for baseline in baselines}
    first = by_baseline[baselines[0]]
    result = {'config': config, 'command': command, 'machine': machine_info or machine(),
              'seeds': seeds, 'baselines': list(baselines), 'planned': len(runs),
              'finished': sum(r['status'] == 'finished' for r in records),
              'seeds_done': {v: len(s) for v, s in per_run.items()},
              'metrics': first['metrics'], 'table': first['table'],
              'differences': {b: a['differences'] for b, a in by_baseline.items()}, 'runs': records}
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'sweep.json'), 'w') as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(workdir, 'sweep.md'), 'w') as f:
        f.write(markdown(result))
    return result


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


# What the child runs instead of `-m experiments.run` (same arguments): first it asks the kernel for
# SIGTERM when the sweep dies, even by SIGKILL (Linux PR_SET_PDEATHSIG), so a run never goes on
# orphaned beside the one a rerun of the sweep starts in its workdir. Done in the child after exec,
# not in a preexec_fn: Python code between fork and exec can deadlock a multithreaded parent.
_BOOTSTRAP = """import ctypes, os, runpy, signal, sys
parent = int(sys.argv.pop(1))
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    sys.exit('experiments.sweep: the sweep is gone; not starting the run.')
runpy.run_module('experiments.run', run_name='__main__', alter_sys=True)
"""


def child_argv(command: Sequence[str]) -> list[str]:
    """``run_command``'s ``python -m experiments.run ...`` as the bootstrap above runs it."""
    assert list(command[1:3]) == ['-m', 'experiments.run'], command
    return [command[0], '-c', _BOOTSTRAP, str(os.getpid()), *command[3:]]


def config_problems(config: str, todo: Sequence[Run], overrides: Sequence[str],
                    env: dict | None = None) -> list[str]:
    """One line per variant whose run would stop at its config (``experiments.run --check``):
    checked before any training, one run per variant (every run if an override holds {seed})."""
    per_seed = any(SEED_FIELD in o for o in overrides)
    checked, problems = set(), []
    for run in todo:
        if not per_seed and run.variant in checked:
            continue
        checked.add(run.variant)
        out = subprocess.run(child_argv([*run_command(config, run, overrides), '--check']),
                             capture_output=True, text=True, env=env, cwd=REPO)
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or [f'exit {out.returncode}'])[-1]
            problems.append(f'{variant_name(run.variant)} seed {run.seed}: {last.removeprefix("error: ")}')
    return problems


class _Forwarder:
    """Passes SIGTERM / SIGINT on to the running child, and remembers that one came."""

    def __init__(self):
        self.child: subprocess.Popen | None = None
        self.signal: int | None = None

    def __call__(self, signum, frame):
        del frame
        self.signal = signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)


class SweepConfigError(ValueError):
    """Some variant's config does not load or validate; nothing was trained."""


def run_sweep(config: str, variants: Sequence[str], seeds: int, workdir: str,
              baselines: Sequence[str] | None = None, overrides: Sequence[str] = (),
              command: str = '', train: bool = True, env: dict | None = None,
              log=print) -> dict:
    """Trains every unfinished (variant, seed) run, one at a time, then writes the report.

    Returns the sweep.json dict. Every variant's config is checked first: if one does not load
    or validate, ``SweepConfigError`` names each such variant and nothing trains. A run that fails
    later is reported and the sweep goes on; a signal (SIGTERM, Ctrl-C) reaches the running run,
    and the sweep stops after it has checkpointed.
    """
    baselines = [variants[0]] if baselines is None else list(baselines)
    for baseline in baselines:
        if baseline not in variants:
            raise ValueError(f'--baseline {baseline!r} is not one of the variants {list(variants)}.')
    workdir = os.path.abspath(workdir)
    runs = plan(workdir, variants, seeds)
    machine_info = machine()
    statuses: dict[Run, str] = {}
    summaries = {run: read_summary(run.workdir) for run in runs}
    todo = [r for r in runs if summaries[r] is None]
    finished_minutes: dict[str, list[float]] = {}  # variant -> wall minutes of its finished runs, for the ETA
    for run, summary in summaries.items():
        if summary is not None:
            log(f'[sweep] skip {variant_name(run.variant)} seed {run.seed}: finished ({run.workdir})')
            finished_minutes.setdefault(run.variant, []).append(run_metrics(summary)['wall_time_min'])
    if train and (problems := config_problems(config, todo, overrides, env)):
        raise SweepConfigError('no run started; fix these variants first:\n  ' + '\n  '.join(problems))
    done = len(runs) - len(todo)
    forwarder = _Forwarder()
    previous = {s: signal.signal(s, forwarder) for s in (signal.SIGTERM, signal.SIGINT)} if train else {}
    try:
        for index, run in enumerate(todo if train else []):
            os.makedirs(run.workdir, exist_ok=True)
            cmd = run_command(config, run, overrides)
            resumed = os.path.exists(os.path.join(run.workdir, 'runs.json'))
            log(f'[sweep] {"resume" if resumed else "start"} {variant_name(run.variant)} seed {run.seed}: '
                + shlex.join(cmd[1:]), flush=True)
            start = time.time()
            with open(os.path.join(run.workdir, 'sweep_run.log'), 'a') as out:
                forwarder.child = subprocess.Popen(child_argv(cmd), stdout=out, stderr=subprocess.STDOUT,
                                                    env=env, cwd=REPO)
                code = forwarder.child.wait()
                forwarder.child = None
            took = time.time() - start
            summary = read_summary(run.workdir)
            if forwarder.signal is not None:
                statuses[run] = 'interrupted'
                log(f'[sweep] stopped by signal {forwarder.signal} during {variant_name(run.variant)} '
                    f'seed {run.seed} (exit {code}); rerun the same command to resume.', flush=True)
                break
            if summary is None:
                statuses[run] = f'failed (exit {code})'
                log(f'[sweep] FAILED {variant_name(run.variant)} seed {run.seed} (exit {code}); see '
                    f'{os.path.join(run.workdir, "sweep_run.log")}', flush=True)
                continue
            done += 1
            finished_minutes.setdefault(run.variant, []).append(run_metrics(summary)['wall_time_min'])
            remaining = todo[index + 1:]
            top1 = summary['final']['test/top1']
            log(f'[sweep] {done}/{len(runs)} done: {variant_name(run.variant)} seed {run.seed} '
                f'test top-1 {100 * top1:.2f}% in {took / 60:.1f} min; '
                f'ETA {_duration(eta_seconds(remaining, finished_minutes))} for {len(remaining)} more run(s)',
                flush=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    result = write_report(workdir, config, runs, seeds, baselines, command, statuses, machine_info)
    log(f'[sweep] {result["finished"]}/{result["planned"]} runs finished; wrote '
        f'{os.path.join(workdir, "sweep.md")} and sweep.json', flush=True)
    if forwarder.signal is not None:
        raise KeyboardInterrupt if forwarder.signal == signal.SIGINT else SystemExit(128 + forwarder.signal)
    return result


def define_flags() -> None:
    """The command line's flags; defined only when this file runs as the program, so importing it
    (tests, notebooks) beside experiments.run or describe, which define --config too, is safe."""
    flags.DEFINE_string('config', None, 'Config file and its arguments (path[:arg,...]).')
    flags.DEFINE_string('variants', '', "';'-separated argument lists, one per variant "
                                    "(appended to the config's arguments; '' = the config as it is).")
    flags.DEFINE_integer('seeds', 3, 'Seeds per variant: 0 .. seeds-1.')
    flags.DEFINE_string('workdir', None, 'Folder of the sweep: one workdir per run below it.')
    flags.DEFINE_string('baseline', None, "The variant (as written in --variants) the others are "
                                    "compared to, seed by seed, or several ';'-separated: one "
                                    'table each (default: the first variant).')
    flags.DEFINE_multi_string('override', [], 'A --config.<field>=<value> passed to every '
                                           'run (repeat the flag for more); {seed} in it becomes '
                                           "the run's seed.")
    flags.DEFINE_bool('aggregate_only', False, 'Train nothing: table the finished runs.')
    flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    logging.set_verbosity(logging.WARNING)  # jax's backend probing logs at INFO
    try:
        variants = variant_list(flags.FLAGS.variants)
        baselines = None if flags.FLAGS.baseline is None else variant_list(flags.FLAGS.baseline)
    except ValueError as e:
        raise app.UsageError(str(e))
    if flags.FLAGS.seeds < 1:
        raise app.UsageError('--seeds must be >= 1.')
    overrides = [o if o.startswith('--config.') else f'--config.{o}' for o in flags.FLAGS.override]
    command = shlex.join(['python', '-m', 'experiments.sweep', *sys.argv[1:]])
    try:
        f = flags.FLAGS
        result = run_sweep(f.config, variants, f.seeds, paths.expand(f.workdir), baselines, overrides,
                           command, train=not f.aggregate_only, log=print)
    except SweepConfigError as e:
        sys.exit(f'error: {e}')
    except ValueError as e:
        raise app.UsageError(str(e))
    failed = [r for r in result['runs'] if r['status'].startswith('failed')]
    if failed:
        sys.exit(f'error: {len(failed)} run(s) failed: ' + ', '.join(r['workdir'] for r in failed))


if __name__ == '__main__':
    define_flags()
    app.run(main)

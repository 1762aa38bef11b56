r"""Kill-anywhere soak: SIGKILL smoke runs at many random points, rerun, compare bitwise.

  python -m experiments.benchmarks.kill_soak --kills=50 --json_out=/tmp/soak.json

For each recipe (the quickstart NofE, its flat base and its DMDE; checkpoints, specialty and
similarity updates every 10 steps) one uninterrupted run is the reference. Then chains: a fresh workdir, the
same `python -m experiments.run` command started again and again, each start killed with
SIGKILL either at a random injected point (`NOFE_KILL_AT`: inside a training step, inside a
specialty update, while a checkpoint is written; see `nofe_jax/training/faults.py`) or by a
timer at a random moment of its life (start-up, restore, compilation, summary writing:
anywhere), until a start completes. Its final metrics, specialties and every stage's final
parameters, optimiser state and step must equal the reference's bit for bit (CPU).

Prints one line per chain, a summary and one JSON line; `--json_out` also writes the JSON.
`tests/test_kill_anywhere.py` runs fixed kill points from here in CI.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from experiments import benchmarks
from nofe_jax.training import faults

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILLED = -signal.SIGKILL  # subprocess's return code of a process ended by SIGKILL
RECIPE_ARGS = {
    'nofe': ('--config=experiments/configs/quickstart.py:smoke',
             '--config.nofe.update_every=10 steps', '--config.nofe.update_warmup=10 steps',
             '--config.generalist.train.checkpoint_every=10 steps',
             '--config.experts.train.checkpoint_every=10 steps'),
    'base': ('--config=experiments/configs/quickstart.py:smoke,base',
             '--config.train.checkpoint_every=10 steps'),
    'dmde': ('--config=experiments/configs/quickstart.py:smoke,dmde',
             '--config.dmde.similarity_update_every=10 steps',
             '--config.bases.train.checkpoint_every=10 steps',
             '--config.fusion.train.checkpoint_every=10 steps'),
    'deepme': ('--config=experiments/configs/quickstart.py:smoke,deepme',
               '--config.deepme.similarity_update_every=10 steps',
               '--config.bases.train.checkpoint_every=10 steps',
               '--config.gate.train.checkpoint_every=10 steps'),
}
# What a run's outcome holds of each stage's final checkpoint: everything but the rng key.
_STATE_ITEMS = ('step', 'params', 'model_state', 'opt_state')
_SUMMARY_ITEMS = ('final', 'specialties', 'specialty_history')


def start(args: tuple[str, ...], workdir, kill_at: str | None = None) -> subprocess.Popen:
    """Starts `python -m experiments.run <args> --workdir=<workdir>`, quietly."""
    env = {k: v for k, v in os.environ.items() if k != faults.ENV_VAR}
    if kill_at:
        env[faults.ENV_VAR] = kill_at
    return subprocess.Popen([sys.executable, '-m', 'experiments.run', *args, f'--workdir={workdir}'],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_once(args: tuple[str, ...], workdir, kill_at: str | None = None) -> int:
    """The return code of one run: 0 completed, KILLED if `kill_at` was reached."""
    return start(args, workdir, kill_at).wait()


def run_with_timer(args: tuple[str, ...], workdir, after_s: float) -> int:
    """One run SIGKILLed `after_s` seconds after its start unless it ends first."""
    process = start(args, workdir)
    try:
        return process.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _final_checkpoints(workdir) -> dict[str, str]:
    """{stage: path of its newest checkpoint's state}."""
    root = os.path.join(workdir, 'checkpoints')
    paths = {}
    for stage in sorted(os.listdir(root)):
        steps = [int(name) for name in os.listdir(os.path.join(root, stage)) if name.isdigit()]
        paths[stage] = os.path.join(root, stage, str(max(steps)), 'state')
    return paths


def outcome(workdir) -> dict:
    """What must not depend on kills: summary metrics and specialties, final states (numpy)."""
    summary = json.load(open(os.path.join(workdir, 'summary.json')))
    states = {}
    for stage, path in _final_checkpoints(workdir).items():
        restored = ocp.StandardCheckpointer().restore(path)
        states[stage] = jax.tree.map(np.asarray, {k: restored[k] for k in _STATE_ITEMS})
    return {'summary': {k: summary.get(k) for k in _SUMMARY_ITEMS},
            'stage_finals': {name: s['final'] for name, s in summary['stages'].items()},
            'states': states}


def outcome_differences(reference: dict, other: dict) -> list[str]:
    """One line per summary item or state leaf that differs (arrays compared bit for bit)."""
    lines = [f'{group}.{key}' for group in ('summary', 'stage_finals')
             for key in sorted(set(reference[group]) | set(other[group]))
             if reference[group].get(key) != other[group].get(key)]
    if sorted(reference['states']) != sorted(other['states']):
        return lines + [f"stages {sorted(reference['states'])} vs {sorted(other['states'])}"]
    for stage in reference['states']:
        ours, theirs = (jax.tree_util.tree_flatten_with_path(o['states'][stage])[0]
                        for o in (reference, other))
        if [p for p, _ in ours] != [p for p, _ in theirs]:
            lines.append(f'{stage}: the state trees differ in structure')
            continue
        lines += [f'{stage}{jax.tree_util.keystr(path)}' for (path, a), (_, b) in zip(ours, theirs)
                  if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes()]
    return lines


def differences(reference_dir, workdir) -> list[str]:
    """`outcome_differences` of two finished workdirs."""
    return outcome_differences(outcome(reference_dir), outcome(workdir))


def restarts(workdir) -> int:
    return json.load(open(os.path.join(workdir, 'summary.json')))['restarts']


def occurrences(reference_dir) -> dict[str, int]:
    """How often a whole uninterrupted run reaches each kill point (bounds the random counts)."""
    summary = json.load(open(os.path.join(reference_dir, 'summary.json')))
    steps = {stage: int(os.path.basename(os.path.dirname(path)))
             for stage, path in _final_checkpoints(reference_dir).items()}
    checkpoints = sum(len([n for n in os.listdir(os.path.join(reference_dir, 'checkpoints', s))
                           if n.isdigit()]) for s in steps)
    return {'step': sum(steps.values()), 'hook': max(1, len(summary.get('specialty_history') or [])),
            'checkpoint': checkpoints}


def soak_chain(args, reference_dir, workdir, rng: random.Random, counts: dict[str, int],
               max_kills: int, timer_share: float, lifetime_s: float) -> dict:
    """Kills one chain of runs until a run completes; compares it with the reference."""
    kills = []
    while True:
        if len(kills) >= max_kills:
            code, how = run_once(args, workdir), 'run to the end'
        elif rng.random() < timer_share:
            after = rng.uniform(0.0, lifetime_s)
            code, how = run_with_timer(args, workdir, after), f'timer {after:.1f}s'
        else:
            point = rng.choice(faults.POINTS)
            how = f'{point}:{rng.randint(1, counts[point])}'
            code = run_once(args, workdir, how)
        if code == 0:
            break
        if code != KILLED:
            return {'kills': kills, 'failed': f'{how}: exit status {code}'}
        kills.append(how)
    return {'kills': kills, 'differences': differences(reference_dir, workdir),
            'restarts': restarts(workdir)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--kills', type=int, default=50, help='kill points in all (at least)')
    parser.add_argument('--recipes', default='nofe,base,dmde,deepme')
    parser.add_argument('--max_kills_per_chain', type=int, default=6)
    parser.add_argument('--timer_share', type=float, default=0.25,
                        help='share of kills by a timer at a random moment (the rest injected)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workdir', default=None, help='default: a temporary folder')
    parser.add_argument('--json_out', default=None)
    flags = parser.parse_args(argv)
    rng = random.Random(flags.seed)
    root = flags.workdir or tempfile.mkdtemp(prefix='kill_soak_')
    recipes = flags.recipes.split(',')
    references = {}
    for recipe in recipes:
        reference = os.path.join(root, f'{recipe}_uninterrupted')
        began = time.perf_counter()
        if run_once(RECIPE_ARGS[recipe], reference) != 0:
            raise SystemExit(f'error: the uninterrupted {recipe} run failed; run it by hand: '
                             f'python -m experiments.run {" ".join(RECIPE_ARGS[recipe])} '
                             f'--workdir={reference}')
        references[recipe] = (reference, occurrences(reference), time.perf_counter() - began)
    chains, began = [], time.perf_counter()
    while sum(len(c['kills']) for c in chains) < flags.kills:
        recipe = recipes[len(chains) % len(recipes)]
        reference, counts, lifetime = references[recipe]
        chain = soak_chain(RECIPE_ARGS[recipe], reference,
                           os.path.join(root, f'chain{len(chains):03d}_{recipe}'), rng, counts,
                           flags.max_kills_per_chain, flags.timer_share, lifetime)
        chain['recipe'] = recipe
        chains.append(chain)
        verdict = chain.get('failed') or ('identical' if not chain['differences']
                                           else f"DIFFERENT: {', '.join(chain['differences'][:3])}")
        print(f"chain {len(chains) - 1:3d} {recipe:5s} {len(chain['kills'])} kills "
              f"[{', '.join(chain['kills'])}] -> {verdict}", flush=True)
    bad = [c for c in chains if c.get('failed') or c['differences']]
    result = {'kills': sum(len(c['kills']) for c in chains), 'chains': len(chains),
              'identical_chains': len(chains) - len(bad), 'all_identical': not bad,
              'timer_kills': sum(k.startswith('timer') for c in chains for k in c['kills']),
              'wall_time_s': round(time.perf_counter() - began, 1), 'backend': jax.default_backend(),
              'seed': flags.seed, 'workdir': root, 'chain_details': chains}
    summary = (f"{result['kills']} kills ({result['timer_kills']} by timer) in {result['chains']} "
               f"chains: {result['identical_chains']} of {result['chains']} ended bitwise identical "
               f"to the uninterrupted run -> {'PASS' if not bad else 'FAIL'} ({result['wall_time_s']} s)")
    return benchmarks.report(summary, result, flags.json_out)


if __name__ == '__main__':
    main()

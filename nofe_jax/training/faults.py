"""Fault injection for the kill-anywhere tests: SIGKILL this process at a named point.

``NOFE_KILL_AT='checkpoint:2'`` kills the process at the second checkpoint write it starts;
several points may be listed (``'step:30,hook:1'``), the first reached wins. The points:

  step        a training step has been dispatched and its result not yet used
  hook        a host-side hook (e.g. a specialty update) has computed its result, not yet applied
  checkpoint  an asynchronous checkpoint save has started and is still being written

Counts are per process, so a restarted run counts from 1 again. The variable is read once per
process, at the first point reached (the loop reaches one every step). Unset (always, outside
the tests and ``experiments/benchmarks/kill_soak.py``), ``reached`` only counts.
"""
import collections
import os
import signal

ENV_VAR = 'NOFE_KILL_AT'
POINTS = ('step', 'hook', 'checkpoint')

_reached: collections.Counter = collections.Counter()
_targets: dict[str, int] | None = None  # parsed from the environment at the first ``reached``


def parse(spec: str) -> dict[str, int]:
    """{'point': n} from 'point:n,...'; a ValueError names what is wrong."""
    targets = {}
    for item in filter(None, (part.strip() for part in spec.split(','))):
        point, _, count = item.partition(':')
        if point not in POINTS or not count.isdigit() or int(count) < 1:
            raise ValueError(f'{ENV_VAR}={spec!r}: each item must be <point>:<n>, point one of '
                             f'{POINTS}, n >= 1.')
        targets[point] = int(count)
    return targets


def reached(point: str) -> None:
    """Counts ``point``; SIGKILLs this process if ``NOFE_KILL_AT`` names this occurrence."""
    global _targets
    if _targets is None:
        _targets = parse(os.environ.get(ENV_VAR, ''))
    _reached[point] += 1
    if _targets.get(point) == _reached[point]:
        os.kill(os.getpid(), signal.SIGKILL)

"""Checks of user input that run before any data is read: pure functions, one line per problem.

Each ``*_problem`` helper returns a one-line message naming the config field
(or path) and what to do, or None; callers collect them so a run reports every
problem at once (``ConfigError``) instead of failing on the first, hours in.
"""
import difflib
import os
from collections.abc import Iterable, Sequence

from nofe_jax import paths


class ConfigError(ValueError):
    """The config or the command line is wrong; the message lists every problem, one per line."""


def raise_problems(problems: Sequence[str]) -> None:
    """Raises ``ConfigError`` with one line per problem (nothing when there are none)."""
    if problems:
        raise ConfigError('\n'.join(problems))


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` that look like ``name`` (difflib), best first."""
    return difflib.get_close_matches(str(name), list(choices), n=n, cutoff=0.5)


def choice_problem(field: str, value, choices: Sequence[str]) -> str | None:
    """``field=value`` is not one of ``choices``: names the closest ones, or all when few."""
    if value in choices:
        return None
    near = closest(value, choices)
    options = (f'did you mean {" or ".join(near)}?' if near and len(choices) > 8
               else f'choose one of {", ".join(choices)}.')
    return f'{field}={value!r} is not known; {options}'


def range_problem(field: str, value, *, low=None, high=None, low_open: bool = False,
                  high_open: bool = False, integer: bool = False) -> str | None:
    """``field=value`` is not a number (an integer when ``integer``) in [low, high] (an open end
    where ``low_open`` / ``high_open``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        return f'{field}={value!r} must be {"an integer" if integer else "a number"}.'
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lower = '' if low is None else f'{"> " if low_open else ">= "}{low}'
        upper = '' if high is None else f'{"< " if high_open else "<= "}{high}'
        return f'{field}={value!r} must be {" and ".join(filter(None, (lower, upper)))}.'
    return None


def fits_classes(count: int, num_classes: int, low: int = 1) -> bool:
    """The rule for a count of groups, experts or classes per group the C classes must fill:
    ``low <= count <= num_classes``."""
    return low <= count <= num_classes


def check_fits_classes(field: str, value: int, num_classes: int, *, symbol: str, low: int = 1) -> None:
    """Raises ``ConfigError`` unless ``value`` fits the C classes (``fits_classes``): config field
    ``field`` (``symbol``: K, M, T), checked once the data's C is known."""
    if not fits_classes(value, num_classes, low):
        raise ConfigError(
            f'{field}={value} does not fit {num_classes} classes: choose {low} <= {symbol} <= '
            f'{num_classes} (--config.{field}=...).')


def workdir_problem(workdir: str) -> str | None:
    """The workdir cannot be created or written: it is a file, or its folder is not writable."""
    path = os.path.abspath(paths.expand(workdir))
    if os.path.exists(path) and not os.path.isdir(path):
        return f'--workdir={workdir}: {path} exists and is not a folder; choose another workdir.'
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f'--workdir={workdir}: {existing} is a file, so {path} cannot be created.'
    if not os.access(existing, os.W_OK | os.X_OK):
        return f'--workdir={workdir}: {existing} is not writable (permission denied).'
    return None


def field_paths(config, prefix: str = '') -> list[str]:
    """Dotted paths of every leaf field of a (nested) ConfigDict, e.g. 'generalist.train.duration'."""
    paths = []
    for key, value in config.items():
        path = f'{prefix}{key}'
        paths += field_paths(value, path + '.') if hasattr(value, 'items') else [path]
    return paths


# Names people try for how long to train; here that is a `duration` string with a unit.
DURATION_NAMES = ('epochs', 'num_epochs', 'steps', 'num_steps', 'max_steps', 'iterations')


def unknown_field_problem(path: str, config) -> str | None:
    """``path`` (dotted) is not a field of ``config``: names the closest existing fields."""
    known = field_paths(config)
    if path in known or any(k.startswith(path + '.') for k in known):
        return None
    parent, _, leaf = path.rpartition('.')
    if leaf in DURATION_NAMES:
        near = [k for k in known if k.endswith(f'{parent}.duration' if parent else 'duration')]
    else:  # the full path first (`train.duration` ~ `generalist.train.duration`), then the name
        near = closest(path, known) or [k for k in known if k.rpartition('.')[2] == leaf][:3]
    hint = f'did you mean {" or ".join(near)}?' if near else 'see the config file for its fields.'
    unit = " (a duration is a string with a unit, e.g. '3 epochs')" if leaf in DURATION_NAMES else ''
    return f'config field {path!r} does not exist; {hint}{unit}'

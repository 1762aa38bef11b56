r"""Trains and evaluates the method a config names (``config.recipe``).

  python -m experiments.run --config=experiments/configs/quickstart.py --workdir=/tmp/q
  python -m experiments.run --config=experiments/configs/cifar100_base.py:model=nin_c100 \
      --workdir=/tmp/nin --config.train.batch_size=256

Rerunning the same command on the same workdir resumes from the last checkpoint.
SIGTERM or Ctrl-C during training saves a checkpoint at the next step and exits
with status 143 or 130, saying so in one line.
The whole config is checked before any data is read, and before jax and the rest of
the training machinery are imported, so a bad flag fails at once; a user error
(bad config, missing data, no usable checkpoint, NaN loss) prints its message and exits
with status 1. ``--verbose`` (or NOFE_VERBOSE=1) shows the traceback as well.
"""
import os
import sys
from typing import NoReturn

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

# Only what checks the command line: jax, flax, optax and orbax load after the config passed.
from nofe_jax import methods, validation
from nofe_jax.data import sources
from nofe_jax.training import faults

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (path[:arg]).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and plots go.')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show the traceback of user errors too.')
_CHECK = flags.DEFINE_bool('check', False, 'Check the config and workdir (every problem, one line '
                           'each), then exit without training.')
flags.mark_flags_as_required(['config', 'workdir'])

OVERRIDE_PREFIX = '--config.'


def verbose_from_environment() -> bool:
    """NOFE_VERBOSE=1 (anything but '' or '0'): show tracebacks of user errors."""
    return os.environ.get('NOFE_VERBOSE', '') not in ('', '0')


def override_paths(argv: list[str]) -> list[str]:
    """The config fields ``--config.a.b=value`` arguments override ('a.b')."""
    return [arg[len(OVERRIDE_PREFIX):].split('=', 1)[0] for arg in argv
            if arg.startswith(OVERRIDE_PREFIX)]


def config_argument(argv: list[str]) -> str:
    """The value of --config (``path[:arg]``) in ``argv``."""
    for i, arg in enumerate(argv):
        if arg.startswith('--config='):
            return arg.split('=', 1)[1]
        if arg == '--config' and i + 1 < len(argv):
            return argv[i + 1]
    return ''


def config_load_problem(argument: str) -> str | None:
    """Why ``--config=<argument>`` does not load (no such file, a bad ``:arg``), or None."""
    try:
        flags.FLAGS['config'].parser.parse(argument).keys()  # a failed load raises on first use
    except Exception as e:  # ml_collections wraps whatever the file or its get_config raised
        while e.__cause__ or e.__context__:
            e = e.__cause__ or e.__context__
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        return f'--config={argument} does not load: {lines[-1] if lines else type(e).__name__}'
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing; a config that does not load, or an override of a field it lacks,
    exits with one line (the closest fields for the latter)."""
    argument = config_argument(argv)
    problem = config_load_problem(argument) if argument else None
    if problem and not ('--verbose' in argv or verbose_from_environment()):
        sys.exit(f'error: {problem}')
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError):
        # Load the config without its overrides to learn its fields, then name the unknown ones.
        config = flags.FLAGS['config'].parser.parse(config_argument(argv))
        problems = [p for p in (validation.unknown_field_problem(path, config)
                                for path in override_paths(argv)) if p]
        if not problems or '--verbose' in argv or verbose_from_environment():  # flags not parsed yet
            raise
    sys.exit('error: ' + '\n'.join(problems))


def exit_with_message(error: Exception) -> NoReturn:
    """Exits with a user error's one-line message, or raises it to show its traceback (--verbose)."""
    if _VERBOSE.value or verbose_from_environment():
        raise error
    sys.exit(f'error: {error}')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Runs the method ``config`` names; a signal's stop or a user error exits with its message."""
    from nofe_jax.training import checkpoints, loop  # the training machinery: seconds of imports

    # Errors whose message says what to do; anything else is a bug and keeps its traceback.
    user_errors = (validation.ConfigError, sources.DatasetNotFoundError, checkpoints.CheckpointError,
                   loop.NonFiniteLossError)
    try:
        methods.train_and_evaluate(config, workdir)
    except loop.TrainingStopped as e:
        print(e, file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except user_errors as e:
        exit_with_message(e)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    # Orbax logs every save at INFO; keep the terminal to our progress lines.
    logging.set_verbosity(logging.WARNING)
    try:
        faults.parse(os.environ.get(faults.ENV_VAR, ''))
    except ValueError as e:
        sys.exit(f'error: {e}')
    try:
        methods.validate(_CONFIG.value, _WORKDIR.value)
    except validation.ConfigError as e:
        exit_with_message(e)
    if not _CHECK.value:
        train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
    app.run(main, flags_parser=parse_flags)

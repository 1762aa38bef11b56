"""Session-wide sharing: one compilation cache, and each distinct training run done once.

Most of a smoke run's time on CPU is XLA compiling the same few steps (the quickstart smoke:
about 5 of its 7 s), and dozens of tests, in this process and in the ``python -m
experiments.run`` subprocesses they start, compile the very same programs. JAX's persistent
compilation cache, in a fresh folder per session, compiles each of them once. It changes no
result: a cached executable is the one XLA compiled, and tracing still happens on every call
(the no-recompile tests count traces). The SIGTERM test keeps its interrupted run freshly
compiled (``JAX_ENABLE_COMPILATION_CACHE=false``), so one comparison spans two compiles.

Under pytest-xdist (setup.cfg runs 2 workers) each worker is a session of its own; the workers
share one cache folder per run, so a program one compiled the other loads. JAX 0.10 writes an
entry in place (no lock unless ``jax_compilation_cache_max_size`` is set): a worker that reads
one while the other is still writing it gets a truncated entry, which fails to decompress; JAX
then warns and compiles the program itself. Same result, a few seconds lost, at worst.
"""
import contextlib
import copy
import io
import os
import sys
from typing import NamedTuple

import jax
import pytest

_CACHE_SETTINGS = {
    'jax_compilation_cache_dir': None,  # set per session below
    'jax_persistent_cache_min_compile_time_secs': 0,
    'jax_persistent_cache_min_entry_size_bytes': -1,
}


def _cache_dir(tmp_path_factory) -> str:
    if 'PYTEST_XDIST_WORKER' not in os.environ:
        return str(tmp_path_factory.mktemp('jax_cache'))
    shared = tmp_path_factory.getbasetemp().parent / 'jax_cache'  # the run's folder, above the workers'
    shared.mkdir(exist_ok=True)
    return str(shared)


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
    settings = dict(_CACHE_SETTINGS, jax_compilation_cache_dir=_cache_dir(tmp_path_factory))
    saved_env = {name.upper(): os.environ.get(name.upper()) for name in settings}
    saved_config = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
        os.environ[name.upper()] = str(value)  # the subprocesses' jax reads its flags from here
    yield settings['jax_compilation_cache_dir']
    for name, value in saved_config.items():
        jax.config.update(name, value)
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# The files that take longest (their tests' times summed from `pytest tests/ --durations=0`), run
# first: xdist hands out whole files (setup.cfg), so a long one started last would keep one worker
# busy while the other idles. setup.cfg's --no-loadscope-reorder keeps xdist from re-sorting them
# by test count.
_LONGEST_FIRST = ('test_run.py', 'test_kill_anywhere.py', 'test_nofe_real_data.py', 'test_benchmarks.py',
                  'test_resume_fingerprints.py', 'test_dmde.py', 'test_init_from.py', 'test_devices.py',
                  'test_loop.py', 'test_deepme.py', 'test_sweep.py', 'test_kill_workers.py',
                  'test_layers.py', 'test_multiprocess.py', 'test_torchvision_weights.py')


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep their order


class TrainedRun(NamedTuple):
    summary: dict  # a copy: each test may change its own
    workdir: object  # pathlib.Path; the run's files, shared: read them, do not change them
    stdout: str  # what the run printed


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory):
    """trained_run(config) -> TrainedRun: ``methods.train_and_evaluate(config, workdir)``, run once
    per session for each distinct config (compared by value), whichever tests ask for it.

    Several files train the very same config (the quickstart smoke; the fixed-source NofE runs)
    and only read the result; this trains it once. Tests that change a workdir (resume, damage
    a checkpoint), patch the library or must see a run start train their own.
    """
    from nofe_jax import methods
    runs = {}

    def run(config):
        key = config.to_json(sort_keys=True)
        if key not in runs:
            workdir = tmp_path_factory.mktemp('trained_run')
            printed = io.StringIO()
            with contextlib.redirect_stdout(_Tee(sys.stdout, printed)):
                summary = methods.train_and_evaluate(config, str(workdir))
            runs[key] = TrainedRun(summary, workdir, printed.getvalue())
        summary, workdir, stdout = runs[key]
        return TrainedRun(copy.deepcopy(summary), workdir, stdout)
    return run

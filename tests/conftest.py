"""One compilation cache for the whole test session, shared with the subprocesses it starts.

Most of a smoke run's time on CPU is XLA compiling the same few steps (the quickstart smoke:
about 5 of its 7 s), and dozens of tests, in this process and in the ``python -m
experiments.run`` subprocesses they start, compile the very same programs. JAX's persistent
compilation cache, in a fresh folder per session, compiles each of them once. It changes no
result: a cached executable is the one XLA compiled, and tracing still happens on every call
(the no-recompile tests count traces). The tests that compare runs bit for bit keep one side
freshly compiled (``JAX_ENABLE_COMPILATION_CACHE=false``).
"""
import os

import jax
import pytest

_CACHE_SETTINGS = {
    'jax_compilation_cache_dir': None,  # set per session below
    'jax_persistent_cache_min_compile_time_secs': 0,
    'jax_persistent_cache_min_entry_size_bytes': -1,
}


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
    settings = dict(_CACHE_SETTINGS, jax_compilation_cache_dir=str(tmp_path_factory.mktemp('jax_cache')))
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


"""Kill anywhere, rerun, and the result is bitwise the uninterrupted run's (CPU).

Each recipe's smoke config runs as a user runs it (``python -m experiments.run``, the
commands in ``kill_soak.RECIPE_ARGS``: checkpoints and specialty updates every 10 steps) and
is SIGKILLed at injected points (``NOFE_KILL_AT``, see ``nofe_jax/training/faults.py``):
inside a training step, inside a specialty update, while a checkpoint is being written, and
across the generalist -> NofE boundary. The same command is rerun after each kill; the
last rerun completes, and its final metrics, specialties and every stage's final
parameters and optimiser state must equal one uninterrupted run's. 14 kill points in all;
``experiments/benchmarks/kill_soak.py`` runs many random ones.
"""
import copy

import jax
import numpy as np
import pytest

from experiments.benchmarks import kill_soak

# Counts are per process: a rerun counts from 1 again. The NofE smoke has 42 generalist
# steps (updates and checkpoints at 10, 20, 30, 40, 42) and 42 NofE steps.
KILL_CHAINS = {
    'nofe': ('step:15',          # generalist step 15
             'hook:1',           # the specialty update at step 20 (resumed at 10)
             'checkpoint:1',     # writing the checkpoint of step 20
             'checkpoint:3',     # writing step 40's
             'step:12',          # the first NofE step (generalist resumed at 30)
             'checkpoint:2',     # writing NofE step 20's
             'step:25'),         # NofE step 35
    'base': ('step:7', 'checkpoint:2', 'step:25'),
    # The DMDE smoke: 42 steps of the stacked bases (similarity updates and checkpoints every 10),
    # then 42 fusion steps.
    'dmde': ('hook:2',           # the similarity update at step 20 (resumed at 10)
             'step:45'),         # fusion step 13 (bases resumed at 10; fusion resumes at 10)
    # The DeepME smoke: 42 steps of the stacked bases, then 42 gate steps, likewise.
    'deepme': ('hook:2',         # the similarity update at step 20 (resumed at 10)
               'step:45'),       # gate step 13
}


# Every run takes its compiled steps from the session's compilation cache (tests/conftest.py):
# what these chains test is resuming. That a rerun which compiles afresh ends the same is
# test_run.py's SIGTERM test.
@pytest.fixture(scope='module', params=sorted(KILL_CHAINS))
def uninterrupted(request, tmp_path_factory):
    recipe = request.param
    workdir = tmp_path_factory.mktemp(f'{recipe}_uninterrupted')
    assert kill_soak.run_once(kill_soak.RECIPE_ARGS[recipe], workdir) == 0
    return recipe, workdir


def test_a_run_killed_anywhere_and_rerun_ends_bitwise_as_the_uninterrupted_one(
        uninterrupted, tmp_path):
    recipe, reference = uninterrupted
    args = kill_soak.RECIPE_ARGS[recipe]
    for kill_at in KILL_CHAINS[recipe]:
        assert kill_soak.run_once(args, tmp_path, kill_at) == kill_soak.KILLED, kill_at
    assert kill_soak.run_once(args, tmp_path) == 0
    assert kill_soak.differences(reference, tmp_path) == []
    assert kill_soak.restarts(tmp_path) == len(KILL_CHAINS[recipe])


def test_the_comparison_sees_one_changed_bit(uninterrupted):
    _, reference = uninterrupted
    ours = kill_soak.outcome(reference)
    assert kill_soak.outcome_differences(ours, ours) == []
    theirs = copy.deepcopy(ours)
    stage = sorted(theirs['states'])[0]
    (path, weights), *_ = jax.tree_util.tree_flatten_with_path(theirs['states'][stage]['params'])[0]
    weights.view(np.uint32).flat[0] ^= 1  # the last bit of one weight
    assert kill_soak.outcome_differences(ours, theirs) == [
        f"{stage}['params']{jax.tree_util.keystr(path)}"]

"""Resuming a workdir after changing an option that shapes a method's grouping or networks is
refused with one line naming the option, for every method; never a silent restore of the old
grouping arrays or weights (issue 22: DeepME's options were missing from the fingerprint)."""
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.benchmarks import kill_soak
from experiments.configs import quickstart
from nofe_jax import methods
from nofe_jax.training import checkpoints

REPO = __file__.rsplit('/tests/', 1)[0]

# Orbax may leave a refused restore's reads unawaited (see tests/training/test_checkpoints.py).
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')

# (quickstart variant, option, new value, the option's value in the finished run as printed).
CHANGES = [
    # The flat model's own fields are the shared ones: other data of the very same shapes.
    ('smoke,base', 'data.source', 'synthetic', "'digits'"),
    # Another seed would continue the old run's weights and batch order under a new name.
    ('smoke,base', 'seed', 1, '0'),
    ('smoke', 'nofe.num_experts', 4, '5'),
    ('smoke', 'nofe.specialties', 'random', "'learned'"),
    ('smoke', 'nofe.spectral_balanced', True, 'False'),
    ('smoke', 'nofe.subset_source', 'holdout', "'train'"),
    ('smoke,dmde', 'dmde.group_size', 3, '4'),
    ('smoke,dmde', 'dmde.ontology', 'semantic', "'random'"),
    ('smoke,dmde', 'dmde.overlap', 0.3, '0.5'),
    ('smoke,dmde', 'dmde.fusion_input', 'raw', "'log'"),
    ('smoke,deepme', 'deepme.groups', 'random', "'ssc'"),
    ('smoke,deepme', 'deepme.num_groups', 4, '3'),
    ('smoke,deepme', 'deepme.gate_input', 'first', "'all'"),
]


def _changed(variant: str, field: str, value):
    config = quickstart.get_config(variant)
    *blocks, name = field.split('.')
    target = config
    for block in blocks:
        target = target[block]
    target[name] = value
    if field == 'data.source':  # synthetic images and classes shaped like the digits
        config.data.update(synthetic_shape=(8, 8, 1), synthetic_classes=10)
    return config


@pytest.mark.parametrize('variant, field, value, before', CHANGES)
def test_resuming_after_changing_a_shaping_option_is_refused_naming_it(
        variant, field, value, before, trained_run, tmp_path):
    finished = trained_run(quickstart.get_config(variant))
    workdir = tmp_path / 'run'
    shutil.copytree(finished.workdir, workdir)
    with pytest.raises(checkpoints.CheckpointError) as refused:
        methods.train_and_evaluate(_changed(variant, field, value), str(workdir))
    message = str(refused.value)
    assert '\n' not in message
    assert 'was written by a different config (' in message
    assert f'{field}={before} there, {value!r} now' in message


def test_a_new_gate_on_trained_deepme_bases_restores_them_and_trains_only_the_gate(
        trained_run, tmp_path, capsys):
    """The gate's options are the gate stage's fingerprint, not the bases': copying a finished
    run's bases checkpoints into a new workdir reuses them under another gate input."""
    finished = trained_run(quickstart.get_config('smoke,deepme'))
    workdir = tmp_path / 'new_gate'
    shutil.copytree(finished.workdir / 'checkpoints' / 'bases', workdir / 'checkpoints' / 'bases')
    capsys.readouterr()
    methods.train_and_evaluate(_changed('smoke,deepme', 'deepme.gate_input', 'first'), str(workdir))
    assert '[bases] resumed from step' in capsys.readouterr().out
    bases = kill_soak.outcome(finished.workdir)['states']['bases']['params']
    gate = kill_soak.outcome(workdir)['states']['gate']['params']
    jax.tree.map(np.testing.assert_array_equal, bases, gate['groups'])


def test_every_method_declares_its_fingerprint_fields():
    for method in methods.METHODS.values():
        assert all(field.startswith(f'{method.option_block}.') for field in method.fingerprint_fields)
        if method.option_block:
            assert method.fingerprint_fields, method.name


def test_the_command_line_refuses_a_changed_deepme_grouping_in_one_line(trained_run, tmp_path):
    finished = trained_run(quickstart.get_config('smoke,deepme'))
    workdir = tmp_path / 'run'
    shutil.copytree(finished.workdir, workdir)
    out = subprocess.run([sys.executable, '-m', 'experiments.run',
                          '--config=experiments/configs/quickstart.py:smoke,deepme',
                          f'--workdir={workdir}', '--config.deepme.groups=random'],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-3000:]
    assert 'Traceback' not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith('error: The checkpoint at step '), out.stderr[-3000:]
    assert "deepme.groups='ssc' there, 'random' now" in last

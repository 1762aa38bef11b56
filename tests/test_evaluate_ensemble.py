"""experiments.evaluate_ensemble: the averaged flat models a G-network method is compared with."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from experiments import evaluate_ensemble
from experiments.configs import quickstart
from nofe_jax import validation


def test_accuracies_of_averaged_probabilities_by_hand():
    labels = np.array([0, 1, 2])
    # a: image 0 right; image 1 second (top-5 only); image 2's class last of six (not in its top 5).
    a = np.array([[.6, .4, .0, .0, .0, .0], [.6, .4, .0, .0, .0, .0], [.1, .05, .0, .2, .3, .35]])
    b = np.array([[.1, .9, .0, .0, .0, .0], [.0, .3, .6, .0, .0, .0], [.0, .0, .6, .1, .1, .2]])
    assert evaluate_ensemble.accuracies(a, labels) == {'top1': 1 / 3, 'top5': 2 / 3}
    # Averaged: image 0 [.35, .65, ...] wrong; image 1 [.3, .35, .3, ...] right; image 2 class 2
    # at .3 above .275 right.
    assert evaluate_ensemble.accuracies((a + b) / 2, labels) == {'top1': 2 / 3, 'top5': 1.0}


def test_an_ensemble_of_one_run_with_itself_is_that_run(trained_run, tmp_path):
    run = trained_run(quickstart.get_config('smoke,base'))
    result = evaluate_ensemble.evaluate([str(run.workdir), str(run.workdir)])
    assert result['members'][0]['top1'] == pytest.approx(run.summary['final']['test/top1'])
    assert result['ensemble']['top1'] == result['members'][0]['top1']


def test_only_finished_flat_runs_of_the_same_data(trained_run, tmp_path):
    run = trained_run(quickstart.get_config('smoke,base'))
    with pytest.raises(validation.ConfigError, match='holds no finished run'):
        evaluate_ensemble.evaluate([str(tmp_path)])
    other = tmp_path / 'other'
    shutil.copytree(run.workdir, other)
    config_path = other / 'config.json'
    config_path.write_text(config_path.read_text().replace('"recipe": "base"', '"recipe": "nofe"'))
    done = subprocess.run([sys.executable, '-m', 'experiments.evaluate_ensemble', str(run.workdir), str(other)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"error: {other} is a 'nofe' run; the ensemble averages flat models (recipe 'base')."]

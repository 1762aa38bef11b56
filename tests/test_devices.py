"""Batches on any device count: training batches that cannot split are refused with the nearest
valid sizes, eval pads by itself, and the quickstart and the Colab notebook run unchanged on 8
simulated CPU devices (``--xla_force_host_platform_device_count``, in a subprocess)."""
import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from experiments.configs import quickstart
from nofe_jax import parallel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'experiments', 'notebooks', 'nofe_colab_tpu.ipynb')


def _mesh(num_devices: int):
    # Only the device count matters to the batch arithmetic; the test process has one real device.
    return types.SimpleNamespace(devices=np.empty(num_devices, object))


@pytest.mark.parametrize('batch_size, num_devices, padded', [(250, 8, 256), (256, 8, 256), (1, 8, 8), (7, 1, 7)])
def test_eval_batch_pads_up_to_the_device_count(batch_size, num_devices, padded):
    assert parallel.padded_batch_size(batch_size, _mesh(num_devices)) == padded


def test_training_batch_that_does_not_split_names_the_nearest_sizes():
    parallel.check_batch_size(96, _mesh(8))
    with pytest.raises(ValueError, match=r'batch_size=100 must be a positive multiple of 8 .* nearest valid: 96 or 104'):
        parallel.check_batch_size(100, _mesh(8))
    with pytest.raises(ValueError, match=r'nearest valid: 8\.$'):
        parallel.check_batch_size(0, _mesh(8))
    with pytest.raises(ValueError, match='must be positive'):
        parallel.padded_batch_size(0, _mesh(8))


# Runs every code cell of the notebook in order, IPython magics (! and %) dropped, and prints
# the final metrics of the first run it makes (the quickstart).
_RUN_NOTEBOOK = textwrap.dedent('''
    import json, sys
    notebook = json.load(open(sys.argv[1]))
    namespace, results = {}, []
    for cell in notebook['cells']:
        if cell['cell_type'] != 'code':
            continue
        lines = ''.join(cell['source']).splitlines()
        exec('\\n'.join(l for l in lines if not l.lstrip().startswith(('!', '%'))), namespace)
        if 'summary' in namespace and not results:
            results.append(namespace['summary']['final'])
    import jax
    print('RESULT', json.dumps({'devices': jax.device_count(), 'quickstart': results[0]}))
''')


def test_notebook_runs_top_to_bottom_on_8_devices_like_one(tmp_path, trained_run):
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', NOFE_NOTEBOOK_SMOKE='1',
               NOFE_NOTEBOOK_ROOT=str(tmp_path / 'content'))
    done = subprocess.run([sys.executable, '-c', _RUN_NOTEBOOK, NOTEBOOK], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads([l for l in done.stdout.splitlines() if l.startswith('RESULT ')][-1][len('RESULT '):])
    assert result['devices'] == 8
    # The CIFAR-100 cell wrote its run (synthetic smoke data) where the plot cell looks.
    assert (tmp_path / 'content' / 'nofe' / 'c100_nofe_resnet56' / 'summary.json').exists()
    single = trained_run(quickstart.get_config('smoke')).summary['final']  # test_run.py's quickstart smoke
    assert abs(result['quickstart']['test/top1'] - single['test/top1']) <= 0.005, (result, single)

"""The benchmarks in experiments/benchmarks run small, and the Colab notebook is well formed."""

import json
import os
import re

import numpy as np

from experiments.benchmarks import expert_branches, grouping, train_speed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'experiments', 'notebooks', 'nofe_colab_tpu.ipynb')
JSON_KEYS = {'model', 'num_experts', 'backend', 'device', 'vmapped_ms', 'loop_ms', 'loop_over_vmapped'}


def test_expert_branches_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'result.json'
    result = expert_branches.main(['--model=tiny_cnn', '--num_experts=2,3', '--c_max=3',
                                   '--batch_size=4', '--iterations=2', '--rounds=2', f'--json_out={out}'])
    assert [row['num_experts'] for row in result['rows']] == [2, 3]
    for row in result['rows']:
        assert JSON_KEYS <= set(row)
        assert row['model'] == 'tiny_cnn' and row['feature_shape'] == [4, 4, 32]
        assert row['same_loss'], (row['loss_vmapped'], row['loss_loop'])
        assert row['vmapped_ms'] > 0 and row['loop_ms'] > 0
        assert row['loop_over_vmapped'] == row['loop_ms'] / row['vmapped_ms']
    assert json.loads(out.read_text()) == result
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == result  # the last line is the JSON record
    assert sum(line.startswith('| ') and line.endswith('| PASS |') for line in printed) == 2


def test_train_speed_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'speed.json'
    result = train_speed.main(['--models=tiny_cnn', '--num_classes=6', '--num_experts=2', '--batch_size=4',
                               '--iterations=1', '--rounds=2', f'--json_out={out}'])
    (row,) = result['rows']
    assert row['model'] == 'tiny_cnn'
    assert row['base_images_per_s'] > 0 and row['nofe_images_per_s'] > 0
    assert np.isclose(row['time_ratio'], row['base_images_per_s'] / row['nofe_images_per_s'])
    # Two experts of 3 classes replicate the head above the cut: more FLOPs than the flat model.
    assert row['flop_ratio'] > 1 and row['nofe_mflops_per_image'] > row['base_mflops_per_image']
    assert json.loads(out.read_text()) == result
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_grouping_benchmark_small(tmp_path, capsys):
    out = tmp_path / 'grouping.json'
    result = grouping.main(['--num_classes=120', '--num_groups=4', '--signal=0.9', f'--json_out={out}'])
    rows = {row['method']: row for row in result['rows']}
    assert set(rows) == set(grouping.METHODS)
    for name, row in rows.items():
        assert row['seconds'] > 0 and row['peak_mb'] >= 0, name
    for name in ('fully_balanced', 'optimal_balanced', 'random_balanced', 'spectral_balanced'):
        assert rows[name]['max_size'] == 30, name
    # Planted blocks with a clear signal are found; a random partition finds nothing.
    for name in ('optimal_balanced', 'spectral', 'spectral_balanced', 'soft_spectral'):
        assert rows[name]['nmi'] > 0.95, (name, rows[name]['nmi'])
    assert rows['random_balanced']['nmi'] < 0.2
    assert json.loads(out.read_text()) == result
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == result
    assert sum(line.startswith('| 4 |') for line in printed) == len(grouping.METHODS)


def _notebook() -> dict:
    with open(NOTEBOOK) as f:
        return json.load(f)


def test_notebook_is_nbformat4_without_outputs():
    notebook = _notebook()
    assert notebook['nbformat'] == 4
    cells = notebook['cells']
    assert {cell['cell_type'] for cell in cells} <= {'markdown', 'code', 'raw'}
    code = [cell for cell in cells if cell['cell_type'] == 'code']
    assert len(code) >= 5
    for cell in code:
        assert cell['outputs'] == [] and cell['execution_count'] is None
    source = '\n'.join(''.join(cell['source']) for cell in code)
    for needle in ('jax.devices()', 'pip install -r requirements.txt', 'recipes.train_and_evaluate',
                   "'model=resnet56_c100'", 'specialties.png',
                   'learning_curves.png', 'summary.json'):
        assert needle in source, needle


def test_notebook_library_imports_resolve():
    lines = [line.strip() for cell in _notebook()['cells'] if cell['cell_type'] == 'code'
             for line in ''.join(cell['source']).splitlines()]
    imports = [line for line in lines if re.match(r'(from|import) (experiments|nofe_jax)\b', line)]
    assert imports
    for line in imports:
        exec(line, {})  # pylint: disable=exec-used

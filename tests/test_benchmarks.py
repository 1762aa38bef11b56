"""The benchmarks in experiments/benchmarks run small, and the Colab notebook is well formed."""

import argparse
import json
import os
import re

import jax
import numpy as np
import pytest
from PIL import Image

from experiments.benchmarks import (conv_lowering, expert_branches, group_networks, grouping, inference,
                                    input_pipeline, pool_lowering, train_speed, update_share)
from nofe_jax.data import sources
from nofe_jax.models import layers

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


def test_conv_lowering_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'conv.json'
    result = conv_lowering.main(['--models=tiny_cnn:6x10x2', '--batch_size=2', '--iterations=1', '--rounds=1',
                                 f'--json_out={out}'])
    # The tiny CNN's two 3x3 convolutions, at the asked input shape.
    assert [(row['input'], row['kernel']) for row in result['rows']] == [
        ([2, 6, 10, 2], [3, 3, 2, 16]), ([2, 6, 10, 16], [3, 3, 16, 32])]
    for row in result['rows']:
        assert row['model'] == 'tiny_cnn:6x10x2' and row['same_grad'] and row['output_pixels'] == 120
        assert row['picked'] == ('xla' if row['output_pixels'] < 32768 else 'tap_grad')
        assert np.isclose(row['xla_over_tap_grad'], row['xla_ms'] / row['tap_grad_ms'])
    assert json.loads(out.read_text()) == result
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_pool_lowering_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'pool.json'
    result = pool_lowering.main(['--models=tiny_cnn:6x10x2,alexnet_c100:10x10x3', '--batch_size=2', '--iterations=1',
                                 '--rounds=1', f'--json_out={out}'])
    # The tiny CNN's 2/2 pool (floor mode); AlexNet-C100's one max pool, pool1 3/2 (pool2 and
    # pool3 are AVE), on a 10x10 map Caffe's ceil mode pools to 5 cells: padded to 11x11.
    assert [(row['model'], row['input'], row['window'], row['stride']) for row in result['rows']] == [
        ('tiny_cnn:6x10x2', [2, 6, 10, 32], 2, 2), ('alexnet_c100:10x10x3', [2, 11, 11, 32], 3, 2)]
    for row in result['rows']:
        assert row['same_grad'] and row['picked'] == layers.max_pool_lowering(jax.default_backend())
        assert np.isclose(row['xla_over_taps'], row['xla_ms'] / row['taps_ms'])
    assert json.loads(out.read_text()) == result
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_conv_lowering_benchmark_names_an_unknown_model_or_shape_in_one_line(capsys):
    for value, message in (('resnet9', "unknown model 'resnet9'; choose from alexnet, "),
                           ('tiny_cnn:28x28', "input shape '28x28' of tiny_cnn is not HxWxC"),
                           ('tiny_cnn:axbxc', "input shape 'axbxc' of tiny_cnn is not HxWxC")):
        with pytest.raises(SystemExit):
            conv_lowering.main([f'--models={value}'])
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert f': error: argument --models: {message}' in error  # argparse's one line, the program named as run


def test_train_speed_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'speed.json'
    result = train_speed.main(['--models=tiny_cnn', '--num_classes=6', '--num_experts=2', '--batch_size=4',
                               '--iterations=1', '--rounds=2', '--frameworks=jax', f'--json_out={out}'])
    (row,) = result['rows']
    assert row['model'] == 'tiny_cnn' and 'torch' not in row
    speeds = row['jax']
    assert speeds['base_images_per_s'] > 0 and speeds['nofe_images_per_s'] > 0
    assert np.isclose(speeds['time_ratio'], speeds['base_images_per_s'] / speeds['nofe_images_per_s'])
    assert np.isclose(speeds['base_step_ms'] * speeds['base_images_per_s'], 4e3)
    # Two experts of 3 classes replicate the head above the cut: more FLOPs than the flat model.
    assert row['flop_ratio'] > 1 and row['nofe_mflops_per_image'] > row['base_mflops_per_image']
    assert json.loads(out.read_text()) == result
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_train_speed_asking_for_torch_without_it_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(train_speed, 'TORCH_INSTALLED', False)
    with pytest.raises(SystemExit):
        train_speed.main(['--models=tiny_cnn', '--frameworks=jax,torch'])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith('argument --frameworks: torch is not installed; pip install -e ".[torch]" '
                          'or use --frameworks=jax')


def test_train_speed_frameworks_flag():
    assert train_speed.parse_frameworks('jax,torch', torch_installed=True) == ('jax', 'torch')
    assert train_speed.parse_frameworks('jax', torch_installed=False) == ('jax',)
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown frameworks \['tf'\]; choose from jax, torch"):
        train_speed.parse_frameworks('jax,tf', torch_installed=True)


def test_inference_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'inference.json'
    result = inference.main(['--models=tiny_cnn', '--num_classes=6', '--num_experts=2', '--batch_size=4',
                             '--iterations=1', '--rounds=2', f'--json_out={out}'])
    (row,) = result['rows']
    assert row['model'] == 'tiny_cnn' and result['batch_size'] == 4
    assert np.isclose(row['latency_time_ratio'], row['nofe_latency'] / row['base_latency'])
    assert np.isclose(row['throughput_time_ratio'], row['base_throughput'] / row['nofe_throughput'])
    assert row['flop_ratio'] > 1  # the same layout as train_speed's test: the head replicated
    assert json.loads(out.read_text()) == result
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_group_networks_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'groups.json'
    # measure() raises before timing if the stacked and looped networks' losses differ.
    result = group_networks.main(['--model=tiny_cnn', '--num_groups=2,3', '--group_size=3', '--batch_size=4',
                                  '--iterations=1', '--rounds=1', f'--json_out={out}'])
    assert [row['num_groups'] for row in result['rows']] == [2, 3]
    for row in result['rows']:
        assert np.isclose(row['loop_over_stacked'], row['loop_ms'] / row['stacked_ms'])
        assert np.isclose(row['g_times_one_over_stacked'], row['num_groups'] * row['one_ms'] / row['stacked_ms'])
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


def test_update_share_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'share.json'
    result = update_share.main(['--models=alexnet_quick_c100', '--subset_size=600', '--iterations=1',
                                '--rounds=2', '--predict_batches=1', f'--json_out={out}'])
    (row,) = result['rows']
    assert row['model'] == 'alexnet_quick_c100' and row['batch_size'] == 100
    # The config's period, resolved on CIFAR-100's 50,000 training images: 2 epochs of 500 steps.
    assert row['update_every'] == '2 epochs' and row['steps_per_update'] == 1000
    # |S| = 600 in eval batches of 500: two batches, one timed and scaled up.
    assert row['subset_size'] == 600 and row['predict_batches'] == 2 and row['predict_batches_timed'] == 1
    assert row['predict_extrapolated']
    assert row['train_ms_per_step'] > 0 and row['predict_s'] > 0 and row['assign_s'] > 0
    assert np.isclose(row['train_s_between_updates'], row['train_ms_per_step'] * row['steps_per_update'] / 1e3)
    assert np.isclose(row['update_s'], row['predict_s'] + row['assign_s'])
    assert 0 < row['share'] < 1
    assert np.isclose(row['share'], row['update_s'] / (row['update_s'] + row['train_s_between_updates']))
    # The planted generalist is far from chance, so the hook really re-assigned.
    assert not row['update_skipped'] and row['kappa'] > 0.1
    assert json.loads(out.read_text()) == result
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == result
    (line,) = [line for line in printed if line.startswith('| alexnet_quick_c100 |')]
    assert '(1 of 2*)' in line and '1000 (2 epochs)' in line


def test_update_share_planted_predictions_prefer_the_current_specialty():
    rng = np.random.default_rng(0)
    current = np.arange(100) % 10
    labels = rng.integers(0, 100, size=20_000)
    predicted = update_share.planted_predictions(labels, current, 10, 0.5, rng)
    assert predicted.dtype == np.int32 and predicted.min() >= 0 and predicted.max() < 10
    # Half of a class's images go to its preferred specialty, the rest uniformly: 0.55 land in the
    # current one for the 80% of classes that prefer it, 0.1 * 0.55 + 0.9 * 0.05 for the movers.
    expected = 0.8 * 0.55 + 0.2 * (0.1 * 0.55 + 0.9 * 0.05)
    assert abs(np.mean(predicted == current[labels]) - expected) < 0.02


def test_input_pipeline_image_folder_is_fashion_mnist(tmp_path):
    root = input_pipeline.write_image_folder(str(tmp_path / 'a'), num_images=20)
    input_pipeline.write_image_folder(str(tmp_path / 'b'), num_images=20)
    dataset = sources.load_image_folder_dataset(root)
    fashion = sources.load_idx_dataset()
    assert dataset.num_classes == 10 and len(dataset.train) == 20 and len(dataset.test) == 10
    assert dataset.class_names[0] == '00_T-shirt-top'
    images, labels = dataset.train.get(np.arange(20))
    for label in range(10):  # the first two training images of each class, in file order
        first = np.flatnonzero(fashion.train.labels == label)[:2]
        np.testing.assert_array_equal(images[labels == label], fashion.train.images[first])
    for path in dataset.train.paths:  # deterministic: a second copy is byte-identical
        with open(path, 'rb') as f, open(path.replace(str(tmp_path / 'a'), str(tmp_path / 'b')), 'rb') as g:
            assert f.read() == g.read()
    with Image.open(dataset.train.paths[0]) as image:
        assert image.format == 'PNG' and image.mode == 'L'


def test_input_pipeline_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'pipe.json'
    result = input_pipeline.main(['--batch_size=32', '--num_images=200', '--stages=base', '--iterations=2',
                                  '--rounds=2', f'--json_out={out}'])
    rows = {row['dataset']: row for row in result['rows']}
    assert set(rows) == {'idx', 'image_folder'}
    assert rows['idx']['train_images'] == 60_000 and rows['image_folder']['train_images'] == 200
    for row in rows.values():
        assert row['model'] == 'tiny_cnn' and row['batch_size'] == 32
        # One epoch per pipeline round, every batch of the configured shape.
        assert row['steps_per_epoch'] == row['train_images'] // 32
        assert row['batches_per_round'] == [row['steps_per_epoch']]
        assert row['batch_image_shapes'] == [[32, 28, 28, 1]] and row['batch_label_shapes'] == [[32]]
        assert row['base_images_per_s'] > 0 and row['pipeline_images_per_s'] > 0
        assert 'generalist_images_per_s' not in row and 'nofe_images_per_s' not in row  # --stages=base
        assert row['fastest_model'] == 'base'
        assert row['ratio'] == row['pipeline_images_per_s'] / row['base_images_per_s']
        assert row['verdict'] == ('PASS' if row['ratio'] > 1 else 'FAIL')
        assert row['base_fed_over_resident'] == row['base_fed_images_per_s'] / row['base_images_per_s']
    assert json.loads(out.read_text()) == result
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == result
    assert sum(line.startswith(('| idx |', '| image_folder |')) for line in printed) == 2


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
    for needle in ('REPO_URL', 'git clone {REPO_URL}', '-c /tmp/colab_jax.txt -e .', 'jax.devices()',
                   "download_and_prepare()", 'methods.train_and_evaluate', "'model=resnet56_c100'",
                   'specialties.png', 'learning_curves.png', 'summary.json'):
        assert needle in source, needle


def test_notebook_starts_with_the_repository_url_and_keeps_test_settings_out_of_its_text():
    cells = _notebook()['cells']
    first_code = next(cell for cell in cells if cell['cell_type'] == 'code')
    assert ''.join(first_code['source']).startswith('REPO_URL = ')
    for cell in cells:
        if cell['cell_type'] == 'markdown':
            assert 'NOFE_NOTEBOOK' not in ''.join(cell['source'])


def test_notebook_library_imports_resolve():
    lines = [line.strip() for cell in _notebook()['cells'] if cell['cell_type'] == 'code'
             for line in ''.join(cell['source']).splitlines()]
    imports = [line for line in lines if re.match(r'(from|import) (experiments|nofe_jax)\b', line)]
    assert imports
    for line in imports:
        exec(line, {})  # pylint: disable=exec-used

"""The input-pipeline benchmark's ImageNet-like case, at tiny sizes: JPEG folder, readers, report."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from experiments.benchmarks import input_pipeline

pytest.importorskip('grain')


def test_imagenet_like_folder_has_imagenet_shapes_and_is_written_once(tmp_path):
    rng = np.random.default_rng(0)
    shapes = np.array([input_pipeline.imagenet_like_shape(rng) for _ in range(2000)])
    width, height = shapes.mean(0)
    assert 460 < width < 520 and 370 < height < 420  # about 500x375, as ImageNet's photos
    assert np.mean(shapes.max(1) == 500) > 0.6 and len({tuple(s) for s in shapes}) > 6  # varied
    root = input_pipeline.write_imagenet_like(str(tmp_path), num_images=12, scale=0.1)
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names)
    assert len(files) == 12 and len(os.listdir(root)) == 10  # ten class folders
    with Image.open(files[0]) as image:
        assert image.format == 'JPEG' and image.mode == 'RGB'
    stamps = [os.path.getmtime(f) for f in files]
    assert input_pipeline.write_imagenet_like(str(tmp_path), num_images=12, scale=0.1) == root
    assert [os.path.getmtime(f) for f in files] == stamps  # cached: not rewritten
    assert [p for p in os.listdir(tmp_path) if 'partial' in p] == []


def test_imagenet_like_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'pipe.json'
    result = input_pipeline.main([
        '--case=imagenet_like', '--num_images=12', '--batch_size=4', '--image_scale=0.1',
        '--resize=32', '--crop=24', '--rounds=1', '--workers=0,1', '--model_images_per_s=3000',
        f'--cache_dir={tmp_path / "cache"}', f'--json_out={out}'])
    assert [row['reader'] for row in result['rows']] == ['1 core (serial)', 'thread', '1 worker']
    for row in result['rows']:
        assert row['images_per_s'] > 0 and row['epoch_images_per_s'] > 0 and row['first_batch_s'] > 0
    assert result['rows'][1]['over_thread'] == 1.0 and result['rows'][2]['cpu_ms_per_image'] >= 0
    per_core = 1000 / result['cpu_ms_per_image_one_core']
    assert result['images_per_s_per_core'] == pytest.approx(per_core)
    assert result['cores_to_feed_model'] == int(np.ceil(3000 / per_core))
    assert result['decode_ms_per_image'] > 0 and result['augment_ms_per_image'] > 0
    assert result['thread_ceiling_images_per_s'] == pytest.approx(1000 / result['augment_ms_per_image'])
    assert json.loads(out.read_text()) == result
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == result
    assert sum(line.startswith('|') for line in printed) == 2 + 3  # header, rule, three readers
    assert any(f"takes {result['cores_to_feed_model']} cores" in line for line in printed)

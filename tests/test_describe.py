"""experiments.describe: parameter counts and FLOPs of a config's models, without data or training."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import ml_collections
import pytest

from experiments import describe
from experiments.configs import cifar100_base, common, quickstart
from nofe_jax.data.sources import DatasetNotFoundError
from nofe_jax.models import layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# tiny_cnn on 8x8x1 digits: conv1 3x3x1x16 + conv2 3x3x16x32 = 4,800; features 4x4x32 = 512.
TINY_TRUNK, TINY_FEATURES = 160 + 4_640, 512
TINY_BRANCH_CONV = 3 * 3 * 32 * 16 + 16  # the expert's conv1, before its c_max-way ip1
TINY_BRANCH_FEATURES = 4 * 4 * 16  # the expert's ip1 reads conv1's whole map, as the flat head does


def _alexnet_c100_config(**nofe) -> ml_collections.ConfigDict:
    config = cifar100_base.get_config('model=alexnet_c100')
    if nofe:
        config.recipe = 'nofe'
        config.nofe = common.nofe_config()
        config.nofe.update(nofe)
    return config


def test_quickstart_counts():
    config = quickstart.get_config()
    result = describe.describe(config)
    if config.recipe == 'nofe':
        k = config.nofe.num_experts
        c_max = -(-10 // k)
        assert set(result) == {'generalist', 'nofe'}
        assert result['generalist']['params'] == TINY_TRUNK + TINY_FEATURES * k + k
        assert result['nofe']['params'] == TINY_TRUNK + k * (TINY_BRANCH_CONV + TINY_BRANCH_FEATURES * c_max + c_max)
    else:
        assert set(result) == {'base'}
        assert result['base']['params'] == TINY_TRUNK + TINY_FEATURES * 10 + 10
    for row in result.values():
        assert row['trainable_params'] == row['params']
        assert row['flops_per_image'] > 0


def test_cifar100_alexnet_base_counts():
    result = describe.describe(_alexnet_c100_config())
    # 79,328 in conv1..conv3 + the 1024 -> 100 ip1.
    assert result == {'base': {'params': 181_828, 'trainable_params': 181_828,
                               'flops_per_image': pytest.approx(result['base']['flops_per_image'])}}
    # conv1 alone is 2 * 32*32*32*75 FLOPs (less the zero padding XLA skips): tens of MFLOPs in all.
    assert 1e7 < result['base']['flops_per_image'] < 1e8


def test_cifar100_alexnet_nofe_counts():
    result = describe.describe(_alexnet_c100_config(num_experts=10))
    assert result['generalist']['params'] == 89_578
    assert result['nofe']['params'] == result['nofe']['trainable_params'] == 1_129_668
    # Ten conv4 experts on the shared trunk cost more than the generalist's forward pass.
    assert result['nofe']['flops_per_image'] > result['generalist']['flops_per_image'] > 0


def test_flops_count_in_bounds_taps_whichever_lowering_the_backend_runs():
    # K=2 stacked 5x5 64 -> 64 kernels, padding 2, on a 4x4 map (AlexNet-C100's conv4 experts).
    # In-bounds taps per output axis: 3, 4, 4, 3 of 5, so 14 * 14 = 196 of the 400 taps of the
    # 16 positions; a multiply-add is 2 FLOPs. CPU runs im2col, whose patches multiply the zero
    # padding too (400 taps): the count must not see that.
    class StackedConv(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            kernels = self.param('kernels', nn.initializers.zeros, (2, 5, 5, 64, 64))
            with layers.stacked_kernels():
                return jax.vmap(lambda k: layers.auto_conv_general_dilated(
                    x, k, (1, 1), ((2, 2), (2, 2)), dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(kernels)

    result = describe.describe_model(StackedConv(), (4, 4, 64))
    assert result['params'] == 2 * 5 * 5 * 64 * 64
    assert result['flops_per_image'] == 2 * (2 * 196 * 64 * 64)


def test_unbalanced_k_uses_ceil_c_max():
    # C=100, K=7: c_max = 15; each expert's ip1 reads the 2x2x64 pooled conv4 output.
    result = describe.describe(_alexnet_c100_config(num_experts=7))
    trunk = 2_432 + 25_632 + 51_264  # conv1..conv3 = 79,328
    assert result['nofe']['params'] == trunk + 7 * (25 * 64 * 64 + 64 + 256 * 15 + 15)


def test_data_shape():
    data = common.data_config()
    assert describe.data_shape(data) == (10, (8, 8, 1))
    data.source, data.name = 'tfds', 'cifar100'
    data.preprocess.crop = 28
    assert describe.data_shape(data) == (100, (28, 28, 3))
    data.name, data.preprocess.crop = 'imagenet2012', 0
    assert describe.data_shape(data) == (1000, (227, 227, 3))
    data.source = 'synthetic'
    data.synthetic_shape, data.synthetic_classes = (16, 16, 1), 7
    assert describe.data_shape(data) == (7, (16, 16, 1))
    data.source = 'image_folder'
    with pytest.raises(ValueError, match='without loading'):
        describe.data_shape(data)
    data.source, data.path = 'npz', '/nonexistent/pairs.npz'  # opened for its shapes
    with pytest.raises(DatasetNotFoundError, match='pairs.npz'):
        describe.data_shape(data)


def test_cli_json():
    proc = subprocess.run(
        [sys.executable, '-m', 'experiments.describe',
         '--config=experiments/configs/cifar100_base.py:model=alexnet_c100', '--json'],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(proc.stdout)['base']['params'] == 181_828

"""ImageNet weights in torchvision's state-dict layout (``init_from=<file>.npz`` or ``.safetensors``) start our AlexNet
and VGG16: on synthetic files of that layout (random arrays, no download), the loaded network's
logits equal a reference forward pass computed from the same arrays in torchvision's convention
(NCHW images, OIHW kernels, a (C, H, W) flatten before the first linear layer, x W^T + b); a file
of other shapes is one line before any work.

The networks run on small images (99 and 64 pixels) so the first linear layer reads a 2 x 2 map:
every layer keeps its ImageNet shape but that one, and the flatten order is still exercised."""
import json
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from nofe_jax.models import layers, registry
from nofe_jax.training import init_files, init_from

NUM_CLASSES = 10
# (torchvision index, out, in per group, kernel, stride, padding, groups, what follows the ReLU)
ALEXNET_CONVS = ((0, 96, 3, 11, 4, 0, 1, 'lrn_pool'), (4, 256, 48, 5, 1, 2, 2, 'lrn_pool'),
                 (8, 384, 256, 3, 1, 1, 1, ''), (10, 384, 192, 3, 1, 1, 2, ''),
                 (12, 256, 192, 3, 1, 1, 2, 'pool'))
ALEXNET_LINEARS = (1, 4, 6)
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG16_LINEARS = (0, 3, 6)
LRN = dict(size=5, alpha=1e-4, beta=0.75)


def _vgg16_convs():
    convs, index, channels = [], 0, 3
    for width, depth in VGG16_STAGES:
        for i in range(depth):
            convs.append((index, width, channels, 3, 1, 1, 1, 'pool2' if i == depth - 1 else ''))
            channels, index = width, index + 2
        index += 1  # the pool's index
    return tuple(convs)


ARCHITECTURES = {  # model -> (convs, linear indices, image size whose last map is 2 x 2)
    'alexnet': (ALEXNET_CONVS, ALEXNET_LINEARS, 99),
    'vgg16': (_vgg16_convs(), VGG16_LINEARS, 64),
}


def synthetic_state_dict(model_name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random float32 arrays of the torchvision layout (He-scaled, so activations stay near 1)."""
    convs, linears, _ = ARCHITECTURES[model_name]
    state = {}
    for index, out, fan_in, kernel, *_ in convs:
        std = np.sqrt(2.0 / (fan_in * kernel * kernel))
        state[f'features.{index}.weight'] = (rng.standard_normal((out, fan_in, kernel, kernel)) * std).astype(np.float32)
        state[f'features.{index}.bias'] = (rng.standard_normal(out) * 0.1).astype(np.float32)
    widths = (convs[-1][1] * 2 * 2, 4096, 4096, NUM_CLASSES)
    for index, fan_in, out in zip(linears, widths, widths[1:]):
        state[f'classifier.{index}.weight'] = (rng.standard_normal((out, fan_in)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        state[f'classifier.{index}.bias'] = (rng.standard_normal(out) * 0.1).astype(np.float32)
    return state


def _nchw(op):
    """An op on NHWC arrays (ours, parameter-free: LRN, pooling) applied to NCHW ones."""
    return lambda x: op(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


AFTER_RELU = {
    '': lambda x: x,
    'lrn_pool': _nchw(lambda x: layers.pool2d(layers.lrn_across_channels(x, **LRN), 'max', 3, 2)),
    'pool': _nchw(lambda x: layers.pool2d(x, 'max', 3, 2)),
    'pool2': _nchw(lambda x: layers.pool2d(x, 'max', 2, 2)),
}


def torchvision_forward(model_name: str, state: dict[str, np.ndarray], images_nhwc: np.ndarray) -> jax.Array:
    """Logits the torchvision way: NCHW, OIHW kernels, (C, H, W) flatten, x W^T + b."""
    convs, linears, _ = ARCHITECTURES[model_name]
    x = jnp.asarray(images_nhwc).transpose(0, 3, 1, 2)
    for index, _, _, _, stride, padding, groups, after in convs:
        x = lax.conv_general_dilated(x, state[f'features.{index}.weight'], (stride, stride), [(padding, padding)] * 2,
                                     dimension_numbers=('NCHW', 'OIHW', 'NCHW'), feature_group_count=groups,
                                     precision=lax.Precision.HIGHEST)
        x = AFTER_RELU[after](jax.nn.relu(x + state[f'features.{index}.bias'][None, :, None, None]))
    x = x.reshape(x.shape[0], -1)
    for i, index in enumerate(linears):
        x = jnp.dot(x, state[f'classifier.{index}.weight'].T, precision=lax.Precision.HIGHEST)
        x = x + state[f'classifier.{index}.bias']
        x = jax.nn.relu(x) if i < len(linears) - 1 else x
    return x


@pytest.mark.parametrize('model_name', ['alexnet', 'vgg16'])
def test_the_loaded_network_computes_what_torchvision_computes_from_the_same_arrays(model_name, tmp_path, capsys):
    rng = np.random.default_rng(0)
    state = synthetic_state_dict(model_name, rng)
    path = str(tmp_path / f'{model_name}.npz')
    np.savez(path, **state)
    size = ARCHITECTURES[model_name][2]
    assert init_files.init_from_problem(path, model_name) is None
    model = registry.build_base(model_name, NUM_CLASSES)
    assert init_from.fit_problem(path, model_name, init_from.source_shapes(path, model_name),
                                 init_from.model_shapes(model, (size, size, 3))) is None
    images = rng.standard_normal((2, size, size, 3)).astype(np.float32)
    fresh = jax.jit(lambda r: model.init(r, images[:1], train=False))(jax.random.key(0))
    variables = init_from.loader(path, model_name, init_from.FLAT, 'base')(fresh)
    assert 're-initialised none' in capsys.readouterr().out
    with jax.default_matmul_precision('highest'):
        ours, _ = model.apply(variables, images, train=False)
    expected = torchvision_forward(model_name, state, images)
    assert float(jnp.std(expected)) > 0.1  # a real signal through every layer, not zeros
    np.testing.assert_allclose(ours, expected, rtol=2e-4, atol=2e-4 * float(jnp.max(jnp.abs(expected))))


def _torchvision_shapes(model_name: str, fc6_inputs: int) -> dict[str, tuple[int, ...]]:
    convs, linears, _ = ARCHITECTURES[model_name]
    shapes = {}
    for index, out, fan_in, kernel, *_ in convs:
        shapes.update({f'features.{index}.weight': (out, fan_in, kernel, kernel), f'features.{index}.bias': (out,)})
    widths = (fc6_inputs, 4096, 4096, 1000)
    for index, fan_in, out in zip(linears, widths, widths[1:]):
        shapes.update({f'classifier.{index}.weight': (out, fan_in), f'classifier.{index}.bias': (out,)})
    return shapes


@pytest.mark.parametrize('model_name, size, fc6_inputs', [('alexnet', 227, 9216), ('vgg16', 224, 25088)])
def test_imagenet_shaped_files_fit_the_imagenet_models_with_a_fresh_classifier_for_other_classes(
        model_name, size, fc6_inputs):
    model_shapes = init_from.model_shapes(registry.build_base(model_name, 7756), (size, size, 3))
    source = init_from.torchvision_as_our_shapes(_torchvision_shapes(model_name, fc6_inputs), model_name)
    assert init_from.fit_problem('w.npz', model_name, source, model_shapes) is None
    assert source['params']['head/fc6']['kernel'] == model_shapes['params']['head/fc6']['kernel']


def test_torchvisions_own_alexnet_does_not_fit_the_bvlc_alexnet_in_one_line():
    """torchvision's AlexNet has 64 / 192 / 384 / 256 / 256 channels and no groups; ours is BVLC's."""
    shapes = {'features.0.weight': (64, 3, 11, 11), 'features.0.bias': (64,)}
    source = init_from.torchvision_as_our_shapes(shapes, 'alexnet')
    model_shapes = init_from.model_shapes(registry.build_base('alexnet', 1000), (227, 227, 3))
    assert init_from.fit_problem('tv.npz', 'alexnet', source, model_shapes) == (
        "init_from='tv.npz' does not fit model.name='alexnet': layer trunk/conv1 is bias [64], "
        'kernel [11, 11, 3, 64] there, bias [96], kernel [11, 11, 3, 96] here.')


def test_a_file_for_another_model_or_of_another_depth_is_one_line(tmp_path):
    path = str(tmp_path / 'w.npz')
    np.savez(path, **{'features.0.weight': np.zeros((4, 3, 3, 3), np.float32),
                      'features.0.bias': np.zeros(4, np.float32)})
    assert init_files.init_from_problem(path, 'tiny_cnn') == (
        f"init_from='{path}' holds torchvision weights, which map onto alexnet or vgg16, not "
        "model.name='tiny_cnn'.")
    assert init_files.init_from_problem(path, 'vgg16') == (
        f"init_from='{path}' has 1 convolution/linear layers (features.<i>.weight, "
        'classifier.<j>.weight); vgg16 has 16.')
    other = tmp_path / 'w.pt'
    other.write_bytes(b'')
    assert init_files.init_from_problem(str(other), 'vgg16') == (
        f"init_from='{other}' is a file but not a .npz or .safetensors (torchvision state-dict names, "
        'docs/methods.md).')


def write_safetensors(path, arrays: dict[str, np.ndarray], dtypes: dict[str, str] | None = None) -> None:
    """A .safetensors file by its published layout (the test's own writer, independent of the
    reader): u64 header length, JSON header with byte offsets, then the little-endian bytes."""
    dtypes = dtypes or {}
    header, chunks, offset = {'__metadata__': {'format': 'pt'}}, [], 0
    for key, array in arrays.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[key] = {'dtype': dtypes.get(key, 'F32'), 'shape': list(array.shape),
                       'data_offsets': [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(encoded)) + encoded + b''.join(chunks))


def test_a_safetensors_file_loads_the_same_layers_as_the_npz_of_the_same_state_dict(tmp_path):
    state = synthetic_state_dict('alexnet', np.random.default_rng(1))
    npz, safetensors = str(tmp_path / 'a.npz'), str(tmp_path / 'a.safetensors')
    np.savez(npz, **state)
    write_safetensors(safetensors, state)
    assert init_files.init_from_problem(safetensors, 'alexnet') is None
    assert init_files.file_shapes(safetensors) == init_files.file_shapes(npz)
    from_npz, from_safetensors = (init_from.read_source(p, 'alexnet')['params'] for p in (npz, safetensors))
    assert list(from_safetensors) == list(from_npz) == list(init_files.TORCHVISION_LAYERS['alexnet'])
    for layer, leaves in from_npz.items():
        for leaf, value in leaves.items():
            np.testing.assert_array_equal(from_safetensors[layer][leaf], value)


def test_safetensors_half_precision_dtypes_and_a_damaged_header(tmp_path):
    import ml_dtypes
    half = np.array([[1.5, -2.0]], np.float16)
    brain = np.array([0.25, 3.0], ml_dtypes.bfloat16)
    path = str(tmp_path / 'h.safetensors')
    write_safetensors(path, {'w': half, 'b': brain}, {'w': 'F16', 'b': 'BF16'})
    arrays = init_files.read_arrays(path)
    np.testing.assert_array_equal(arrays['w'], half)
    np.testing.assert_array_equal(arrays['b'].astype(np.float32), [0.25, 3.0])
    damaged = tmp_path / 'd.safetensors'
    damaged.write_bytes(struct.pack('<Q', 10 ** 9) + b'{}')
    assert init_files.init_from_problem(str(damaged), 'alexnet') == (
        f"init_from='{damaged}' is not a readable .safetensors file: its header length (1000000000 "
        'bytes) runs past the end of the file')


def test_the_conversion_by_hand():
    weight = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)  # [out, C, H, W] of a linear
    ours = init_files.torchvision_layer(weight.reshape(2, 12), np.zeros(2), flatten_hw=(2, 2))['kernel']
    features = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)  # [B, C, H, W]
    np.testing.assert_array_equal(features.reshape(1, -1) @ weight.reshape(2, 12).T,
                                  features.transpose(0, 2, 3, 1).reshape(1, -1) @ ours)
    conv = init_files.torchvision_layer(weight, np.zeros(2))['kernel']
    assert conv.shape == (2, 2, 3, 2) and conv[1, 0, 2, 1] == weight[1, 2, 1, 0]

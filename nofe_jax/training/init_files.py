"""Where ``config.init_from`` points, read without jax: a trained flat model of this project (a
workdir, a stage's checkpoint folder or one step's) or ImageNet weights in torchvision's layout.

The torchvision layout (docs/methods.md, "Start from a trained network"): a .npz or a
.safetensors file (read here from its documented layout: an 8-byte little-endian header length,
a JSON header of {name: {dtype, shape, data_offsets}}, then the raw little-endian bytes) whose keys
are a state dict's, ``features.<i>.weight`` [out, in / groups, kh, kw] and ``.bias`` [out] for the
convolutions, ``classifier.<j>.weight`` [out, in] and ``.bias`` for the fully connected layers,
the first of which reads the last feature map flattened in (C, H, W) order. The k-th layer in
index order is our model's k-th (``TORCHVISION_LAYERS``); the conversion to our NHWC layers is
``torchvision_layer``. Everything here is numpy and the file system, so a config is checked in
well under a second.
"""
import json
import os
import re
import struct
import zipfile

import numpy as np

from nofe_jax import paths

# A flat run's stage: the checkpoint a workdir stands for.
FLAT_STAGE = 'base'
NPZ_SUFFIX = '.npz'
SAFETENSORS_SUFFIX = '.safetensors'
TORCHVISION_SUFFIXES = (NPZ_SUFFIX, SAFETENSORS_SUFFIX)
# safetensors' dtype names; BF16 is read through ml_dtypes (a jax dependency), imported only then.
_SAFETENSORS_DTYPES = {'F64': '<f8', 'F32': '<f4', 'F16': '<f2', 'I64': '<i8', 'I32': '<i4',
                       'I16': '<i2', 'I8': 'i1', 'U8': 'u1', 'BOOL': '?'}

# Our layers, in the order of the torchvision state dict's convolutions then linear layers.
TORCHVISION_LAYERS: dict[str, tuple[str, ...]] = {
    'alexnet': ('trunk/conv1', 'trunk/conv2', 'trunk/conv3', 'trunk/conv4', 'trunk/conv5',
                'head/fc6', 'head/fc7', 'head/fc8'),
    'vgg16': ('trunk/conv1_1', 'trunk/conv1_2', 'trunk/conv2_1', 'trunk/conv2_2', 'trunk/conv3_1',
              'trunk/conv3_2', 'trunk/conv3_3', 'trunk/conv4_1', 'trunk/conv4_2', 'trunk/conv4_3',
              'trunk/conv5_1', 'trunk/conv5_2', 'trunk/conv5_3', 'head/fc6', 'head/fc7', 'head/fc8'),
}
_TORCHVISION_KEY = re.compile(r'^(features|classifier)\.(\d+)\.(weight|bias)$')


def is_torchvision_file(path: str) -> bool:
    return path.endswith(TORCHVISION_SUFFIXES)


def checkpoint_state_dir(path: str) -> str | None:
    """The ``state`` folder of the checkpoint ``path`` names, or None: a flat run's workdir
    (its newest ``checkpoints/base`` step), a stage's checkpoint folder (its newest step) or one
    step's folder."""
    if os.path.isdir(os.path.join(path, 'state')):
        return os.path.join(path, 'state')
    stage_dir = os.path.join(path, 'checkpoints', FLAT_STAGE)
    stage_dir = stage_dir if os.path.isdir(stage_dir) else path
    steps = [int(name) for name in os.listdir(stage_dir) if name.isdigit()
             and os.path.isdir(os.path.join(stage_dir, name, 'state'))] if os.path.isdir(stage_dir) else []
    return os.path.join(stage_dir, str(max(steps)), 'state') if steps else None


def npz_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """{key: shape} of a .npz, from the arrays' headers only (no array is read)."""
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, _ = read_header(f)
            shapes[name.removesuffix('.npy')] = tuple(shape)
    return shapes


def _safetensors_header(path: str) -> tuple[dict, int]:
    """({name: {'dtype', 'shape', 'data_offsets'}}, where the data start) of a .safetensors file."""
    with open(path, 'rb') as f:
        size_bytes = f.read(8)
        if len(size_bytes) != 8:
            raise ValueError('shorter than its 8-byte header length')
        (size,) = struct.unpack('<Q', size_bytes)
        if size > os.path.getsize(path) - 8:
            raise ValueError(f'its header length ({size} bytes) runs past the end of the file')
        header = json.loads(f.read(size))
    header.pop('__metadata__', None)
    return header, 8 + size


def _safetensors_dtype(name: str) -> np.dtype:
    if name == 'BF16':
        import ml_dtypes  # pylint: disable=import-outside-toplevel
        return np.dtype(ml_dtypes.bfloat16)
    if name not in _SAFETENSORS_DTYPES:
        raise ValueError(f'dtype {name} is not one of {", ".join([*_SAFETENSORS_DTYPES, "BF16"])}')
    return np.dtype(_SAFETENSORS_DTYPES[name])


def file_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """{key: shape} of a .npz or .safetensors file, from its headers only (no array is read)."""
    if path.endswith(SAFETENSORS_SUFFIX):
        return {key: tuple(entry['shape']) for key, entry in _safetensors_header(path)[0].items()}
    return npz_shapes(path)


def read_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of a .npz or .safetensors file (a .safetensors file's as read-only views of a
    memory map: only what is used is read from disk)."""
    if not path.endswith(SAFETENSORS_SUFFIX):
        with np.load(path) as arrays:
            return {key: arrays[key] for key in arrays.files}
    header, start = _safetensors_header(path)
    data = np.memmap(path, dtype=np.uint8, mode='r')
    out = {}
    for key, entry in header.items():
        begin, end = entry['data_offsets']
        dtype = _safetensors_dtype(entry['dtype'])
        array = data[start + begin:start + end].view(dtype)
        if array.size != int(np.prod(entry['shape'])):
            raise ValueError(f'{key}: {end - begin} bytes do not hold {entry["dtype"]} {entry["shape"]}')
        out[key] = array.reshape(entry['shape'])
    return out


def torchvision_order(keys) -> list[tuple[str, str]]:
    """(weight key, bias key) of every layer of a torchvision state dict: convolutions, then
    linear layers, each by index. Keys of other forms are ignored (e.g. batch-norm statistics)."""
    found = {}
    for key in keys:
        match = _TORCHVISION_KEY.match(key)
        if match and match.group(3) == 'weight':
            section, index = match.group(1), int(match.group(2))
            found[(section != 'features', index)] = (key, f'{section}.{index}.bias')
    return [found[position] for position in sorted(found)]


def init_from_problem(path: str, model_name: str) -> str | None:
    """Why ``init_from=path`` cannot start a ``model_name`` network, or None ('' = from scratch).
    Shapes are checked against the model once the data is known (``training.init_from``)."""
    if not path:
        return None
    expanded = paths.expand(path)
    if not os.path.exists(expanded):
        return (f"init_from={path!r} does not exist; name a flat run's workdir, a checkpoint folder or a "
                ".npz or .safetensors of ImageNet weights (--config.init_from=...; '' starts from scratch).")
    if os.path.isdir(expanded):
        if checkpoint_state_dir(expanded) is None:
            return (f"init_from={path!r} holds no checkpoint: name a flat run's workdir (with "
                    f'checkpoints/{FLAT_STAGE}/), a stage\'s checkpoint folder or one step\'s.')
        return None
    if not is_torchvision_file(expanded):
        return (f'init_from={path!r} is a file but not a {" or ".join(TORCHVISION_SUFFIXES)} '
                '(torchvision state-dict names, docs/methods.md).')
    if model_name not in TORCHVISION_LAYERS:
        return (f'init_from={path!r} holds torchvision weights, which map onto '
                f'{" or ".join(TORCHVISION_LAYERS)}, not model.name={model_name!r}.')
    try:
        keys = file_shapes(expanded)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        return f'init_from={path!r} is not a readable {os.path.splitext(expanded)[1]} file: {e}'
    layers = torchvision_order(keys)
    expected = len(TORCHVISION_LAYERS[model_name])
    if len(layers) != expected:
        return (f'init_from={path!r} has {len(layers)} convolution/linear layers '
                f'(features.<i>.weight, classifier.<j>.weight); {model_name} has {expected}.')
    missing = [bias for _, bias in layers if bias not in keys]
    if missing:
        return f'init_from={path!r} lacks {missing[0]}.'
    return None


def torchvision_layer(weight: np.ndarray, bias: np.ndarray, flatten_hw: tuple[int, int] | None = None
                      ) -> dict[str, np.ndarray]:
    """One torchvision layer as ours: a conv's OIHW weight as HWIO, a linear's [out, in] as
    [in, out]; ``flatten_hw`` (H, W) for the linear layer that reads a (C, H, W) flattened feature
    map, whose rows we read in (H, W, C) order (NHWC flatten)."""
    if weight.ndim == 4:
        return {'kernel': weight.transpose(2, 3, 1, 0), 'bias': bias}
    if flatten_hw is not None:
        height, width = flatten_hw
        out = weight.shape[0]
        weight = weight.reshape(out, -1, height, width).transpose(0, 2, 3, 1).reshape(out, -1)
    return {'kernel': weight.T, 'bias': bias}


def torchvision_shapes(weight_shape: tuple[int, ...], bias_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The shapes ``torchvision_layer`` gives a layer of these shapes."""
    if len(weight_shape) == 4:
        out, fan_in, kh, kw = weight_shape
        return {'kernel': (kh, kw, fan_in, out), 'bias': tuple(bias_shape)}
    return {'kernel': tuple(reversed(weight_shape)), 'bias': tuple(bias_shape)}

"""Where ``config.init_from`` points, read without jax: a trained flat model of this project (a
workdir, a stage's checkpoint folder or one step's) or ImageNet weights in torchvision's layout.

The torchvision layout (docs/methods.md, "Start from a trained network"): a .npz whose keys are a
state dict's, ``features.<i>.weight`` [out, in / groups, kh, kw] and ``.bias`` [out] for the
convolutions, ``classifier.<j>.weight`` [out, in] and ``.bias`` for the fully connected layers,
the first of which reads the last feature map flattened in (C, H, W) order. The k-th layer in
index order is our model's k-th (``TORCHVISION_LAYERS``); the conversion to our NHWC layers is
``torchvision_layer``. Everything here is numpy and the file system, so a config is checked in
well under a second.
"""
import os
import re
import zipfile

import numpy as np

from nofe_jax import paths

# A flat run's stage: the checkpoint a workdir stands for.
FLAT_STAGE = 'base'
NPZ_SUFFIX = '.npz'

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
    return path.endswith(NPZ_SUFFIX)


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
                ".npz of ImageNet weights (--config.init_from=...; '' starts from scratch).")
    if os.path.isdir(expanded):
        if checkpoint_state_dir(expanded) is None:
            return (f"init_from={path!r} holds no checkpoint: name a flat run's workdir (with "
                    f'checkpoints/{FLAT_STAGE}/), a stage\'s checkpoint folder or one step\'s.')
        return None
    if not is_torchvision_file(expanded):
        return f'init_from={path!r} is a file but not a {NPZ_SUFFIX} (torchvision state-dict names, docs/methods.md).'
    if model_name not in TORCHVISION_LAYERS:
        return (f'init_from={path!r} holds torchvision weights, which map onto '
                f'{" or ".join(TORCHVISION_LAYERS)}, not model.name={model_name!r}.')
    try:
        keys = npz_shapes(expanded)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        return f'init_from={path!r} is not a readable .npz: {e}'
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

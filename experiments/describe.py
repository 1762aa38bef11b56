r"""Parameter counts and forward FLOPs of every model a config's recipe would train.

  python -m experiments.describe --config=experiments/configs/cifar100_base.py:model=alexnet_c100
  python -m experiments.describe --config=experiments/configs/quickstart.py --json

Builds the models from shapes alone: no training, no data loaded (classes and the input shape
come from ``config.data``; an .npz source is opened for its shapes); the recipe says which models
it trains (its ``build_models``): 'base' -> {'base'}; 'nofe' -> {'generalist' (K-way), 'nofe' (K
experts of c_max = ceil(C / K) outputs, a balanced layout)}; 'dmde' -> {'bases', 'fusion'} (windows
over the classes in label order); 'deepme' -> {'bases', 'gate'} (T even groups). FLOPs are XLA's
cost analysis of the eval-mode forward pass, per image, lowered with XLA's convolutions and not
compiled: the model's own arithmetic (in-bounds convolution taps), the same on every backend.
``--json`` prints exactly one JSON object on stdout: {model: {"params", "trainable_params",
"flops_per_image"}}.
"""
import json
import sys

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from nofe_jax.data import pipeline, sources
from nofe_jax.models import layers, registry
from nofe_jax import methods

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (path[:arg]).',
                                          lock_config=True)
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object instead of a table.')
flags.mark_flags_as_required(['config'])

# tfds name -> (classes, source image shape).
_TFDS_SHAPES = {
    'cifar100': (100, (32, 32, 3)),
    'cifar10': (10, (32, 32, 3)),
    'imagenet2012': (1000, (227, 227, 3)),
    'fashion_mnist': (10, (28, 28, 1)),
    'mnist': (10, (28, 28, 1)),
}
_BATCH = 2  # images per compiled forward pass; FLOPs are divided by it


def data_shape(data: ml_collections.ConfigDict) -> tuple[int, tuple[int, int, int]]:
    """(num_classes, preprocessed image shape) that ``config.data`` yields, without loading it."""
    if data.source == 'synthetic':
        num_classes, shape = data.synthetic_classes, tuple(data.synthetic_shape)
    elif data.source == 'digits':
        num_classes, shape = 10, (8, 8, 1)
    elif data.source == 'idx':  # fashion-MNIST / MNIST IDX files
        num_classes, shape = 10, (28, 28, 1)
    elif data.source == 'npz':  # the archive's shapes; its images are read, nothing is decoded
        dataset = sources.load_npz_dataset(data.path)
        num_classes, shape = dataset.num_classes, dataset.image_shape
    elif data.source == 'tfds' and data.name in _TFDS_SHAPES:
        num_classes, shape = _TFDS_SHAPES[data.name]
        if data.image_size:
            shape = (data.image_size, data.image_size, shape[2])
    else:
        raise ValueError(f'Cannot tell classes and image shape of data.source={data.source!r} '
                         f'name={data.name!r} without loading it; known: synthetic, digits, idx, npz, '
                         f'tfds {", ".join(sorted(_TFDS_SHAPES))}.')
    return int(num_classes), pipeline.Preprocess.from_config(data.preprocess).output_shape(shape)


def _flops(cost) -> float:
    """'flops' of a cost analysis (a dict, or a list of one dict in older jax)."""
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get('flops', float('nan')))


def describe_model(model, image_shape: tuple[int, ...], extra_args: tuple = ()) -> dict:
    """Parameter counts (eval_shape) and per-image forward FLOPs of one model: XLA's cost analysis
    of the lowered program with XLA's convolutions and pools (`layers.xla_lowerings`), so the count is
    the model's, not the backend's lowering's; compiling would take seconds and change only fusions."""
    x = jax.ShapeDtypeStruct((_BATCH, *image_shape), jnp.float32)
    variables = jax.eval_shape(lambda x, *a: model.init(jax.random.key(0), x, *a, train=False), x, *extra_args)
    counts = registry.count_parameters(variables)
    forward = jax.jit(lambda v, x, *a: model.apply(v, x, *a, train=False))
    with layers.xla_lowerings():
        cost = forward.lower(variables, x, *extra_args).cost_analysis()
    return {'params': counts['total'], 'trainable_params': counts['trainable'],
            'flops_per_image': _flops(cost) / _BATCH}


def describe(config: ml_collections.ConfigDict) -> dict[str, dict]:
    """{model: {'params', 'trainable_params', 'flops_per_image'}} for every model the recipe trains."""
    num_classes, image_shape = data_shape(config.data)
    return {name: describe_model(model, image_shape, args)
            for name, (model, args) in methods.METHODS[config.recipe].recipe().build_models(
                config, num_classes).items()}


def format_table(config: ml_collections.ConfigDict, result: dict[str, dict]) -> str:
    """A readable table of ``describe``'s result."""
    num_classes, image_shape = data_shape(config.data)
    lines = [f'{config.model.name}, recipe {config.recipe!r}, {num_classes} classes, '
             f'input {"x".join(map(str, image_shape))}',
             f'{"model":<12}{"params":>14}{"trainable":>14}{"MFLOPs/image":>16}']
    for name, row in result.items():
        lines.append(f'{name:<12}{row["params"]:>14,}{row["trainable_params"]:>14,}'
                     f'{row["flops_per_image"] / 1e6:>16,.2f}')
    return '\n'.join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    result = describe(config)
    sys.stdout.write((json.dumps(result) if _JSON.value else format_table(config, result)) + '\n')


if __name__ == '__main__':
    app.run(main)

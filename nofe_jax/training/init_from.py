"""Starting a stage's networks from a trained flat model (``config.init_from``): reading it (a
checkpoint of this project or torchvision ImageNet weights, ``init_files``), checking that it fits
the config's base model, and loading every layer that fits into a stage's fresh variables.

A layer is a parameter subtree such as ``trunk/conv1`` ({'kernel', 'bias'}). It loads when the
source has it under the same name with the same shapes; otherwise it keeps its fresh
initialisation, and the stage's log line says which and why.
"""
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util

from nofe_jax import paths, reporting
from nofe_jax.training import init_files

# {collection: {layer: {leaf: value}}}, e.g. {'params': {'trunk/conv1': {'kernel': ..., 'bias': ...}}}
Layers = dict[str, dict[str, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Fit:
    """Where a stage's variables hold the flat model, and whether its classifier may load."""
    mount: tuple[str, ...] = ()  # the path of the flat model's tree inside the stage's
    stacked: bool = False  # leaves carry a leading group axis: every group gets the same weights
    keep_classifier: bool = True  # False: the stage's outputs mean other things than the source's
    # Stacked group networks over a source of the run's own ``num_classes`` classes: [G, m_max]
    # the class each class slot holds (-1: padded). Each slot's classifier column starts from the
    # source's column of its class; padded slots and a not-in-group output stay fresh.
    slot_classes: np.ndarray | None = dataclasses.field(default=None, compare=False)
    num_classes: int = 0


FLAT = Fit()
# The NofE generalist: its outputs are specialties, whatever their number.
RELABELLED = Fit(keep_classifier=False)
# Stacked base networks (``models.group_networks.GroupNetworks``) with fresh classifiers: DMDE's.
STACKED_GROUPS = Fit(mount=('base',), stacked=True, keep_classifier=False)


def stacked_groups(slot_classes: np.ndarray, slot_mask: np.ndarray, num_classes: int) -> Fit:
    """STACKED_GROUPS whose class slots start from their classes' columns when the source is a
    flat model of the same ``num_classes`` classes (a group network's class is the source's):
    DeepME's bases, which have no not-in-group output to learn from scratch."""
    return dataclasses.replace(STACKED_GROUPS, slot_classes=np.where(slot_mask, slot_classes, -1),
                               num_classes=num_classes)


def layers_of(variables: dict, leaf_fn: Callable[[Any], Any] = lambda leaf: leaf) -> Layers:
    """The variables of each collection grouped by layer ('/'-joined path without the leaf)."""
    out: Layers = {}
    for collection, tree in variables.items():
        for path, leaf in traverse_util.flatten_dict(tree).items():
            layer = out.setdefault(collection, {}).setdefault('/'.join(path[:-1]), {})
            layer[path[-1]] = leaf_fn(leaf)
    return out


def classifier_layer(layer_names) -> str | None:
    """The classifier among a base model's layers: the last layer of its head (in the order of
    its params, which is by name, as ``models.group_networks.classifier_name`` reads it; None: no
    head)."""
    head = [name for name in layer_names if name.startswith('head/')]
    return head[-1] if head else None


# ----------------------------------------------------------------------------- reading a source

def _checkpoint_metadata(state_dir: str) -> dict:
    # The item's handler, not a Checkpointer: the step's own metadata is not needed (nor warned of).
    return ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir)).tree


def _checkpoint_variables(tree: dict) -> dict:
    """A train state's tree -> the model's variables {'params', and its other collections}."""
    return {'params': tree['params'], **tree['model_state']}


def torchvision_as_our_shapes(shapes: dict[str, tuple[int, ...]], model_name: str) -> Layers:
    """A torchvision state dict's {key: shape} as the shapes of our layers of ``model_name``."""
    order = init_files.torchvision_order(shapes)
    return {'params': {ours: init_files.torchvision_shapes(shapes[weight], shapes[bias])
                       for ours, (weight, bias) in zip(init_files.TORCHVISION_LAYERS[model_name], order)}}


def source_shapes(path: str, model_name: str) -> Layers:
    """The shapes of every layer of the source, as our layers, from metadata and headers only."""
    if init_files.is_torchvision_file(path):
        return torchvision_as_our_shapes(init_files.file_shapes(path), model_name)
    tree = _checkpoint_variables(_checkpoint_metadata(init_files.checkpoint_state_dir(path)))
    return layers_of(tree, lambda meta: tuple(meta.shape))


def _read_torchvision(path: str, model_name: str) -> Layers:
    layers, channels = {}, None  # channels: the last convolution's, which the first linear reads
    arrays = init_files.read_arrays(path)
    order = init_files.torchvision_order(arrays)
    for ours, (weight_key, bias_key) in zip(init_files.TORCHVISION_LAYERS[model_name], order):
        weight = arrays[weight_key]
        flatten_hw = None
        if weight.ndim == 2 and channels:
            side = math.isqrt(weight.shape[1] // channels)
            if side * side * channels != weight.shape[1]:
                raise ValueError(f'{weight_key} reads {weight.shape[1]} features, not a square map of '
                                 f'the last convolution\'s {channels} channels.')
            flatten_hw, channels = (side, side), None
        elif weight.ndim == 4:
            channels = weight.shape[0]
        layers[ours] = init_files.torchvision_layer(weight, arrays[bias_key], flatten_hw)
    return {'params': layers}


def read_checkpoint_variables(state_dir: str) -> dict:
    """The model variables {'params', and its other collections} of a checkpoint's ``state``
    folder (``init_files.checkpoint_state_dir``), as numpy arrays."""
    tree = _checkpoint_metadata(state_dir)
    abstract = jax.tree.map(lambda meta: jax.ShapeDtypeStruct(meta.shape, meta.dtype),
                            {'params': tree['params'], 'model_state': tree['model_state']})
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)
    # Only the model's variables: the optimiser state and rng of the source stay on disk.
    restored = ocp.PyTreeCheckpointHandler().restore(epath.Path(state_dir), args=ocp.args.PyTreeRestore(
        item=abstract, restore_args=as_numpy, partial_restore=True))
    return _checkpoint_variables(restored)


def read_source(path: str, model_name: str) -> Layers:
    """Every layer of the source as ours (numpy arrays)."""
    if init_files.is_torchvision_file(path):
        return _read_torchvision(path, model_name)
    return layers_of(read_checkpoint_variables(init_files.checkpoint_state_dir(path)))


# ----------------------------------------------------------------------------- checking the fit

def _shapes_text(shapes: dict[str, tuple]) -> str:
    return ', '.join(f'{leaf} {list(shape)}' for leaf, shape in sorted(shapes.items()))


def fit_problem(path: str, model_name: str, source: Layers, model: Layers) -> str | None:
    """Why the source (``source_shapes``) cannot start ``model_name`` (``model``: the base
    model's layer shapes, C outputs): a layer other than the classifier of another shape, or no
    layer in common. None when it fits."""
    classifier = classifier_layer(model.get('params', {}))
    common = 0
    for collection, layers in model.items():
        for layer, shapes in layers.items():
            theirs = source.get(collection, {}).get(layer)
            if theirs is None:
                continue
            if theirs != shapes and layer != classifier:
                return (f'init_from={path!r} does not fit model.name={model_name!r}: layer {layer} is '
                        f'{_shapes_text(theirs)} there, {_shapes_text(shapes)} here.')
            common += 1
    if not common:
        return (f'init_from={path!r} has no layer of model.name={model_name!r} (its layers: '
                f'{", ".join(list(source.get("params", {}))[:4])}, ...): is it a run of another model?')
    return None


def model_shapes(model, input_shape: tuple[int, ...]) -> Layers:
    """Every layer's shapes of ``model`` on images of ``input_shape`` [H, W, C] (no compilation)."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    return layers_of(variables, lambda leaf: tuple(leaf.shape))


# ----------------------------------------------------------------------------- loading

def _fresh_reason(layer: str, theirs: dict | None, ours: dict, fit: Fit, classifier: str | None) -> str | None:
    """Why ``layer`` keeps its fresh initialisation (None: it loads)."""
    if layer == classifier and not fit.keep_classifier:
        return 'the classifier: new outputs'
    if theirs is None:
        return 'not in the source'
    our_shapes = {leaf: tuple(np.shape(v))[1 if fit.stacked else 0:] for leaf, v in ours.items()}
    their_shapes = {leaf: tuple(np.shape(v)) for leaf, v in theirs.items()}
    if their_shapes != our_shapes:
        return f'{_shapes_text(their_shapes)} there, {_shapes_text(our_shapes)} here'
    return None


def _takes_class_columns(theirs: dict | None, ours: dict, fit: Fit) -> bool:
    """Whether the stacked group classifier ``ours`` starts from the columns of its classes in
    ``theirs``: a source classifier over the run's classes, of the same input width."""
    if fit.slot_classes is None or theirs is None or set(theirs) != {'kernel', 'bias'}:
        return False
    width = np.shape(ours['kernel'])[1]  # [G, d, outputs]
    return (tuple(np.shape(theirs['kernel'])) == (width, fit.num_classes)
            and tuple(np.shape(theirs['bias'])) == (fit.num_classes,))


def _class_columns(ours: dict, theirs: dict, slot_classes: np.ndarray) -> dict:
    """The stacked classifier ``ours`` ({'kernel' [G, d, outputs], 'bias' [G, outputs], ...}) with
    slot j of network g set to the source's kernel column and bias of class ``slot_classes[g, j]``;
    padded slots (-1), outputs past the slots (not-in-group) and other leaves (w0) keep ours."""
    m_max = slot_classes.shape[1]
    held = jnp.asarray(slot_classes >= 0)
    classes = jnp.asarray(np.maximum(slot_classes, 0))
    kernel, bias = ours['kernel'], ours['bias']
    their_kernel = jnp.moveaxis(jnp.asarray(theirs['kernel'], kernel.dtype)[:, classes], 0, 1)  # [G, d, m_max]
    their_bias = jnp.asarray(theirs['bias'], bias.dtype)[classes]  # [G, m_max]
    return {**ours,
            'kernel': kernel.at[..., :m_max].set(jnp.where(held[:, None], their_kernel, kernel[..., :m_max])),
            'bias': bias.at[..., :m_max].set(jnp.where(held, their_bias, bias[..., :m_max]))}


def load_layers(fresh: dict, source: Layers, fit: Fit) -> tuple[dict, list[str], list[str]]:
    """(variables, loaded layers, 're-initialised layer (why)' lines): ``fresh`` with every layer
    that fits replaced by the source's (copied into every group when ``fit.stacked``)."""
    prefix = ''.join(f'{name}/' for name in fit.mount)
    fresh_layers = layers_of(fresh)
    classifier = classifier_layer(layer.removeprefix(prefix) for layer in fresh_layers.get('params', {})
                                  if layer.startswith(prefix))
    out, loaded, renewed = {}, [], {}
    for collection, tree in fresh.items():
        flat = traverse_util.flatten_dict(tree)
        for layer, ours in fresh_layers.get(collection, {}).items():
            if not layer.startswith(prefix):
                continue
            name, path = layer.removeprefix(prefix), tuple(layer.split('/'))
            theirs = source.get(collection, {}).get(name)
            if name == classifier and _takes_class_columns(theirs, ours, fit):
                for leaf, value in _class_columns(ours, theirs, fit.slot_classes).items():
                    flat[(*path, leaf)] = value
                loaded.append(f"{name} (its classes' columns)")
                continue
            reason = _fresh_reason(name, theirs, ours, fit, classifier)
            if reason:
                renewed.setdefault(name, reason)
                continue
            for leaf, value in ours.items():
                flat[(*path, leaf)] = jnp.broadcast_to(jnp.asarray(theirs[leaf], value.dtype), value.shape)
            loaded.append(name)
        out[collection] = traverse_util.unflatten_dict(flat)
    return out, loaded, [f'{name} ({why})' for name, why in renewed.items()]


def describe_load(path: str, loaded: list[str], renewed: list[str], fit: Fit, fresh: dict) -> str:
    """One line: which layers came from ``path`` and which were re-initialised."""
    where = ''
    if fit.stacked:
        groups = jax.tree.leaves(fresh['params'])[0].shape[0]
        where = f' into each of {groups} networks'
    return (f'init_from {path}: loaded {len(loaded)} layers{where} ({", ".join(loaded)}); '
            f're-initialised {", ".join(renewed) if renewed else "none"}')


def loader(path: str, model_name: str, fit: Fit, stage_name: str) -> Callable[[dict], dict]:
    """A ``loop.Stage.init_variables`` hook: reads ``path`` (only when the stage starts fresh; a
    resumed stage restores its checkpoint instead) and loads every layer that fits."""
    def init(fresh: dict) -> dict:
        source = read_source(paths.expand(path), model_name)
        variables, loaded, renewed = load_layers(fresh, source, fit)
        reporting.log(f'[{stage_name}] {describe_load(path, loaded, renewed, fit, fresh)}')
        return variables
    return init

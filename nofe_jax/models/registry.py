"""Model registry: one explicit dict from name to constructors, plus builders and a parameter counter."""

import dataclasses
import functools
import math
from types import MappingProxyType
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import numpy as np

from nofe_jax.models import alexnet, nin, resnet, tiny, vgg
from nofe_jax.models.experts import ExpertBranches, ExpertLayout
from nofe_jax.models.names import GENERALIST_HEADS
from nofe_jax.models.nofe import BranchGeneralist, NetworkOfExperts
from nofe_jax.models.trunk_head import option_names


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Constructors and facts for one architecture."""

    base: Callable[..., nn.Module]  # (num_outputs, **overrides) -> base model with `trunk` and `head`
    trunk: Callable[..., nn.Module]  # (**overrides) -> the trunk the NofE shares
    branch: Callable[..., nn.Module] | None  # (num_outputs, **overrides) -> one expert branch; None: no NofE
    input_shape: tuple[int, int, int]  # (H, W, C) the model expects
    pre_branch: Callable[[jax.Array], jax.Array] | None = None  # parameter-free, between trunk and branches
    # Trunk options where the release's NofE differs from its generalist (no parameters change).
    nofe_trunk_defaults: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    # Table 4: the base's `extra_layers` that add one expert branch's conv layers (or residual blocks);
    # "deeper" adds K times that, "deeper_wider" once. None: the base model has no width/depth options.
    branch_extra_layers: int | None = None


MODELS: dict[str, ModelSpec] = {
    "alexnet_c100": ModelSpec(
        base=alexnet.AlexNetC100,
        trunk=alexnet.AlexNetC100Trunk,
        branch=alexnet.AlexNetC100Branch,
        input_shape=(32, 32, 3),
        pre_branch=alexnet.alexnet_c100_norm3,
        branch_extra_layers=1,
    ),
    "alexnet_quick_c100": ModelSpec(
        base=alexnet.AlexNetQuickC100,
        trunk=alexnet.AlexNetQuickC100Trunk,
        branch=alexnet.AlexNetQuickC100Branch,
        input_shape=(32, 32, 3),
        branch_extra_layers=1,
    ),
    "vgg11_c100": ModelSpec(
        base=vgg.VGG11C100,
        trunk=vgg.VGG11C100Trunk,
        branch=vgg.VGG11C100Branch,
        input_shape=(32, 32, 3),
        branch_extra_layers=2,
    ),
    "nin_c100": ModelSpec(
        base=nin.NINC100,
        trunk=nin.NINC100Trunk,
        branch=nin.NINC100Branch,
        input_shape=(26, 26, 3),
        nofe_trunk_defaults=MappingProxyType({"pool2": "max"}),
        branch_extra_layers=1,
    ),
    "resnet56_c100": ModelSpec(
        base=resnet.ResNet56C100,
        trunk=resnet.ResNet56C100Trunk,
        branch=resnet.ResNet56C100Branch,
        input_shape=(28, 28, 3),
        branch_extra_layers=1,
    ),
    "alexnet": ModelSpec(
        base=alexnet.AlexNet,
        trunk=alexnet.AlexNetTrunk,
        branch=alexnet.AlexNetBranch,
        input_shape=(227, 227, 3),
    ),
    "vgg16": ModelSpec(
        base=vgg.VGG16,
        trunk=vgg.VGG16Trunk,
        branch=None,
        input_shape=(224, 224, 3),
    ),
    "tiny_cnn": ModelSpec(
        base=tiny.TinyCNN,
        trunk=tiny.TinyCNNTrunk,
        branch=tiny.TinyCNNBranch,
        input_shape=(8, 8, 1),
    ),
}


def get_model_spec(name: str) -> ModelSpec:
    """The spec registered under `name`; ValueError listing the known names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_base(name: str, num_outputs: int, **overrides: Any) -> nn.Module:
    """Base model `name` with a `num_outputs`-way head; overrides set model fields (dtype, caffe_pooling, ...)."""
    return get_model_spec(name).base(num_outputs, **overrides)


def generalist(name: str, num_experts: int, head: str = "base", **overrides: Any) -> nn.Module:
    """The NofE generalist: model `name` with a K-way (specialty) head.

    head='base' is the release's (the base model's classifier); head='branch' is one expert branch
    on the base trunk, so the experts can start from its layers (`branch_hidden_layers`).
    """
    if head == "base":
        return build_base(name, num_experts, **overrides)
    if head != "branch":
        raise ValueError(f"unknown generalist head {head!r}; choose one of {', '.join(GENERALIST_HEADS)}")
    spec = _spec_with_branch(name)
    trunk_kwargs, branch_kwargs = _split_overrides(name, spec, overrides)
    return BranchGeneralist(trunk=spec.trunk(**trunk_kwargs), branch=spec.branch(num_experts, **branch_kwargs),
                            pre_branch=spec.pre_branch)


def branch_hidden_layers(name: str) -> frozenset[str]:
    """The expert branch's layers whose parameters do not depend on its number of outputs.

    Found by comparing shape-only inits with one and two outputs, so no model has to declare
    which layer is its classifier.
    """
    spec = _spec_with_branch(name)
    features = jax.eval_shape(lambda x: spec.trunk().init_with_output(jax.random.key(0), x, train=False)[0],
                              jax.ShapeDtypeStruct((1, *spec.input_shape), jax.numpy.float32))
    if spec.pre_branch is not None:
        features = jax.eval_shape(spec.pre_branch, features)

    def layer_shapes(num_outputs: int) -> dict[str, Any]:
        variables = jax.eval_shape(
            lambda f: spec.branch(num_outputs).init(jax.random.key(0), f, train=False), features)
        return {layer: jax.tree.map(lambda leaf: leaf.shape, tree)
                for tree in variables.values() for layer, tree in tree.items()}

    one, two = layer_shapes(1), layer_shapes(2)
    return frozenset(layer for layer in one if one[layer] == two[layer])


def _spec_with_branch(name: str) -> ModelSpec:
    """The spec of `name`; ValueError naming the models with an expert branch if it has none."""
    spec = get_model_spec(name)
    if spec.branch is None:
        raise ValueError(f"model {name!r} has no expert branch; models with one: "
                         f"{', '.join(sorted(n for n, s in MODELS.items() if s.branch is not None))}")
    return spec


def _split_overrides(name: str, spec: ModelSpec, overrides: dict[str, Any],
                     trunk_defaults: Mapping[str, Any] = MappingProxyType({})) -> tuple[dict, dict]:
    """(trunk kwargs, branch kwargs): each override goes to the module(s) with a field of its name."""
    trunk_fields, branch_fields = option_names(spec.trunk), option_names(spec.branch)
    unknown = set(overrides) - trunk_fields - branch_fields
    if unknown:
        raise ValueError(f"unknown overrides {sorted(unknown)} for {name!r}; "
                         f"trunk fields {sorted(trunk_fields)}, branch fields {sorted(branch_fields)}")
    trunk_kwargs = {**trunk_defaults, **{k: v for k, v in overrides.items() if k in trunk_fields}}
    return trunk_kwargs, {k: v for k, v in overrides.items() if k in branch_fields}


def build_nofe(
    name: str, layout: ExpertLayout | int, c_max: int | None = None, **overrides: Any
) -> NetworkOfExperts:
    """NofE for `name` with the experts of `layout` (or `layout` experts of `c_max` outputs each).

    Each override goes to the trunk and/or branch that has a field of that name; the release's
    NofE trunk options (e.g. NIN's MAX pool2) are the defaults.
    """
    spec = _spec_with_branch(name)
    if isinstance(layout, ExpertLayout):
        if c_max is not None and c_max != layout.c_max:
            raise ValueError(f"c_max={c_max} contradicts the layout's c_max={layout.c_max}")
        num_experts, c_max = layout.num_experts, layout.c_max
    else:
        if c_max is None:
            raise ValueError("c_max is required when layout is a number of experts")
        num_experts = layout
    trunk_kwargs, branch_kwargs = _split_overrides(name, spec, overrides, spec.nofe_trunk_defaults)
    return NetworkOfExperts(
        trunk=spec.trunk(**trunk_kwargs),
        experts=ExpertBranches(spec.branch(c_max, **branch_kwargs), num_experts),
        pre_branch=spec.pre_branch,
    )


def count_parameters(variables: Mapping[str, Any]) -> dict[str, int]:
    """Parameter counts: total = 'params' + 'frozen', trainable = 'params' (arrays or shape structs)."""

    def size(tree: Any) -> int:
        return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(tree)))

    trainable = size(variables.get("params", {}))
    return {"total": trainable + size(variables.get("frozen", {})), "trainable": trainable}


# --- Table 4: flat base models matched to the NofE's parameter count -------------------------

PARAM_MATCHED_VARIANTS = ("deeper", "wider", "deeper_wider")


def _total_parameters(model: nn.Module, input_shape: tuple[int, ...], *extra_args: Any) -> int:
    """Total parameter count of `model` from a shape-only init (no compilation, no arrays)."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jax.numpy.float32)
    variables = jax.eval_shape(lambda x, *a: model.init(jax.random.key(0), x, *a, train=False), x, *extra_args)
    return count_parameters(variables)["total"]


def base_parameter_count(name: str, num_outputs: int, **overrides: Any) -> int:
    """Total parameters of base model `name` with a `num_outputs`-way head (eval_shape only)."""
    return _total_parameters(build_base(name, num_outputs, **overrides), get_model_spec(name).input_shape)


def nofe_parameter_count(name: str, num_classes: int, num_experts: int, **overrides: Any) -> int:
    """Total parameters of the balanced NofE: `num_experts` branches of c_max = ceil(C / K) outputs."""
    model = build_nofe(name, num_experts, math.ceil(num_classes / num_experts), **overrides)
    slots = jax.ShapeDtypeStruct((num_classes,), jax.numpy.int32)
    return _total_parameters(model, get_model_spec(name).input_shape, slots)


def param_matched_overrides(name: str, num_classes: int, num_experts: int, variant: str) -> dict[str, Any]:
    """Base-model overrides for the paper's Table 4 baselines against the K-expert NofE.

    'deeper': `extra_layers` = K times the conv layers (or residual blocks) of one expert branch,
    width unchanged (the paper, Sec. 4.1: "we add to the original base network K = 10 times the
    number of convolutional layers (or residual blocks) contained in one branch");
    'wider': the `width_multiplier` (a multiple of 0.01) whose total parameter count is closest to
    the NofE's; 'deeper_wider': one branch's layers added, then widened to the NofE's count (Table 4).
    Bisection on eval_shape counts (about ten shape passes).
    """
    spec = get_model_spec(name)
    if spec.branch_extra_layers is None:
        raise ValueError(f"model {name!r} has no width/depth options; models with them: "
                         f"{', '.join(sorted(n for n, s in MODELS.items() if s.branch_extra_layers is not None))}")
    if variant not in PARAM_MATCHED_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(PARAM_MATCHED_VARIANTS)}")
    extra_layers = {"deeper": num_experts * spec.branch_extra_layers, "wider": 0,
                    "deeper_wider": spec.branch_extra_layers}[variant]
    if variant == "deeper":
        return {"width_multiplier": 1.0, "extra_layers": extra_layers}
    target = nofe_parameter_count(name, num_classes, num_experts)

    @functools.cache
    def count(percent: int) -> int:
        return base_parameter_count(name, num_classes, width_multiplier=percent / 100, extra_layers=extra_layers)

    # Counts never decrease with the width: find the smallest multiplier reaching the target.
    low, high = 10, 100
    while count(high) < target:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if count(middle) >= target else (middle, high)
    best = min((low, high), key=lambda percent: abs(count(percent) - target))
    return {"width_multiplier": best / 100, "extra_layers": extra_layers}

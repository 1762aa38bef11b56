"""Parameter counts, shapes and the trunk/head split of every registered model (shape passes only)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nofe_jax.models import alexnet, names, registry
from nofe_jax.models.trunk_head import option_names

BATCH = 2

# Release generalist counts (10-way head); vgg16/alexnet: standard ImageNet nets with 1000 outputs.
BASE_COUNTS = {
    "alexnet_c100": (10, 89_578, 89_578),
    "alexnet_quick_c100": (10, 145_578, 145_578),
    "nin_c100": (10, 966_986, 966_986),
    "vgg11_c100": (10, 7_580_746, 7_580_746),
    "resnet56_c100": (10, 13_627_466, 13_627_466 - 40_960),
    "alexnet": (1000, 60_965_224, 60_965_224),
    "vgg16": (1000, 138_357_544, 138_357_544),
}
# Release NofE totals: (C, c_max, total) with K = 10.
NOFE_COUNTS = {
    "alexnet_c100": (100, 10, 1_129_668),
    "alexnet_quick_c100": (100, 10, 1_274_948),
    "nin_c100": (100, 10, 4_674_596),
    "vgg11_c100": (100, 10, 22_053_028),
    "resnet56_c100": (100, 10, 25_457_316),
    "alexnet": (1000, 100, 40_409_960),
}
TRUNK_SHAPES = {
    "alexnet_c100": (4, 4, 64),
    "alexnet_quick_c100": (4, 4, 64),
    "nin_c100": (6, 6, 192),
    "vgg11_c100": (4, 4, 256),
    "resnet56_c100": (7, 7, 256),
    "alexnet": (6, 6, 256),
    "vgg16": (7, 7, 512),
    "tiny_cnn": (4, 4, 32),
}


def _image(name: str) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((BATCH, *registry.get_model_spec(name).input_shape), jnp.float32)


def _base_shapes(name: str, num_outputs: int, **overrides):
    model = registry.build_base(name, num_outputs, **overrides)
    x = _image(name)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    logits, out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    return variables, logits, out


def _nofe_shapes(name: str, num_classes: int, c_max: int, num_experts: int = 10):
    model = registry.build_nofe(name, num_experts, c_max)
    x, slots = _image(name), jax.ShapeDtypeStruct((num_classes,), jnp.int32)
    variables = jax.eval_shape(lambda x, s: model.init(jax.random.key(0), x, s, train=False), x, slots)
    logits, out = jax.eval_shape(lambda v, x, s: model.apply(v, x, s, train=False), variables, x, slots)
    return variables, logits, out


@pytest.mark.parametrize("name", sorted(BASE_COUNTS))
def test_base_parameter_counts(name):
    num_outputs, total, trainable = BASE_COUNTS[name]
    variables, _, _ = _base_shapes(name, num_outputs)
    assert registry.count_parameters(variables) == {"total": total, "trainable": trainable}


def test_imagenet_alexnet_generalist_count():
    variables, _, _ = _base_shapes("alexnet", 10)
    # Trunk 2,334,080 as in the release; BVLC fc6/fc7 + a 10-way fc8.
    assert registry.count_parameters({"params": variables["params"]["trunk"]})["total"] == 2_334_080
    assert registry.count_parameters(variables)["total"] == 2_334_080 + (9216 + 1) * 4096 + 4097 * 4096 + 4097 * 10


@pytest.mark.parametrize("name", sorted(NOFE_COUNTS))
def test_nofe_parameter_counts(name):
    num_classes, c_max, total = NOFE_COUNTS[name]
    variables, logits, out = _nofe_shapes(name, num_classes, c_max)
    assert registry.count_parameters(variables)["total"] == total
    assert logits.shape == (BATCH, num_classes)
    assert out["branch_logits"].shape == (BATCH, 10, c_max)
    assert out["features"].shape == (BATCH, *TRUNK_SHAPES[name])
    assert set(variables["params"]) == {"trunk", "experts"}


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_trunk_head_split_and_shapes(name):
    variables, logits, out = _base_shapes(name, 10)
    assert set(variables["params"]) == {"trunk", "head"}
    assert logits.shape == (BATCH, 10) and logits.dtype == jnp.float32
    assert out["features"].shape == (BATCH, *TRUNK_SHAPES[name])
    assert out["logits"].shape == (BATCH, 10)
    # The trunk class works standalone and gives the same tree as the base model's trunk.
    trunk = registry.get_model_spec(name).trunk()
    x = _image(name)
    trunk_vars = jax.eval_shape(lambda x: trunk.init(jax.random.key(0), x, train=False), x)
    for collection, tree in trunk_vars.items():
        assert jax.tree.map(lambda a: a.shape, tree) == jax.tree.map(lambda a: a.shape, variables[collection]["trunk"])


@pytest.mark.parametrize("name", sorted(NOFE_COUNTS))
def test_nofe_trunk_matches_generalist_trunk(name):
    base_vars, _, _ = _base_shapes(name, 10)
    nofe_vars, _, _ = _nofe_shapes(name, NOFE_COUNTS[name][0], NOFE_COUNTS[name][1])
    for collection in base_vars:
        shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)  # noqa: E731
        assert shapes(nofe_vars[collection]["trunk"]) == shapes(base_vars[collection]["trunk"])


def test_release_layer_names_in_param_paths():
    variables, _, _ = _base_shapes("resnet56_c100", 10)
    paths = {"/".join(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])}
    assert {"trunk/conv_0/kernel", "trunk/bn_54/scale", "head/fc_55/kernel", "head/fc_55/bias"} <= paths
    frozen = jax.tree_util.tree_leaves_with_path(variables["frozen"])
    assert {"/".join(k.key for k in p): leaf.shape for p, leaf in frozen} == {
        "trunk/proj_19/kernel": (1, 1, 64, 128), "trunk/proj_37/kernel": (1, 1, 128, 256)}
    nofe_vars, _, _ = _nofe_shapes("alexnet_c100", 100, 10)
    assert nofe_vars["params"]["experts"]["branch"]["ip1"]["kernel"].shape == (10, 256, 10)
    assert nofe_vars["params"]["experts"]["branch"]["conv4"]["kernel"].shape == (10, 5, 5, 64, 64)


def test_floor_pooling_switch_changes_feature_size():
    _, _, out = _base_shapes("alexnet_c100", 10, caffe_pooling=False)
    assert out["features"].shape == (BATCH, 3, 3, 64)


def test_nin_nofe_uses_max_pool2_by_default_and_can_override():
    assert registry.build_nofe("nin_c100", 10, 10).trunk.pool2 == "max"
    assert registry.build_nofe("nin_c100", 10, 10, pool2="ave").trunk.pool2 == "ave"
    assert registry.build_base("nin_c100", 10).pool2 == "ave"


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="alexnet_c100.*resnet56_c100"):
        registry.get_model_spec("resnet1000")


def test_build_nofe_rejects_bad_arguments():
    with pytest.raises(ValueError, match="no expert branch"):
        registry.build_nofe("vgg16", 10, 10)
    with pytest.raises(ValueError, match="unknown overrides"):
        registry.build_nofe("tiny_cnn", 10, 10, colour="blue")
    with pytest.raises(ValueError, match="c_max is required"):
        registry.build_nofe("tiny_cnn", 10)


def test_generalist_is_base_with_k_outputs():
    model = registry.generalist("alexnet_c100", 7)
    assert model == registry.build_base("alexnet_c100", 7)
    assert model.num_outputs == 7


# Hand-read from each branch's layer table: every layer but the classifier (whose width is c_max).
BRANCH_HIDDEN_LAYERS = {
    "alexnet_c100": {"conv4"},
    "alexnet_quick_c100": {"conv4", "ip1"},
    "vgg11_c100": {"conv1", "conv2", "fc1", "fc2"},
    "nin_c100": {"conv3", "cccp5"},
    "resnet56_c100": {"conv1", "bn1", "conv2", "bn2"},
    "alexnet": {"conv6", "fc6", "fc7"},
    "tiny_cnn": {"conv1"},
}


@pytest.mark.parametrize("name", sorted(BRANCH_HIDDEN_LAYERS))
def test_branch_hidden_layers_are_all_but_the_classifier(name):
    assert registry.branch_hidden_layers(name) == BRANCH_HIDDEN_LAYERS[name]


def test_branch_generalist_has_the_nofe_trunk_and_one_k_way_branch():
    model = registry.generalist("alexnet_c100", 7, head="branch")
    x = jnp.zeros((BATCH, 32, 32, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    logits, out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert logits.shape == (BATCH, 7) and out["features"].shape == (BATCH, 4, 4, 64)
    nofe_vars, _, _ = _nofe_shapes("alexnet_c100", 100, 10)
    shapes = lambda tree: jax.tree.map(lambda a: a.shape, tree)  # noqa: E731
    assert shapes(variables["params"]["trunk"]) == shapes(nofe_vars["params"]["trunk"])
    assert variables["params"]["branch"]["ip1"]["kernel"].shape == (256, 7)
    with pytest.raises(ValueError, match="unknown generalist head"):
        registry.generalist("alexnet_c100", 7, head="hat")


@pytest.mark.parametrize("name", ["alexnet_c100", "alexnet_quick_c100"])
def test_branch_init_changes_only_the_experts_conv4_filler(name):
    x, slots = jnp.zeros((BATCH, 32, 32, 3)), jnp.zeros((100,), jnp.int32)
    models = {init: registry.build_nofe(name, 10, 10, branch_init=init) for init in names.BRANCH_INITS}
    # Every init in one jitted program: eagerly, each op and each random shape compiles on its own.
    inits = jax.jit(lambda x, slots: {init: model.init(jax.random.key(0), x, slots, train=False)
                                      for init, model in models.items()})(x, slots)
    stds = {}
    for init, variables in inits.items():
        stds[init] = float(np.std(variables["params"]["experts"]["branch"]["conv4"]["kernel"]))
        assert registry.count_parameters(variables)["total"] == NOFE_COUNTS[name][2]
    assert stds["release"] == pytest.approx(0.01, rel=0.02)
    assert stds["msra"] == pytest.approx((2 / (5 * 5 * 64)) ** 0.5, rel=0.02)  # He: keeps the features' scale


def test_the_jax_free_names_match_what_the_registry_builds():
    """Configs are checked against models/names.py without flax; it must name what exists."""
    assert names.MODEL_NAMES == tuple(registry.MODELS)
    assert names.BRANCH_INITS == tuple(alexnet.BRANCH_INITS)
    assert names.BRANCH_INIT_MODELS == tuple(sorted(
        n for n, s in registry.MODELS.items() if s.branch is not None and "branch_init" in option_names(s.branch)))
    assert names.BRANCH_WIDTH_MODELS == tuple(sorted(
        n for n, s in registry.MODELS.items() if s.branch is not None and "branch_width" in option_names(s.branch)))


def test_branch_width_sets_only_the_experts_conv():
    """The tiny experts' capacity: their conv's channels change; the trunk's stay."""
    x, slots = jnp.zeros((BATCH, 8, 8, 1)), jnp.zeros((10,), jnp.int32)
    narrow, default = (registry.build_nofe("tiny_cnn", 5, 2, **overrides).init(jax.random.key(0), x, slots, train=False)
                       for overrides in ({"branch_width": 3}, {}))
    branch = narrow["params"]["experts"]["branch"]
    assert branch["conv1"]["kernel"].shape == (5, 3, 3, 32, 3)  # K stacked 3x3 convs from 32 trunk channels
    assert branch["ip1"]["kernel"].shape == (5, 4 * 4 * 3, 2)
    assert default["params"]["experts"]["branch"]["conv1"]["kernel"].shape[-1] == 16
    assert jax.tree.map(jnp.shape, narrow["params"]["trunk"]) == jax.tree.map(jnp.shape, default["params"]["trunk"])

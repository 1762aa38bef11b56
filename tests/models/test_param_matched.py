"""Table 4 baselines: width/depth options of the CIFAR base models and the parameter matching."""

import jax
import pytest

from experiments.configs import cifar100_param_matched
from nofe_jax.models import registry
from nofe_jax.training import run as run_lib

CIFAR_MODELS = ("alexnet_c100", "alexnet_quick_c100", "vgg11_c100", "nin_c100", "resnet56_c100")
# The release's C=100 base models and the K=10 NofE totals (tests/models/test_registry.py).
BASE_C100 = {"alexnet_c100": 181_828, "resnet56_c100": 13_650_596}
NOFE_C100_K10 = {"alexnet_c100": 1_129_668, "resnet56_c100": 25_457_316}


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_defaults_keep_the_release_model(name):
    default = registry.base_parameter_count(name, 10)
    explicit = registry.base_parameter_count(name, 10, width_multiplier=1.0, extra_layers=0)
    assert default == explicit
    if name in BASE_C100:
        assert registry.base_parameter_count(name, 100) == BASE_C100[name]
        assert registry.nofe_parameter_count(name, 100, 10) == NOFE_C100_K10[name]


def _param_paths(name, **overrides):
    model = registry.build_base(name, 100, **overrides)
    x = jax.ShapeDtypeStruct((1, *registry.get_model_spec(name).input_shape), jax.numpy.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    return {"/".join(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])}


# Conv layers of one expert branch before its output layer (ResNet56: one residual block, 2 convs).
BRANCH_CONVS = {"alexnet_c100": 1, "alexnet_quick_c100": 1, "vgg11_c100": 2, "nin_c100": 2, "resnet56_c100": 2}


def _conv_kernels(paths):
    return {p for p in paths if p.endswith("kernel") and ("conv" in p or "cccp" in p)}


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_deeper_adds_k_times_the_branch_layers(name):
    """Table 4 (Sec. 4.1): K = 10 times the conv layers (or residual blocks) of one branch."""
    overrides = registry.param_matched_overrides(name, 100, 10, "deeper")
    assert overrides["width_multiplier"] == 1.0
    base_paths, deeper_paths = _param_paths(name), _param_paths(name, **overrides)
    assert base_paths < deeper_paths
    assert len(_conv_kernels(deeper_paths - base_paths)) == 10 * BRANCH_CONVS[name]
    # deeper_wider adds one branch's layers.
    once = registry.param_matched_overrides(name, 100, 10, "deeper_wider")["extra_layers"]
    assert len(_conv_kernels(_param_paths(name, extra_layers=once) - base_paths)) == BRANCH_CONVS[name]
    if name in BASE_C100:
        assert registry.base_parameter_count(name, 100, **overrides) > BASE_C100[name]


def test_wider_alexnet_matches_the_nofe():
    overrides = registry.param_matched_overrides("alexnet_c100", 100, 10, "wider")
    assert overrides["extra_layers"] == 0 and overrides["width_multiplier"] > 1
    count = registry.base_parameter_count("alexnet_c100", 100, **overrides)
    assert abs(count - 1_129_668) / 1_129_668 < 0.05
    # A step of the 0.01 grid either way is no closer.
    for step in (-0.01, 0.01):
        neighbour = registry.base_parameter_count(
            "alexnet_c100", 100, width_multiplier=overrides["width_multiplier"] + step)
        assert abs(neighbour - 1_129_668) >= abs(count - 1_129_668)


def test_deeper_wider_alexnet_matches_depth_and_size():
    overrides = registry.param_matched_overrides("alexnet_c100", 100, 10, "deeper_wider")
    assert overrides["extra_layers"] == 1
    count = registry.base_parameter_count("alexnet_c100", 100, **overrides)
    assert abs(count - 1_129_668) / 1_129_668 < 0.05


def test_width_multiplier_scales_channels_and_hidden_fc():
    model = registry.build_base("alexnet_quick_c100", 100, width_multiplier=2.0)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jax.numpy.float32)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)["params"]
    assert params["trunk"]["conv3"]["kernel"].shape == (5, 5, 64, 128)
    assert params["head"]["ip1"]["kernel"].shape == (4 * 4 * 128, 128)


def test_rejects_models_without_options_and_unknown_variants():
    with pytest.raises(ValueError, match="no width/depth options"):
        registry.param_matched_overrides("tiny_cnn", 10, 5, "wider")
    with pytest.raises(ValueError, match="unknown variant"):
        registry.param_matched_overrides("alexnet_c100", 100, 10, "taller")


def test_config_smoke_variant_builds_the_matched_model():
    config = cifar100_param_matched.get_config("model=alexnet_c100,variant=deeper_wider,smoke")
    assert config.recipe == "base" and config.data.source == "synthetic"
    assert config.model.extra_layers == 1 and config.model.width_multiplier > 1
    overrides = run_lib.model_overrides(config)
    assert {k: overrides[k] for k in ("width_multiplier", "extra_layers")} == {
        "width_multiplier": config.model.width_multiplier, "extra_layers": 1}
    count = registry.base_parameter_count(config.model.name, config.data.synthetic_classes,
                                          **{k: v for k, v in overrides.items() if k != "dtype"})
    assert abs(count - 1_129_668) / 1_129_668 < 0.05


def test_model_overrides_skip_defaults():
    config = cifar100_param_matched.get_config("model=alexnet_c100,variant=deeper")
    assert set(run_lib.model_overrides(config)) == {"dtype", "extra_layers"}
    config.model.extra_layers = 0
    assert set(run_lib.model_overrides(config)) == {"dtype"}
    # tiny_cnn has no width/depth options and still builds from the defaults.
    registry.build_base("tiny_cnn", 10, **run_lib.model_overrides(config))

"""The PyTorch AlexNet-C100 and NofE that `train_speed` times beside the JAX ones are the same networks.

Skipped where torch is not installed (an optional extra that CI does not install)."""
import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='torch is an optional extra (pip install -e ".[torch]"), not in CI')

from experiments.benchmarks import torch_reference, train_speed  # noqa: E402  (needs torch)
from nofe_jax.models import experts, registry  # noqa: E402

NUM_CLASSES, NUM_EXPERTS = 100, 10
# Not the identity, so a gather in the wrong order would show.
LAYOUT = experts.expert_layout(np.arange(NUM_CLASSES) % NUM_EXPERTS)


@pytest.fixture(scope='module')
def torch_models() -> dict:
    return torch_reference.build_models(LAYOUT.class_slots, LAYOUT.num_experts, LAYOUT.c_max)


@pytest.fixture(scope='module')
def jax_models() -> dict:
    return train_speed.jax_models('alexnet_c100', LAYOUT)


def test_parameter_counts_equal_the_jax_models(torch_models):
    assert torch_reference.count_parameters(torch_models['base']) == registry.base_parameter_count(
        'alexnet_c100', NUM_CLASSES)
    assert torch_reference.count_parameters(torch_models['nofe']) == registry.nofe_parameter_count(
        'alexnet_c100', NUM_CLASSES, NUM_EXPERTS)


def _torch_state(params: dict) -> dict[str, torch.Tensor]:
    """JAX AlexNet-C100 parameters (base or NofE) as the torch model's state: HWIO kernels as OIHW, and
    the rows of dense kernels that read NHWC-flattened features in NCHW order."""
    state = {}
    for layer, values in params['trunk'].items():
        state[f'trunk.{layer}.weight'] = values['kernel'].transpose(3, 2, 0, 1)
        state[f'trunk.{layer}.bias'] = values['bias']
    if 'head' in params:
        kernel = params['head']['ip1']['kernel']  # [4 * 4 * 64, C], rows in (h, w, c) order
        state['ip1.weight'] = kernel.reshape(4, 4, 64, -1).transpose(3, 2, 0, 1).reshape(kernel.shape[1], -1)
        state['ip1.bias'] = params['head']['ip1']['bias']
    else:
        branch = params['experts']['branch']
        conv4, ip1 = branch['conv4']['kernel'], branch['ip1']['kernel']  # [K, 5, 5, 64, 64], [K, 2 * 2 * 64, c_max]
        state['experts.conv4.weight'] = conv4.transpose(0, 4, 3, 1, 2).reshape(-1, 64, 5, 5)
        state['experts.conv4.bias'] = branch['conv4']['bias'].reshape(-1)
        state['experts.ip1_weight'] = ip1.reshape(-1, 2, 2, 64, ip1.shape[-1]).transpose(0, 3, 1, 2, 4).reshape(
            ip1.shape)
        state['experts.ip1_bias'] = branch['ip1']['bias']
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}


@pytest.mark.parametrize('variant', train_speed.VARIANTS)
def test_same_logits_as_the_jax_model_with_its_weights(variant, torch_models, jax_models):
    model, _, _, extra_args = jax_models[variant]
    images, _ = train_speed.synthetic_batch((32, 32, 3), 4, NUM_CLASSES)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, *extra_args, train=False), images)['params']
    # Weights larger than the release's fillers, so every layer moves the logits.
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda leaf: (0.05 * rng.normal(size=leaf.shape)).astype(np.float32), params)
    expected = np.asarray(model.apply({'params': params}, images, *extra_args, train=False)[0])

    torch_model = torch_models[variant]
    missing, unexpected = torch_model.load_state_dict(_torch_state(params), strict=False)
    assert set(missing) <= {'class_slots'} and not unexpected, (missing, unexpected)
    with torch.no_grad():
        logits = torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize('variant', train_speed.VARIANTS)
def test_one_sgd_step_decreases_the_loss_on_a_fixed_batch(variant):
    model = torch_reference.build_models(LAYOUT.class_slots, LAYOUT.num_experts, LAYOUT.c_max)[variant]
    images, labels = train_speed.synthetic_batch((32, 32, 3), 8, NUM_CLASSES)
    step = torch_reference.make_train_step(model, images, labels)
    before = step()  # each call returns the loss before its step
    assert step() < before


def test_train_speed_runs_both_frameworks_side_by_side(capsys):
    result = train_speed.main(['--models=alexnet_c100', '--batch_size=2', '--iterations=1', '--rounds=1',
                               '--frameworks=jax,torch'])
    (row,) = result['rows']
    assert result['torch_threads'] == torch.get_num_threads() and result['torch_version'] == torch.__version__
    for variant in train_speed.VARIANTS:
        assert row['jax_over_torch_images_per_s'][variant] == (
            row['jax'][f'{variant}_images_per_s'] / row['torch'][f'{variant}_images_per_s'])
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith('alexnet_c100') and 'JAX / PyTorch images/s: base' in line for line in printed)

"""The NofE's defaults: the paper's update rule and its baselines as the paper ran them."""
import pytest

from experiments.configs import cifar100_nofe, fashion_pairs, fashion_tuples, imagenet_nofe
from nofe_jax.methods.nofe import options
from nofe_jax.training import durations

PAPER_CONFIGS = [(cifar100_nofe, f'model={m}') for m in (
    'alexnet_c100', 'alexnet_quick_c100', 'vgg11_c100', 'nin_c100', 'resnet56_c100')] + [
    (imagenet_nofe, 'k=10'), (imagenet_nofe, 'k=40')]


@pytest.mark.parametrize('module, arg', PAPER_CONFIGS)
def test_paper_configs_spectral_baseline_is_unbalanced(module, arg):
    """Table 2 / Table 5: plain spectral clustering of the flat model's confusion."""
    config = module.get_config(f'{arg},specialties=spectral')
    assert config.nofe.spectral_balanced is False
    assert options.defaults().spectral_balanced is False  # the balanced variant is opt-in


@pytest.mark.parametrize('module, arg', PAPER_CONFIGS)
def test_paper_configs_update_every_period_from_the_first_and_rebuild_from_m(module, arg):
    nofe = module.get_config(arg).nofe
    assert nofe.stay_margin == 0.0  # the paper rebuilds the partition from M at every update
    assert nofe.subset_source == 'train'
    # No warm-up beyond one period, on any data size: the first update ends the first period.
    assert durations.to_steps(nofe.update_warmup, steps_per_epoch=500, batch_size=100) == 0


def test_default_warmup_is_not_measured_in_images():
    """A warm-up in images does not scale with the data (50,000 images were 14 epochs of 3,630)."""
    defaults = options.defaults()
    assert 'example' not in defaults.update_warmup and 'example' not in defaults.update_every


@pytest.mark.parametrize('module', [fashion_pairs, fashion_tuples])
def test_benchmarks_offer_the_scratch_nofe(module):
    config = module.get_config('init=scratch')
    assert config.nofe.init == 'scratch' and config.nofe.specialties == 'learned'
    assert options.problems(config) == []

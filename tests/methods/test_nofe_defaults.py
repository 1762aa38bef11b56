"""The NofE's defaults: the paper's update rule and its baselines as the paper ran them."""
import numpy as np
import pytest

from experiments import build_fashion_pairs as pairs
from experiments.configs import cifar100_nofe, fashion_pairs, fashion_styles, fashion_tuples, imagenet_nofe
from nofe_jax import methods
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


@pytest.mark.parametrize('module', [fashion_pairs, fashion_tuples, fashion_styles])
def test_a_held_out_s_leaves_stage_1_most_of_the_training_images(module):
    """12,000-15,000 training images: 2,000 held out, never the 10,000 a fresh S draws."""
    assert module.get_config('subset=holdout').nofe.subset_size == 2000


@pytest.mark.parametrize('module', [fashion_pairs, fashion_tuples, fashion_styles])
def test_benchmarks_offer_the_scratch_nofe(module):
    config = module.get_config('init=scratch')
    assert config.nofe.init == 'scratch' and config.nofe.specialties == 'learned'
    assert options.problems(config) == []


def test_styles_benchmark_config_reads_its_own_data_and_holds_out_its_counts():
    config = fashion_styles.get_config()
    assert config.data.path == '/tmp/fashion_styles.npz' and config.nofe.num_experts == 10
    nofe = config.nofe
    assert (nofe.subset_source, nofe.subset_size, nofe.stay_margin) == ('holdout', 2000, 0.0)
    assert (nofe.update_every, nofe.update_warmup) == ('0.25 epochs', '0.25 epochs')
    tuples_rule = fashion_styles.get_config('subset=train,update_every=0.5,update_warmup=1').nofe
    assert (tuples_rule.subset_size, tuples_rule.update_every, tuples_rule.update_warmup) == (
        10000, '0.5 epochs', '1 epochs')  # a fresh S per update, as on the tuples
    assert config.generalist.train.duration == '2 epochs' and config.experts.train.duration == '4 epochs'
    assert fashion_styles.get_config('base').train.duration == '6 epochs'  # the flat model: same total
    smoke = fashion_styles.get_config('smoke')
    assert (tuple(smoke.data.synthetic_shape), smoke.data.synthetic_classes) == ((28, 28, 1), 100)
    assert options.problems(config) == []


def _small_pairs(path, train_per_class: int, test_per_class: int) -> str:
    """Fashion-MNIST pairs at half resolution (14x28 images): 100 classes with known groupings."""
    arrays = pairs.build(train_per_class=train_per_class, test_per_class=test_per_class)
    for split in ('x_train', 'x_test'):
        x = arrays[split].astype(np.float32)
        n, h, w, c = x.shape
        arrays[split] = x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4)).round().astype(np.uint8)
    np.savez(path, **arrays)
    return str(path)


def test_default_update_rule_learns_the_grouping_of_a_small_many_class_set(tmp_path):
    """2,000 training images of 100 classes: the defaults update from the first epoch on, classes
    move, and the learned specialties carry the true (left/right item) grouping, unlike the random
    start. Under the former 50,000-image warm-up (25 epochs of this set) nothing would move."""
    path = _small_pairs(tmp_path / 'pairs14.npz', train_per_class=20, test_per_class=2)
    config = fashion_pairs.get_config(f'path={path},generalist_epochs=5,expert_epochs=1')
    defaults = options.defaults()
    for field in ('update_every', 'update_warmup', 'stay_margin', 'subset_source', 'subset_size',
                  'min_kappa_z'):
        config.nofe[field] = defaults[field]  # the rule a new user gets
    for stage in (config.generalist, config.experts):
        stage.train.update(eval_every='0 steps', log_every='20 steps', checkpoint_every='0 steps')
    summary = methods.train_and_evaluate(config, str(tmp_path / 'run'))
    history = summary['specialty_history']
    assert [h['epoch'] for h in history] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert history[0]['moved'] > 20 and sum(h['moved'] for h in history) > 50
    learned, random = summary['specialty_nmi'], summary['random_partition_nmi']
    assert max(learned.values()) > 2 * max(random.values())

"""The NofE on real data: experts that learn, a health check that warns, an alternation that
cannot trap itself, held-out counts, every specialty source reported, the pairs benchmark."""
import json

import jax
import numpy as np
import pytest

from experiments import build_fashion_pairs as pairs, describe
from experiments.configs import fashion_pairs, quickstart
from nofe_jax import methods
from nofe_jax.data import sources
from nofe_jax.training import health, loop


@pytest.fixture(scope='module')
def pairs_npz(tmp_path_factory):
    """A small Fashion-MNIST pairs set: 100 real classes, 20 training images each."""
    path = tmp_path_factory.mktemp('pairs') / 'pairs.npz'
    np.savez_compressed(path, **pairs.build(train_per_class=20, test_per_class=5))
    return str(path)


def test_tiny_branch_experts_learn_100_real_classes_in_one_epoch(pairs_npz, tmp_path):
    """The regression of the globally pooled tiny branch, which stayed at chance on many classes."""
    config = fashion_pairs.get_config(f'specialties=random,generalist_epochs=1,expert_epochs=1,'
                                      f'path={pairs_npz}')
    config.nofe.init = 'scratch'  # the experts alone, from scratch, one epoch of 2,000 images
    config.experts.train.batch_size = 50
    summary = methods.train_and_evaluate(config, str(tmp_path))
    assert summary['final']['test/top1'] > 0.15  # chance is 0.01
    assert summary['health_warnings'] == []


def test_generalist_at_chance_warns_and_leaves_the_map_unchanged(tmp_path):
    config = quickstart.get_config('smoke')
    config.generalist.optim.lr = 0.0  # it cannot learn
    config.nofe.update_warmup = '0 steps'
    config.generalist.train.update(duration='2 epochs')
    summary = methods.train_and_evaluate(config, str(tmp_path))
    history = json.load(open(tmp_path / 'specialties.json'))
    assert len(history) >= 2 and all(h['skipped'] and h['moved'] == 0 for h in history)
    assert len({tuple(map(tuple, h['specialties'])) for h in history}) == 1
    warnings = summary['stages']['generalist']['health_warnings']
    chance = [w for w in warnings if 'has not started to learn' in w['message']]
    assert chance and f'at step {chance[0]["step"]} (epoch ' in chance[0]['message']
    assert any(w.startswith('generalist: ') for w in summary['health_warnings'])


def test_quickstart_updates_from_a_learning_generalist_without_warnings(tmp_path):
    summary = methods.train_and_evaluate(quickstart.get_config(), str(tmp_path))
    assert summary['health_warnings'] == []
    history = summary['specialty_history']
    assert not any(h['skipped'] for h in history) and history[0]['kappa'] > 0.5
    assert summary['final']['test/top1'] > 0.9


def test_collapsed_predictions_warn():
    true = np.full(100, 10)
    two_outputs = np.zeros(100)
    two_outputs[[3, 7]] = [600, 400]
    assert '100% of images go to outputs [3, 7]' in health.collapse_warning(two_outputs, true)
    assert health.collapse_warning(np.roll(true, 1), true) is None
    assert health.effective_classes(true) == pytest.approx(100.0)


def test_chance_loss_warning_names_the_step_it_was_measured_at():
    warning = health.chance_loss_warning(np.log(10) * 0.99, 10, step=21, epoch=0.05)
    assert 'at step 21 (epoch 0.05)' in warning and 'first epoch' not in warning
    assert health.chance_loss_warning(np.log(10) * 0.9, 10, step=21, epoch=0.05) is None
    assert 'within 2% of ln(10)' in warning


def test_chance_loss_warning_says_diverging_when_the_loss_is_far_above_chance():
    # A DMDE fusion at 1,000 classes ended its epoch at 25.1 against ln(1000) = 6.9: not "at chance".
    warning = health.chance_loss_warning(25.14, 1000, step=120, epoch=1.0)
    assert 'worse than a uniform guess' in warning and 'within' not in warning


def test_held_out_counts_never_use_stage_one_training_images(tmp_path, monkeypatch):
    trained, predicted = [], []
    original_init, original_predict = loop._Runner.__init__, loop._Runner.predict

    def init(self, stage, *args):
        original_init(self, stage, *args)
        if stage.name in ('generalist', 'spectral_base'):
            trained.append(np.asarray(stage.train_indices))

    def predict(self, state, grouping, indices, *outputs):
        predicted.append(np.asarray(indices))
        return original_predict(self, state, grouping, indices, *outputs)

    monkeypatch.setattr(loop._Runner, '__init__', init)
    monkeypatch.setattr(loop._Runner, 'predict', predict)
    for source in ('learned', 'spectral'):
        config = quickstart.get_config('smoke')
        config.nofe.update(specialties=source, subset_source='holdout', subset_size=300)
        methods.train_and_evaluate(config, str(tmp_path / source))
    num_train = len(sources.load_digits_dataset().train)
    assert trained and predicted
    for train_indices in trained:
        for subset in predicted:
            assert np.intersect1d(train_indices, subset).size == 0
            assert np.union1d(train_indices, subset).size == num_train
    assert all(len(s) == 300 for s in predicted)


def test_holdout_larger_than_the_training_set_is_refused(tmp_path):
    config = quickstart.get_config('smoke')
    config.nofe.update(subset_source='holdout', subset_size=5000)
    with pytest.raises(ValueError, match='subset_size=5000 leaves no training images'):
        methods.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize('source, balanced', [('random', False), ('spectral', False),
                                              ('spectral', True)])
def test_fixed_sources_are_reported_like_learned_ones(source, balanced, trained_run):
    config = quickstart.get_config('smoke')
    config.nofe.specialties = source
    config.nofe.spectral_balanced = balanced  # the default, False: the paper's plain clustering
    summary, workdir, printed = trained_run(config)  # the same runs as test_run.py's
    written = json.load(open(workdir / 'specialties.json'))
    assert len(written) == 1 and written[0]['source'] == source
    assert sorted(map(sorted, written[0]['specialties'])) == sorted(map(sorted, summary['specialties']))
    assert (workdir / 'specialties.png').exists()
    assert f'specialties ({source}, K=5):' in printed
    assert sum(len(g) for g in summary['specialties']) == 10
    if balanced:  # the named balanced variant: fully_balanced's capacities
        assert sorted(len(g) for g in summary['specialties']) == [2] * 5


def test_generalist_on_2000_real_images_learns_item_specialties(pairs_npz, tmp_path):
    """The alternation leaves its random start on a small set and finds the items' structure."""
    config = fashion_pairs.get_config(f'generalist_epochs=3,expert_epochs=1,path={pairs_npz}')
    config.nofe.subset_size = 500  # held out: 1,500 images train the generalist
    config.experts.train.duration = '10 steps'
    summary = methods.train_and_evaluate(config, str(tmp_path))
    history = summary['specialty_history']
    assert sum(h['moved'] for h in history if not h['skipped']) >= 20
    assert set(summary['specialty_nmi']) == {'left_item', 'right_item'}
    learned, chance = summary['specialty_nmi'], summary['random_partition_nmi']
    assert all(0.15 < chance[name] < 0.3 for name in chance)
    assert max(learned.values()) > max(chance.values()) + 0.05


def test_pairs_builder_is_deterministic_and_labels_every_half():
    # Image i carries its index in two pixels, so each half of a pair names its source image.
    num = 400
    labels = np.arange(num) % 10
    images = np.stack([np.arange(num) // 256, np.arange(num) % 256], axis=1).astype(np.uint8)
    images = images.reshape(num, 1, 2, 1)
    x1, y1 = pairs.make_pairs(images, labels, 3, np.random.default_rng(0))
    x2, y2 = pairs.make_pairs(images, labels, 3, np.random.default_rng(0))
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.shape == (300, 1, 4, 1) and np.bincount(y1).tolist() == [3] * 100
    ids = x1[:, 0, :, 0].astype(int)
    left, right = ids[:, 0] * 256 + ids[:, 1], ids[:, 2] * 256 + ids[:, 3]
    assert np.array_equal(labels[left], y1 // 10) and np.array_equal(labels[right], y1 % 10)
    assert np.unique(left).size == 300 and np.unique(right).size == 300  # no image twice per side
    with pytest.raises(ValueError, match='has 40 images; 50 are needed'):
        pairs.make_pairs(images, labels, 5, np.random.default_rng(0))


def test_pairs_builder_takes_each_split_only_from_its_own_images():
    built = pairs.build(train_per_class=2, test_per_class=2)
    fashion = sources.load_idx_dataset()
    train_halves = {h.tobytes() for h in fashion.train.images}
    test_halves = {h.tobytes() for h in fashion.test.images}
    for split, own in (('train', train_halves), ('test', test_halves)):
        x = built[f'x_{split}']
        for half in (x[:, :, :28], x[:, :, 28:]):
            assert all(h.tobytes() in own for h in half)
    assert built['class_names'][12] == 'Trouser|Pullover'
    assert np.array_equal(built['grouping_left_item'], np.repeat(np.arange(10), 10))


def test_describe_reads_the_pairs_archive_shapes(pairs_npz):
    result = describe.describe(fashion_pairs.get_config(f'path={pairs_npz}'))
    # Trunk 4,800 + 10 branches of conv 3x3x32x16 and an FC from 14x28x16 to 10 outputs.
    assert result['nofe']['params'] == 4_800 + 10 * (3 * 3 * 32 * 16 + 16 + 14 * 28 * 16 * 10 + 10)
    assert result['generalist']['params'] == 4_800 + 14 * 28 * 32 * 10 + 10


def test_padding_gives_the_alexnet_branch_the_release_geometry(pairs_npz):
    """At 28 pixels the release branch's AVE pool leaves a 1x3 map; padded to 32 rows, 2x3 (CIFAR: 2x2)."""
    def nofe_params(pad):
        return describe.describe(fashion_pairs.get_config(f'model=alexnet_c100,pad={pad},path={pairs_npz}'))[
            'nofe']['params']

    # Only the ten experts' ip1 (64 channels x map cells -> 10 outputs) grows.
    assert nofe_params(2) - nofe_params(0) == 10 * 64 * (2 * 3 - 1 * 3) * 10


def test_experts_start_from_the_generalist_branch_but_their_classifier(tmp_path):
    """generalist_head='branch': every expert's conv1 is the generalist's; the classifier stays fresh."""
    from nofe_jax.models import registry
    from nofe_jax.methods.nofe import model as nofe
    x, slots = np.zeros((2, 8, 8, 1), np.float32), np.arange(10, dtype=np.int32)
    generalist = registry.generalist('tiny_cnn', 5, head='branch').init(jax.random.key(1), x, train=False)
    fresh = registry.build_nofe('tiny_cnn', 5, 2).init(jax.random.key(2), x, slots, train=False)
    warm = nofe.copy_generalist(generalist, registry.branch_hidden_layers('tiny_cnn'))(fresh)
    experts, g = warm['params']['experts']['branch'], generalist['params']
    for k in range(5):
        np.testing.assert_array_equal(experts['conv1']['kernel'][k], g['branch']['conv1']['kernel'])
    np.testing.assert_array_equal(experts['ip1']['kernel'],
                                  fresh['params']['experts']['branch']['ip1']['kernel'])
    np.testing.assert_array_equal(warm['params']['trunk']['conv1']['kernel'], g['trunk']['conv1']['kernel'])
    cold = nofe.copy_generalist(generalist)(fresh)  # the release: only the trunk is copied
    np.testing.assert_array_equal(cold['params']['experts']['branch']['conv1']['kernel'],
                                  fresh['params']['experts']['branch']['conv1']['kernel'])


def test_branch_headed_generalist_trains_end_to_end(tmp_path):
    config = quickstart.get_config('smoke')
    config.nofe.generalist_head = 'branch'
    summary = methods.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(summary['final']['test/loss'])

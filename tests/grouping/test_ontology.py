"""Tests for nofe_jax.grouping.ontology (offline: the semantic source reads the shipped LCH matrices)."""

import numpy as np
import pytest

from nofe_jax.grouping import clustering, ontology, semantic, similarity, specialties

CIFAR_NAMES = list(semantic.CIFAR100_CLASS_NAMES)

# The fine -> coarse map as commonly written in code (an independent encoding of the same table).
_CIFAR100_COARSE_INDEX = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]


def _members(categories, *names):
    return {int(categories[CIFAR_NAMES.index(n)]) for n in names}


def test_cifar100_superclasses_have_five_classes_each():
    superclasses = ontology.CIFAR100_SUPERCLASSES
    assert len(superclasses) == 20 and all(len(m) == 5 for m in superclasses.values())
    assert sorted(n for m in superclasses.values() for n in m) == CIFAR_NAMES
    coarse = ontology.coarse_labels('cifar100')
    assert coarse.dtype == np.int32 and np.all(np.bincount(coarse) == 5)
    np.testing.assert_array_equal(coarse, _CIFAR100_COARSE_INDEX)


@pytest.mark.parametrize('superclass,classes', [
    ('aquatic_mammals', ('beaver', 'dolphin', 'otter', 'seal', 'whale')),
    ('fish', ('aquarium_fish', 'flatfish', 'ray', 'shark', 'trout')),
    ('fruit_and_vegetables', ('apple', 'mushroom', 'orange', 'pear', 'sweet_pepper')),
    ('household_electrical_devices', ('clock', 'keyboard', 'lamp', 'telephone', 'television')),
    ('medium_mammals', ('fox', 'porcupine', 'possum', 'raccoon', 'skunk')),
    ('vehicles_2', ('lawn_mower', 'rocket', 'streetcar', 'tank', 'tractor')),
])
def test_cifar100_superclass_spot_checks(superclass, classes):
    coarse = ontology.coarse_labels('cifar100')
    names = ontology.coarse_names('cifar100')
    assert _members(coarse, *classes) == {names.index(superclass)}
    assert np.sum(coarse == names.index(superclass)) == 5


def test_coarse_siblings_are_semantically_closer():
    lch = semantic.semantic_similarity('cifar100')
    coarse = ontology.coarse_labels('cifar100')
    siblings = (coarse[:, None] == coarse[None, :]) & ~np.eye(100, dtype=bool)
    others = coarse[:, None] != coarse[None, :]
    assert lch[siblings].mean() > lch[others].mean() + 0.5
    for k in range(20):  # And superclass by superclass.
        inside, outside = siblings[coarse == k], others[coarse == k]
        assert lch[coarse == k][inside].mean() > lch[coarse == k][outside].mean()


def test_coarse_unknown_dataset():
    with pytest.raises(ValueError, match="No coarse labels for 'imagenet2012'"):
        ontology.coarse_labels('imagenet2012')


def _planted_blocks(rng, sizes):
    truth = np.repeat(np.arange(len(sizes)), sizes)
    noise = rng.uniform(0, 0.2, size=(truth.size, truth.size))
    block = np.where(truth[:, None] == truth[None, :], 1.0, 0.3) + (noise + noise.T) / 2
    order = rng.permutation(truth.size)  # Blocks not contiguous in label order.
    return truth[order], block[np.ix_(order, order)]


@pytest.mark.parametrize('source', ['semantic', 'visual'])
def test_spectral_ontology_recovers_planted_blocks(source, monkeypatch):
    rng = np.random.default_rng(0)
    truth, block = _planted_blocks(rng, [6, 9, 5, 10])
    kwargs = {}
    if source == 'semantic':
        monkeypatch.setattr(semantic, 'semantic_similarity', lambda dataset: block)
        kwargs['dataset'] = 'planted'
    else:
        kwargs['visual_similarity'] = block
    categories = ontology.build_ontology(source, 30, 4, np.random.default_rng(1), **kwargs)
    assert specialties.partition_nmi(categories, truth) == pytest.approx(1.0)
    np.testing.assert_array_equal(categories, clustering.canonical_labels(truth))


def test_visual_ontology_from_features_with_negative_cosines():
    rng = np.random.default_rng(0)
    centers = np.array([[1.0, 0, 0], [-1.0, 0.2, 0], [0, 1.0, 0], [0, -1.0, 0.3]])
    labels = np.repeat(np.arange(12), 20)
    truth = np.arange(12) % 4
    features = centers[truth[labels]] + 0.2 * rng.normal(size=(labels.size, 3))
    sim = similarity.class_mean_cosine_similarity(features, labels, np.arange(12))
    assert sim.min() < -0.5  # Opposite centers: clipped to no affinity, not refused.
    categories = ontology.build_ontology('visual', 12, 4, np.random.default_rng(0), visual_similarity=sim)
    assert specialties.partition_nmi(categories, truth) == pytest.approx(1.0)


@pytest.mark.parametrize('source', ['semantic', 'random'])
def test_ontology_is_deterministic_for_a_seed(source):
    build = lambda seed: ontology.build_ontology(source, 100, 20, np.random.default_rng(seed), dataset='cifar100')
    np.testing.assert_array_equal(build(3), build(3))


def test_semantic_cifar100_ontology_is_a_partition_close_to_the_superclasses():
    categories = ontology.build_ontology('semantic', 100, 20, np.random.default_rng(0), dataset='cifar100')
    assert categories.shape == (100,) and set(categories.tolist()) == set(range(20))
    assert specialties.partition_nmi(categories, ontology.coarse_labels('cifar100')) > 0.8
    assert len(_members(categories, 'maple_tree', 'oak_tree', 'pine_tree', 'willow_tree')) == 1
    assert len(_members(categories, 'bed', 'chair', 'couch', 'table', 'wardrobe')) == 1
    assert _members(categories, 'bed') != _members(categories, 'shark')


def test_coarse_ontology_puts_aquatic_mammals_together():
    categories = ontology.build_ontology('coarse', 100, None, np.random.default_rng(0), dataset='cifar100')
    np.testing.assert_array_equal(categories, ontology.coarse_labels('cifar100'))
    assert len(_members(categories, 'beaver', 'dolphin', 'otter', 'seal', 'whale')) == 1
    assert ontology.build_ontology('coarse', 100, 20, None, dataset='cifar100').shape == (100,)
    with pytest.raises(ValueError, match='has 20 coarse labels, but num_categories=10'):
        ontology.build_ontology('coarse', 100, 10, None, dataset='cifar100')


def test_random_ontology_is_balanced_and_seeded():
    first = ontology.build_ontology('random', 23, 5, np.random.default_rng(0))
    assert sorted(np.bincount(first).tolist()) == [4, 4, 5, 5, 5]
    assert not np.array_equal(first, ontology.build_ontology('random', 23, 5, np.random.default_rng(1)))


@pytest.mark.parametrize('source,kwargs,match', [
    ('wordnet', {}, 'Unknown ontology source'),
    ('semantic', {'num_categories': None, 'dataset': 'cifar100'}, 'needs num_categories'),
    ('visual', {}, 'needs visual_similarity'),
    ('semantic', {'dataset': 'fashion_mnist'}, 'has 10 classes, expected 100'),
    ('coarse', {'dataset': 'fashion_mnist'}, 'No coarse labels'),
])
def test_build_ontology_errors(source, kwargs, match):
    kwargs = {'num_categories': 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        ontology.build_ontology(source, 100, rng=np.random.default_rng(0), **kwargs)


def test_class_order_is_category_by_category():
    order = ontology.class_order(np.array([2, 0, 1, 0, 2, 1]))
    np.testing.assert_array_equal(order, [1, 3, 2, 5, 0, 4])


@pytest.mark.parametrize('group_size,overlap,repeats', [(10, 0.0, 1), (10, 0.5, 2), (15, 2 / 3, 3), (7, 0.0, 1)])
def test_ontology_task_groups_cover_equally(group_size, overlap, repeats):
    categories = ontology.build_ontology('semantic', 100, 20, np.random.default_rng(0), dataset='cifar100')
    groups = ontology.ontology_task_groups(categories, group_size, overlap)
    coverage = np.bincount(np.concatenate(groups), minlength=100)
    assert np.all(coverage == repeats)
    assert all(len(g) <= group_size for g in groups)
    if overlap == 0:  # A partition of the classes.
        np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(100))


def test_coarse_task_groups_follow_the_superclasses():
    coarse = ontology.coarse_labels('cifar100')
    groups = ontology.ontology_task_groups(coarse, 10, 0.0)
    assert len(groups) == 10 and all(len(g) == 10 for g in groups)
    # Group g is superclasses 2g and 2g+1, whole.
    assert [sorted(set(coarse[g].tolist())) for g in groups] == [[2 * g, 2 * g + 1] for g in range(10)]
    halves = ontology.ontology_task_groups(coarse, 10, 0.5)
    assert len(halves) == 20 and [sorted(set(coarse[g].tolist())) for g in halves][-1] == [0, 19]


def test_ontology_lines_with_coarse_names():
    coarse = ontology.coarse_labels('cifar100')
    lines = ontology.ontology_lines(coarse, CIFAR_NAMES, ontology.coarse_names('cifar100'))
    assert len(lines) == 20
    assert lines[0] == 'aquatic_mammals (5): beaver, dolphin, otter, seal, whale'
    assert lines[17] == 'trees (5): maple_tree, oak_tree, palm_tree, pine_tree, willow_tree'
    members = ontology.category_members(np.array([1, 0, 1]), ['a', 'b', 'c'])
    assert members == [['b'], ['a', 'c']]
    assert ontology.ontology_lines(np.array([1, 0, 1]), ['a', 'b', 'c']) == [
        'category 0 (1): b', 'category 1 (2): a, c']

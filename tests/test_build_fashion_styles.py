"""experiments.build_fashion_styles on synthetic garments (a fake stand-in for Fashion-MNIST whose
true styles are known): the styles are found, classes nest in their items, each split is built
from its own images, and the build is deterministic."""
import numpy as np
import pytest

# Both builders in one process, as the test suite's workers have them: no flag defined twice.
from experiments import build_fashion_pairs  # noqa: F401
from experiments import build_fashion_styles as builder
from nofe_jax.data import sources

ITEMS, STYLES = 10, builder.STYLES_PER_ITEM


def fake_split(per_style: int, seed: int) -> tuple[sources.InMemorySource, np.ndarray]:
    """(split, true style of every image): item i drawn at grey level 20 + 20 i, style s as a bright
    4x4 block at its own place, plus noise; the styles are 10 well-separated pixel clusters."""
    rng = np.random.default_rng(seed)
    items = np.repeat(np.arange(ITEMS), STYLES * per_style)
    styles = np.tile(np.repeat(np.arange(STYLES), per_style), ITEMS)
    images = np.full((items.size, 28, 28, 1), 20.0) + 20.0 * items[:, None, None, None]
    for n, style in enumerate(styles):
        row, col = 4 + 12 * (style // 5), 2 + 5 * (style % 5)
        images[n, row:row + 4, col:col + 4] = 255.0
    images += rng.normal(0.0, 4.0, images.shape)
    order = rng.permutation(items.size)
    split = sources.InMemorySource(np.clip(images, 0, 255).astype(np.uint8)[order], items[order].astype(np.int32))
    return split, styles[order]


@pytest.fixture(scope='module')
def built():
    (train, train_styles), (test, test_styles) = fake_split(15, seed=1), fake_split(3, seed=2)
    return train, train_styles, test, test_styles, builder.build_from(train, test, train_per_class=12, seed=0)


def test_classes_nest_in_their_items_and_name_them(built):
    train, _, test, _, arrays = built
    assert arrays['x_train'].shape == (ITEMS * STYLES * 12, 28, 28, 1)
    assert np.array_equal(np.bincount(arrays['y_train']), np.full(ITEMS * STYLES, 12))
    assert np.array_equal(arrays['grouping_item'], np.arange(100) // STYLES)
    assert list(arrays['class_names'][[0, 13, 99]]) == ['T-shirt/top #0', 'Trouser #3', 'Ankle boot #9']
    # Every test image is kept, in its order, with its item; every training image is one of the
    # training split's images of its class's item (none comes from the test split).
    assert np.array_equal(arrays['x_test'], test.images)
    assert np.array_equal(arrays['y_test'] // STYLES, test.labels)
    flat_train = train.images.reshape(len(train), -1)
    for image, label in zip(arrays['x_train'][:50], arrays['y_train'][:50]):
        matches = np.flatnonzero((flat_train == image.reshape(-1)).all(axis=1))
        assert matches.size == 1 and train.labels[matches[0]] == label // STYLES


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renumbering: a one-to-one map between the labels of a and b."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_styles_are_the_true_clusters_and_test_images_take_their_nearest_centre(built):
    train, train_styles, test, test_styles, arrays = built
    # Training images chosen for a class all carry one true style, a different one per class.
    flat_train = train.images.reshape(len(train), -1)
    chosen = [np.flatnonzero((flat_train == x.reshape(-1)).all(axis=1))[0] for x in arrays['x_train']]
    true_class = train.labels[chosen] * STYLES + train_styles[chosen]
    assert _same_partition(arrays['y_train'], true_class)
    # A test image of true style s gets the class its training images of style s got.
    train_map = dict(zip(true_class.tolist(), arrays['y_train'].tolist()))
    expected = [train_map[c] for c in (test.labels * STYLES + test_styles).tolist()]
    assert arrays['y_test'].tolist() == expected


def test_deterministic_for_a_seed(built):
    train, _, test, _, arrays = built
    again = builder.build_from(train, test, train_per_class=12, seed=0)
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    other = builder.build_from(train, test, train_per_class=12, seed=1)
    assert not np.array_equal(arrays['x_train'], other['x_train'])


def test_a_style_too_small_for_the_draw_is_one_clear_error(built):
    train, _, test, _, _ = built
    with pytest.raises(ValueError, match=r'style \d of item 0 has 15 training images; 16 per class'):
        builder.build_from(train, test, train_per_class=16)

"""experiments.build_fashion_pairs --items=N: deterministic, splits disjoint, groupings consistent
with the labels, and --items=2 the very pairs the builder wrote before tuples existed."""
import gzip
import hashlib
import struct

import numpy as np
import pytest

from experiments import build_fashion_pairs as builder
from nofe_jax.data import sources

needs_fashion = pytest.mark.skipif(sources.idx_problem('') is not None,
                                   reason='Fashion-MNIST IDX files not installed')


def arrays_sha256(arrays: dict) -> str:
    """One hash over every array's name, bytes, dtype and shape."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(value.tobytes())
        h.update(str(value.dtype).encode())
        h.update(str(value.shape).encode())
    return h.hexdigest()


# sha256 of the arrays the pairs builder wrote before --items (commit 5ec29be), for
# (train_per_class, test_per_class, seed); (0, 0, 0) is its default 150 / 30.
PAIRS_BEFORE_TUPLES = {
    (5, 2, 0): '89563f4eeb720bfb440783001ca93055b5958399c634c32ed63388f8e203f998',
    (7, 3, 11): '1c325bd6738819668aabd09e7828dbcfb19909111d5eeb8ba4c7c3e5f03a3dc5',
    (0, 0, 0): 'dd7df11a70d0316740dcc81e925c9af78a8af3ae41f601b679d3e6850adc88b7',
}


@needs_fashion
@pytest.mark.parametrize('args', sorted(PAIRS_BEFORE_TUPLES))
def test_two_items_write_the_pairs_of_before_bit_for_bit(args):
    train, test, seed = args
    arrays = builder.build(train_per_class=train, test_per_class=test, seed=seed, items=2)
    assert sorted(arrays) == ['class_names', 'grouping_left_item', 'grouping_right_item',
                              'x_test', 'x_train', 'y_test', 'y_train']
    assert arrays_sha256(arrays) == PAIRS_BEFORE_TUPLES[args]


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack('>HBB', 0, 0x08, array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape)
    with gzip.open(path, 'wb') as f:
        f.write(header + array.astype(np.uint8).tobytes())


# Fake Fashion-MNIST whose every image says which split and index it is: pixel (0, 0) the split
# (1 train, 2 test), (0, 1) and (0, 2) the index; label = index % 10.
SPLIT_TAG = {'train': 1, 't10k': 2}


@pytest.fixture(scope='module')
def tagged_idx_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('tagged_fashion')
    for split, count in (('train', 2100), ('t10k', 1000)):
        index = np.arange(count)
        images = np.full((count, 28, 28), 100, np.uint8)
        images[:, 0, 0], images[:, 0, 1], images[:, 0, 2] = SPLIT_TAG[split], index % 256, index // 256
        _write_idx(folder / f'{split}-images-idx3-ubyte.gz', images)
        _write_idx(folder / f'{split}-labels-idx1-ubyte.gz', index % 10)
    return str(folder)


def _decode(x: np.ndarray, items: int) -> tuple[np.ndarray, np.ndarray]:
    """(split tag, image index) [n, items] of every garment of every tuple image."""
    crops = x[..., 0].reshape(x.shape[0], 28, items, 28)[:, 0]  # [n, items, 28]: each garment's row 0
    return crops[..., 0], crops[..., 1].astype(int) + 256 * crops[..., 2].astype(int)


def test_tuples_take_each_split_only_from_its_own_images_once_per_position(tagged_idx_dir):
    arrays = builder.build(tagged_idx_dir, train_per_class=2, test_per_class=1, items=3,
                           return_sources=True)
    assert arrays['x_train'].shape == (2000, 28, 84, 1) and arrays['x_test'].shape == (1000, 28, 84, 1)
    for split, tag in (('train', 1), ('test', 2)):
        tags, index = _decode(arrays[f'x_{split}'], 3)
        assert np.all(tags == tag)  # no image of the other split
        np.testing.assert_array_equal(index, arrays[f'source_{split}'])
        for position in range(3):  # an image at most once per position
            assert len(np.unique(index[:, position])) == index.shape[0]


def test_tuple_groupings_agree_with_the_labels_and_the_images(tagged_idx_dir):
    arrays = builder.build(tagged_idx_dir, train_per_class=2, test_per_class=1, items=3)
    names = list(arrays['class_names'])
    assert len(names) == len(set(names)) == 1000
    positions = ('left', 'middle', 'right')
    for split, per_class in (('train', 2), ('test', 1)):
        labels = arrays[f'y_{split}']
        np.testing.assert_array_equal(np.bincount(labels, minlength=1000), per_class)
        _, index = _decode(arrays[f'x_{split}'], 3)
        for p, position in enumerate(positions):
            grouping = arrays[f'grouping_{position}_item']
            np.testing.assert_array_equal(index[:, p] % 10, grouping[labels])  # the image's item
    for c in (0, 7, 123, 999):
        left, middle, right = (arrays[f'grouping_{p}_item'][c] for p in positions)
        assert c == 100 * left + 10 * middle + right
        assert names[c].split('|') == [sources.FASHION_MNIST_CLASSES[i] for i in (left, middle, right)]
    np.testing.assert_array_equal(arrays['ontology_categories'], arrays['grouping_left_item'])
    assert list(arrays['ontology_category_names']) == sources.FASHION_MNIST_CLASSES
    assert np.all(np.diff(arrays['ontology_categories']) >= 0)  # contiguous in label order


def test_build_is_deterministic_for_a_seed(tagged_idx_dir):
    first, again, other = (builder.build(tagged_idx_dir, 2, 1, seed=seed, items=3) for seed in (0, 0, 1))
    assert arrays_sha256(first) == arrays_sha256(again)
    assert not np.array_equal(first['x_train'], other['x_train'])


def test_too_few_images_per_item_fail_with_the_count(tagged_idx_dir):
    with pytest.raises(ValueError, match='item 0 has 100 images; 200 are needed'):
        builder.build(tagged_idx_dir, train_per_class=1, test_per_class=2, items=3)


@needs_fashion
def test_real_tuples_are_fashion_mnist_garments_of_their_classes():
    arrays = builder.build(train_per_class=1, test_per_class=1, items=3, return_sources=True)
    fashion = sources.load_idx_dataset()
    for split, data in (('train', fashion.train), ('test', fashion.test)):
        x, source = arrays[f'x_{split}'], arrays[f'source_{split}']
        assert x.shape == (1000, 28, 84, 1)
        for p, position in enumerate(('left', 'middle', 'right')):
            np.testing.assert_array_equal(x[:, :, 28 * p:28 * (p + 1)], data.images[source[:, p]])
            np.testing.assert_array_equal(data.labels[source[:, p]],
                                          arrays[f'grouping_{position}_item'][arrays[f'y_{split}']])

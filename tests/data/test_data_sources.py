"""Loaders: real Fashion-MNIST IDX and digits facts, npz / image-folder round trips, dispatch."""

import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from nofe_jax.data import sources


def data_config(**overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(dict(
        source='synthetic', name='', data_dir='', path='', image_size=0, train_split='train',
        test_split='test', synthetic_shape=(8, 8, 3), synthetic_classes=4, synthetic_train_size=40,
        synthetic_test_size=12, seed=0, num_workers=0))
    config.update(overrides)
    return config


def test_idx_reader_matches_fashion_mnist_facts():
    ds = sources.load_idx_dataset()
    assert (len(ds.train), len(ds.test)) == (60_000, 10_000)
    assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10 and not ds.synthetic
    np.testing.assert_array_equal(np.bincount(ds.train.labels), [6_000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test.labels), [1_000] * 10)
    assert ds.class_names == ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                              'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
    images, labels = ds.train.get(np.array([0, 59_999]))
    assert images.shape == (2, 28, 28, 1) and images.dtype == np.uint8 and labels.dtype == np.int32
    assert images.max() > 200  # real pixels, not an empty buffer


def test_idx_missing_names_place_files_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, 'DEFAULT_FASHION_MNIST_DIR', str(tmp_path / 'nowhere'))
    with pytest.raises(sources.DatasetNotFoundError) as e:
        sources.load_idx_dataset()
    message = str(e.value)
    assert 'nowhere' in message and 'train-images-idx3-ubyte' in message
    assert 'apt-get install dataset-fashion-mnist' in message
    # An explicit folder is the only place looked in: no silent fall back to the default.
    with pytest.raises(sources.DatasetNotFoundError) as e:
        sources.load_idx_dataset(str(tmp_path))
    assert str(tmp_path / 'nowhere') not in str(e.value) and '--config.data.data_dir' in str(e.value)


def test_digits_split_is_stratified_and_deterministic():
    a, b = sources.load_digits_dataset(), sources.load_digits_dataset()
    assert (len(a.train), len(a.test)) == (1_347, 450)
    assert a.num_classes == 10 and a.class_names == [str(i) for i in range(10)]
    assert a.image_shape == (8, 8, 1) and a.train.images.dtype == np.uint8
    assert a.train.images.max() == 255
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    np.testing.assert_array_equal(a.train.images, b.train.images)
    per_class = np.bincount(a.train.labels) + np.bincount(a.test.labels)
    assert per_class.sum() == 1_797 and len(per_class) == 10
    # Stratified: each digit's share of the test split is a quarter, to within rounding.
    assert np.all(np.abs(np.bincount(a.test.labels) - per_class / 4) <= 1)


def test_digits_split_is_read_back_bit_for_bit_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    split = sources._digits_split
    images, labels, train_idx, test_idx = split(0.25, 0)  # scikit-learn's, no cache involved
    path = sources.digits_cache_path(0.25, 0)
    assert path.startswith(str(tmp_path / '.cache' / 'nofe_jax'))
    written = sources.load_digits_dataset()
    monkeypatch.setattr(sources, '_digits_split', lambda *args: pytest.fail('split again'))
    for dataset in (written, sources.load_digits_dataset()):  # the second from the file alone
        np.testing.assert_array_equal(dataset.train.images, images[train_idx])
        np.testing.assert_array_equal(dataset.test.labels, labels[test_idx])
    with open(path, 'wb') as f:
        f.write(b'not an npz')
    monkeypatch.setattr(sources, '_digits_split', split)
    np.testing.assert_array_equal(sources.load_digits_dataset().test.images, images[test_idx])
    with np.load(path) as rebuilt:
        np.testing.assert_array_equal(rebuilt['train_idx'], train_idx)
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no temporary left


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (4, 5, 5), dtype=np.uint8)  # no channel axis: gets one
    path = tmp_path / 'tiny.npz'
    np.savez(path, x_train=x_train, y_train=np.array([0, 1, 2, 0, 1, 2]), x_test=x_test,
             y_test=np.array([2, 1, 0, 0]), class_names=np.array(['a', 'b', 'c']))
    ds = sources.load_dataset(data_config(source='npz', path=str(path)))
    assert ds.class_names == ['a', 'b', 'c'] and ds.num_classes == 3 and ds.image_shape == (5, 5, 3)
    images, labels = ds.train.get(np.array([3, 1]))
    np.testing.assert_array_equal(images, x_train[[3, 1]])
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_array_equal(ds.test.get(np.arange(4))[0], x_test[..., None])


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    for split, count in (('train', 3), ('val', 2)):
        for name in ('cat', 'ant'):
            for i in range(count):
                array = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
                write_png(tmp_path / split / name / f'{i}.png', array)
                written[(split, name, i)] = array
    ds = sources.load_dataset(data_config(source='image_folder', data_dir=str(tmp_path)))
    assert ds.class_names == ['ant', 'cat'] and ds.image_shape == (6, 6, 3)
    assert (len(ds.train), len(ds.test)) == (6, 4)
    np.testing.assert_array_equal(ds.train.labels, [0, 0, 0, 1, 1, 1])
    images, labels = ds.train.get(np.array([4, 0]))
    np.testing.assert_array_equal(images[0], written[('train', 'cat', 1)])
    np.testing.assert_array_equal(images[1], written[('train', 'ant', 0)])
    np.testing.assert_array_equal(labels, [1, 0])
    np.testing.assert_array_equal(ds.test.get(np.array([3]))[0][0], written[('val', 'cat', 1)])


def test_image_folder_resizes_and_keeps_gray(tmp_path):
    for i, size in enumerate((5, 9)):
        write_png(tmp_path / 'train' / 'x' / f'{i}.png', np.full((size, size), 7, np.uint8))
    write_png(tmp_path / 'test' / 'x' / '0.png', np.full((3, 3), 7, np.uint8))
    ds = sources.load_image_folder_dataset(str(tmp_path), image_size=4)
    images, _ = ds.train.get(np.array([0, 1]))
    assert ds.image_shape == (4, 4, 1) and images.shape == (2, 4, 4, 1)
    np.testing.assert_array_equal(images, 7)


def test_image_folder_missing_test_split(tmp_path):
    write_png(tmp_path / 'train' / 'x' / '0.png', np.zeros((3, 3), np.uint8))
    with pytest.raises(sources.DatasetNotFoundError, match='val'):
        sources.load_image_folder_dataset(str(tmp_path))


def test_synthetic_is_learnable_and_marked():
    ds = sources.load_dataset(data_config(synthetic_train_size=200, synthetic_test_size=100))
    assert ds.synthetic and ds.class_names == ['class_000', 'class_001', 'class_002', 'class_003']
    assert ds.image_shape == (8, 8, 3) and (len(ds.train), len(ds.test)) == (200, 100)
    # A nearest-class-mean classifier fitted on train must beat chance clearly on test.
    x, y = ds.train.images.reshape(200, -1).astype(float), ds.train.labels
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    xt = ds.test.images.reshape(100, -1).astype(float)
    predicted = np.argmin(((xt[:, None] - means[None]) ** 2).sum(-1), 1)
    assert (predicted == ds.test.labels).mean() > 0.9
    again = sources.load_dataset(data_config(synthetic_train_size=200, synthetic_test_size=100))
    np.testing.assert_array_equal(again.train.images, ds.train.images)


def test_unknown_source_lists_valid_ones():
    with pytest.raises(ValueError) as e:
        sources.load_dataset(data_config(source='lmdb'))
    for name in ('tfds', 'idx', 'npz', 'image_folder', 'digits', 'synthetic'):
        assert name in str(e.value)

"""The tensorflow-datasets path: fast offline failure, and loading under tfds.testing.mock_data.

Only this file imports TensorFlow (through tfds.load).
"""

import time

import ml_collections
import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets')

from nofe_jax.data import pipeline, sources  # noqa: E402


def tfds_config(data_dir, name='cifar100') -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        source='tfds', name=name, data_dir=str(data_dir), path='', image_size=0, train_split='train',
        test_split='test', synthetic_shape=(8, 8, 3), synthetic_classes=4, synthetic_train_size=8,
        synthetic_test_size=8, seed=0, num_workers=0))


def fake_prepare(data_dir, name: str, sizes: dict[str, int], file_format: str = 'tfrecord') -> None:
    """Writes the metadata a prepared dataset has (dataset_info.json with splits), but no records.

    The loader's own is-prepared check then passes, and mock_data supplies the examples.
    """
    from tensorflow_datasets.core import naming, splits

    builder = tfds.builder(name, data_dir=str(data_dir), file_format=file_format)
    builder.info.set_splits(splits.SplitDict([
        splits.SplitInfo(name=split, shard_lengths=[n], num_bytes=0,
                         filename_template=naming.ShardedFileTemplate(
                             data_dir=builder.data_dir, dataset_name=name, split=split,
                             filetype_suffix=file_format))
        for split, n in sizes.items()]))
    builder.data_path.mkdir(parents=True, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)


def test_unprepared_dataset_fails_fast_with_instructions(tmp_path):
    # Fast means no download or preparation is attempted (minutes); the bound is loose so a
    # busy machine does not fail it (about 0.3 s idle, 1.4 s on 2 overloaded cores).
    start = time.perf_counter()
    with pytest.raises(sources.DatasetNotFoundError) as e:
        sources.load_tfds_dataset('cifar100', data_dir=str(tmp_path))
    assert time.perf_counter() - start < 10.0
    assert isinstance(e.value, FileNotFoundError)
    message = str(e.value)
    assert str(tmp_path) in message
    assert 'tfds build cifar100' in message and '--config.data.data_dir' in message


def test_imagenet_message_mentions_manual_download(tmp_path):
    with pytest.raises(sources.DatasetNotFoundError, match='downloads/manual'):
        sources.load_tfds_dataset('imagenet2012', data_dir=str(tmp_path), test_split='validation')


def test_unknown_tfds_name(tmp_path):
    with pytest.raises(ValueError, match='no dataset named'):
        sources.load_tfds_dataset('no_such_dataset_xyz', data_dir=str(tmp_path))


def test_cifar100_in_memory_under_mock_data(tmp_path):
    fake_prepare(tmp_path, 'cifar100', {'train': 24, 'test': 24})
    with tfds.testing.mock_data(num_examples=24, data_dir=str(tmp_path)):
        ds = sources.load_dataset(tfds_config(tmp_path))
    assert ds.image_shape == (32, 32, 3) and ds.num_classes == 100 and len(ds.class_names) == 100
    assert (len(ds.train), len(ds.test)) == (24, 24) and not ds.synthetic
    assert 'loaded into memory' in ds.description
    images, labels = ds.train.get(np.arange(5))
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int32
    assert np.all((0 <= ds.train.labels) & (ds.train.labels < 100))
    preprocess = pipeline.Preprocess(mean='per_pixel', bgr=True, crop=28, flip=True, test_flip=True)
    norm = pipeline.compute_normalization(ds.train, preprocess)
    batch = next(pipeline.train_batches(ds.train, 8, epoch=0, seed=0, preprocess=preprocess,
                                        normalization=norm))
    assert batch['image'].shape == (8, 28, 28, 3)


def test_random_access_array_record_under_mock_data(tmp_path, monkeypatch):
    fake_prepare(tmp_path, 'cifar100', {'train': 10, 'test': 10}, file_format='array_record')
    monkeypatch.setattr(sources, 'MAX_IN_MEMORY_BYTES', 0)  # as for ImageNet: too big for memory
    config = tfds_config(tmp_path)
    config.image_size = 16
    with tfds.testing.mock_data(num_examples=10, data_dir=str(tmp_path)):
        ds = sources.load_dataset(config)
        images, labels = ds.test.get(np.array([3, 1, 4]))
        all_labels = ds.train.labels
    assert 'read on demand' in ds.description and ds.image_shape == (16, 16, 3)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8 and labels.shape == (3,)
    assert all_labels.shape == (10,) and all_labels.dtype == np.int32


def test_missing_split_names_the_existing_ones(tmp_path):
    fake_prepare(tmp_path, 'cifar100', {'train': 4, 'test': 4})
    with pytest.raises(ValueError, match="no split 'validation'.*train"):
        sources.load_tfds_dataset('cifar100', data_dir=str(tmp_path), test_split='validation')

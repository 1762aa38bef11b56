"""Batching, per-process splits, exact masked evaluation and Caffe-style preprocessing."""

import dataclasses

import ml_collections
import numpy as np
import pytest

from nofe_jax.data import pipeline
from nofe_jax.data.sources import InMemorySource

PLAIN = pipeline.Preprocess()
NO_NORM = pipeline.Normalization(mean=np.zeros((), np.float32), std=np.ones((), np.float32))


def labelled_source(n: int, shape=(4, 4, 1)) -> InMemorySource:
    """Example i has label i and every pixel equal to i % 256, so batches reveal their indices."""
    images = np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, *shape))
    return InMemorySource(np.ascontiguousarray(images), np.arange(n))


@pytest.mark.parametrize('n', [1, 10, 37])
@pytest.mark.parametrize('local_batch_size', [1, 4, 7, 20])
@pytest.mark.parametrize('process_count', [1, 2, 3])
def test_eval_counts_every_example_once(n, local_batch_size, process_count):
    batch_size = local_batch_size * process_count
    source = labelled_source(n)
    per_process = [list(pipeline.eval_batches(source, batch_size, preprocess=PLAIN, normalization=NO_NORM,
                                              process_index=p, process_count=process_count))
                   for p in range(process_count)]
    assert len({len(batches) for batches in per_process}) == 1
    assert len(per_process[0]) == pipeline.num_eval_batches(n, batch_size)
    counted = []
    for batches in per_process:
        for batch in batches:
            assert batch['image'].shape[0] == batch['label'].shape[0] == batch['mask'].shape[0]
            assert batch['label'].shape[0] == batch_size // process_count
            counted += list(batch['label'][batch['mask'] > 0])
    np.testing.assert_array_equal(np.sort(counted), np.arange(n))


def test_eval_on_a_subset_of_indices():
    source = labelled_source(20)
    subset = np.array([3, 7, 11, 19, 0])
    batches = list(pipeline.eval_batches(source, 4, preprocess=PLAIN, normalization=NO_NORM, indices=subset))
    masked = np.concatenate([b['label'][b['mask'] > 0] for b in batches])
    np.testing.assert_array_equal(masked, subset)
    assert batches[-1]['mask'].dtype == np.float32 and batches[-1]['mask'].sum() == 1


def test_train_batches_deterministic_per_epoch_and_drop_remainder():
    source = labelled_source(50)
    labels = lambda epoch, seed=0: np.stack([b['label'] for b in pipeline.train_batches(
        source, 8, epoch=epoch, seed=seed, preprocess=PLAIN, normalization=NO_NORM)])
    first = labels(0)
    assert first.shape == (6, 8) == (pipeline.steps_per_epoch(50, 8), 8)
    assert len(np.unique(first)) == 48  # a permutation, remainder of 2 dropped
    np.testing.assert_array_equal(first, labels(0))  # a resumed run sees the same epoch
    assert not np.array_equal(first, labels(1))
    assert not np.array_equal(first, labels(0, seed=1))


@pytest.mark.parametrize('process_count', [2, 3])
def test_train_process_slices_partition_the_global_batch(process_count):
    source = labelled_source(40, shape=(6, 6, 1))
    preprocess = pipeline.Preprocess(pad=1, crop=4, flip=True)
    run = lambda p, c: list(pipeline.train_batches(source, 12, epoch=3, seed=5, preprocess=preprocess,
                                                   normalization=NO_NORM, process_index=p, process_count=c))
    whole = run(0, 1)
    parts = [run(p, process_count) for p in range(process_count)]
    for step, batch in enumerate(whole):
        for key in ('label', 'image'):
            joined = np.concatenate([part[step][key] for part in parts])
            np.testing.assert_array_equal(joined, batch[key])  # augmentation too is process-count independent
        pieces = [set(part[step]['label']) for part in parts]
        assert sum(len(s) for s in pieces) == len(set.union(*pieces)) == 12


def test_batch_size_must_divide_over_processes():
    with pytest.raises(ValueError, match='multiple of process_count'):
        next(pipeline.train_batches(labelled_source(10), 5, epoch=0, seed=0, preprocess=PLAIN,
                                    normalization=NO_NORM, process_count=2))


def test_per_pixel_mean_then_zero_pad_then_crop():
    # Two 2x2 one-channel images; their per-pixel mean is [[1, 2], [3, 4]].
    images = np.array([[[0, 2], [4, 6]], [[2, 2], [2, 2]]], np.uint8)[..., None]
    source = InMemorySource(images, np.array([0, 1]))
    config = ml_collections.ConfigDict(dict(mean='per_pixel', scale=0.5, std='none', bgr=False, pad=1,
                                            crop=3, flip=False, test_flip=False, resize=0, ten_crop=False))
    norm = pipeline.compute_normalization(source, config)
    np.testing.assert_allclose(norm.mean[..., 0], [[1, 2], [3, 4]])
    preprocess = pipeline.Preprocess.from_config(config)
    # Offsets (0, 0) and (1, 1) of the 4x4 zero-padded, mean-subtracted, halved image.
    out = pipeline.apply_preprocess(images, preprocess, norm, offsets=np.array([[0, 0], [1, 1]]))
    np.testing.assert_allclose(out[0, ..., 0], [[0, 0, 0], [0, -0.5, 0], [0, 0.5, 1]])
    np.testing.assert_allclose(out[1, ..., 0], [[0.5, 0, 0], [-0.5, -1, 0], [0, 0, 0]])
    # Eval takes the centre crop: offset ((4 - 3) // 2) = 0 in both directions.
    batch = next(pipeline.eval_batches(source, 2, preprocess=config, normalization=norm))
    np.testing.assert_allclose(batch['image'][0, ..., 0], out[0, ..., 0])
    assert batch['image'].dtype == np.float32


def test_centre_crop_at_eval():
    images = np.arange(25, dtype=np.uint8).reshape(1, 5, 5, 1)
    batch = next(pipeline.eval_batches(InMemorySource(images, np.array([0])), 1,
                                       preprocess=pipeline.Preprocess(crop=3), normalization=NO_NORM))
    np.testing.assert_array_equal(batch['image'][0, ..., 0], images[0, 1:4, 1:4, 0])


def test_flip_and_bgr():
    images = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    flipped = pipeline.apply_preprocess(images, PLAIN, NO_NORM, flips=np.array([True]))
    np.testing.assert_array_equal(flipped, images[:, :, ::-1])
    bgr = pipeline.apply_preprocess(images, pipeline.Preprocess(bgr=True), NO_NORM)
    np.testing.assert_array_equal(bgr, images[..., ::-1])
    # Random flips at train flip about half the batch, deterministically; test_flip does so at eval.
    source = InMemorySource(np.repeat(images, 64, 0), np.zeros(64, np.int64))
    batch = next(pipeline.train_batches(source, 64, epoch=0, seed=0, preprocess=pipeline.Preprocess(flip=True),
                                        normalization=NO_NORM))
    is_flipped = np.all(batch['image'] == images[:, :, ::-1], axis=(1, 2, 3))
    assert 10 < is_flipped.sum() < 54
    evals = [next(pipeline.eval_batches(source, 64, preprocess=pipeline.Preprocess(test_flip=flip),
                                        normalization=NO_NORM))['image'] for flip in (False, True, True)]
    assert np.all(evals[0] == images) and not np.all(evals[1] == images)
    np.testing.assert_array_equal(evals[1], evals[2])


def test_per_channel_mean_and_std():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (500, 3, 3, 2), dtype=np.uint8)
    config = pipeline.Preprocess(mean='per_channel', std='per_channel')
    norm = pipeline.compute_normalization(InMemorySource(images, np.zeros(500)), config)
    out = pipeline.apply_preprocess(images, config, norm)
    np.testing.assert_allclose(out.mean((0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std((0, 1, 2)), 1, atol=1e-4)
    assert config.output_shape((3, 3, 2)) == (3, 3, 2)


def test_random_subset():
    picked = pipeline.random_subset(100, 30, np.random.default_rng(0))
    assert len(set(picked)) == 30 and picked.max() < 100 and np.all(np.diff(picked) > 0)
    assert len(pipeline.random_subset(10, 30, np.random.default_rng(0))) == 10


def test_prefetch_yields_in_order_and_reraises():
    assert [b['x'] for b in pipeline.prefetch(iter([{'x': i} for i in range(5)]))] == list(range(5))

    def broken():
        yield {'x': 0}
        raise RuntimeError('decode failed')

    with pytest.raises(RuntimeError, match='decode failed'):
        list(pipeline.prefetch(broken()))


def test_ten_crop_gives_corners_centre_and_mirrors():
    images = np.arange(5 * 5, dtype=np.uint8).reshape(1, 5, 5, 1)
    preprocess = pipeline.Preprocess(crop=3, ten_crop=True)
    normalization = pipeline.Normalization(mean=np.zeros((), np.float32), std=np.ones((), np.float32))
    views = pipeline.ten_crop_views(images, preprocess, normalization)
    assert views.shape == (1, 10, 3, 3, 1)
    x = images[0, :, :, 0].astype(np.float32)
    expected = [x[:3, :3], x[:3, 2:], x[2:, :3], x[2:, 2:], x[1:4, 1:4]]
    for i, crop in enumerate(expected):
        np.testing.assert_array_equal(views[0, i, :, :, 0], crop)
        np.testing.assert_array_equal(views[0, 5 + i, :, :, 0], crop[:, ::-1])
    batches = list(pipeline.eval_batches(InMemorySource(images, np.zeros(1, np.int32)), 4,
                                         preprocess=preprocess, normalization=normalization))
    assert batches[0]['image'].shape == (4, 10, 3, 3, 1) and batches[0]['mask'].sum() == 1


def reference_preprocess(images, preprocess, normalization, offsets, flips):
    """apply_preprocess as first written: normalise every pixel, pad, gather the crops, mirror."""
    x = pipeline._resize_batch(images, preprocess.resize).astype(np.float32)  # pylint: disable=W0212
    x = (x - normalization.mean) / normalization.std * np.float32(preprocess.scale)
    p = preprocess.pad
    x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    if offsets is not None:
        crop = np.arange(preprocess.crop)
        x = x[np.arange(len(x))[:, None, None], (offsets[:, 0:1] + crop)[:, :, None],
              (offsets[:, 1:2] + crop)[:, None, :]]
    if flips is not None:
        x = np.where(flips[:, None, None, None], x[:, :, ::-1], x)
    return np.ascontiguousarray(x[..., ::-1] if preprocess.bgr else x, np.float32)


@pytest.mark.parametrize('mean', ['none', 'per_channel', 'per_pixel'])
@pytest.mark.parametrize('pad', [0, 2])
@pytest.mark.parametrize('resize', [0, 9])
def test_cropping_before_normalising_changes_no_bit(mean, pad, resize):
    # Where nothing is padded and the mean is the same at every pixel, apply_preprocess crops and
    # mirrors the uint8 images first (3x cheaper on ImageNet batches): the floats must not change.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 8, 7, 3), dtype=np.uint8)
    preprocess = pipeline.Preprocess(mean=mean, std='per_channel', scale=0.3, pad=pad, crop=5,
                                     bgr=True, resize=resize)
    norm = pipeline.compute_normalization(InMemorySource(images, np.zeros(16)), preprocess)
    height, width = (resize, resize) if resize else (8, 7)
    offsets = np.stack([rng.integers(0, height + 2 * pad - 4, 16), rng.integers(0, width + 2 * pad - 4, 16)], 1)
    for crops, flips in ((offsets, rng.random(16) < 0.5), (None, np.ones(16, bool)), (offsets, None)):
        settings = preprocess if crops is not None else dataclasses.replace(preprocess, crop=0)
        got = pipeline.apply_preprocess(images, settings, norm, crops, flips)
        want = reference_preprocess(images, settings, norm, crops, flips)
        assert got.shape == want.shape == (16, *settings.output_shape((height, width, 3))[:2], 3)
        assert got.dtype == want.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))

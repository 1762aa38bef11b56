"""Numpy batches from an ArraySource: order, per-process split, augmentation, normalisation.

Preprocessing follows the Caffe release (spec §2): the mean (per-pixel image or
per channel) is subtracted before zero padding, so padded pixels equal the mean;
train crops are random, eval crops centred; mirroring may apply at eval too.
Every random choice is a pure function of (seed, epoch, step), drawn for the
global batch and then sliced, so results do not depend on the process count.

A batch is a pure function of its step, so it can be made anywhere: in the
calling thread (behind `prefetch`), or, for sources that decode files
(`ArraySource.num_workers` > 0), in grain worker processes, each making whole
batches, returned in step order. Both give the same batches bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator

import ml_collections
import numpy as np

from nofe_jax.data import sources
from nofe_jax.data.sources import ArraySource, resize_image

# Distinct first words of the seed sequences, so the permutation, train
# augmentation and eval augmentation streams never coincide.
_PERMUTATION_STREAM, _TRAIN_AUG_STREAM, _EVAL_AUG_STREAM, _STATS_STREAM = range(4)

_MEAN_MODES = ('none', 'per_channel', 'per_pixel')
_STD_MODES = ('none', 'per_channel')


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How a uint8 batch becomes the float32 network input."""

    mean: str = 'none'  # 'none' | 'per_channel' | 'per_pixel'
    scale: float = 1.0  # multiplier after mean subtraction (1/255, or 1.0 for Caffe 0-255 inputs)
    std: str = 'none'  # 'none' | 'per_channel'
    bgr: bool = False  # reverse channel order, as Caffe/OpenCV
    pad: int = 0  # zero padding after mean subtraction
    crop: int = 0  # crop size; train random, eval centre; 0 = none
    flip: bool = False  # random horizontal flip at train
    test_flip: bool = False  # random horizontal flip at eval too (the release's ResNet)
    resize: int = 0  # resize the source images to resize x resize first; 0 = keep
    ten_crop: bool = False  # eval: 4 corner + centre crops and their mirrors, [b, 10, H', W', C]

    def __post_init__(self):
        if self.mean not in _MEAN_MODES:
            raise ValueError(f'preprocess.mean={self.mean!r}; valid: {", ".join(_MEAN_MODES)}')
        if self.std not in _STD_MODES:
            raise ValueError(f'preprocess.std={self.std!r}; valid: {", ".join(_STD_MODES)}')

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict | Preprocess) -> Preprocess:
        """Preprocess settings from a config's preprocess block."""
        if isinstance(config, Preprocess):
            return config
        return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls)})

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape [H',W',C] of one preprocessed image."""
        height, width, channels = image_shape
        if self.resize:
            height = width = self.resize
        if self.crop:
            return (self.crop, self.crop, channels)
        return (height + 2 * self.pad, width + 2 * self.pad, channels)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Training-split statistics: mean [H,W,C], [C] or [] and std [C] or [] (float32)."""

    mean: np.ndarray
    std: np.ndarray


def compute_normalization(train_source: ArraySource, preprocess: ml_collections.ConfigDict | Preprocess,
                          max_examples: int = 50_000, chunk_size: int = 1024, seed: int = 0) -> Normalization:
    """Mean image or channel means and channel stds of (a sample of) the training split."""
    preprocess = Preprocess.from_config(preprocess)
    if preprocess.mean == 'none' and preprocess.std == 'none':
        return Normalization(mean=np.zeros((), np.float32), std=np.ones((), np.float32))
    n = len(train_source)
    if n > max_examples:  # image folders: a sample is enough and avoids decoding everything
        indices = random_subset(n, max_examples, np.random.default_rng([_STATS_STREAM, seed]))
    else:
        indices = np.arange(n)
    total = total_sq = None
    for start in range(0, len(indices), chunk_size):
        images, _ = train_source.get(indices[start:start + chunk_size])
        x = _resize_batch(images, preprocess.resize).astype(np.float64)
        chunk_sum, chunk_sq = x.sum(0), np.square(x).sum(0)
        total = chunk_sum if total is None else total + chunk_sum
        total_sq = chunk_sq if total_sq is None else total_sq + chunk_sq
    pixel_mean = total / len(indices)  # [H,W,C]
    channel_mean = pixel_mean.mean((0, 1))
    channel_var = (total_sq / len(indices)).mean((0, 1)) - np.square(channel_mean)
    mean = {'none': np.zeros(()), 'per_channel': channel_mean, 'per_pixel': pixel_mean}[preprocess.mean]
    std = np.sqrt(np.maximum(channel_var, 1e-12)) if preprocess.std == 'per_channel' else np.ones(())
    return Normalization(mean=mean.astype(np.float32), std=std.astype(np.float32))


def _resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    if not size or images.shape[1:3] == (size, size):
        return images
    return np.stack([resize_image(image, size) for image in images])


def _crop_offsets(rng: np.random.Generator, n: int, size: tuple[int, int], crop: int,
                  train: bool) -> np.ndarray:
    """Top-left corners [n, 2]: uniform at train, centred at eval."""
    height, width = size
    if crop > height or crop > width:
        raise ValueError(f'crop {crop} is larger than the padded image {height}x{width}')
    if train:
        return np.stack([rng.integers(0, height - crop + 1, n), rng.integers(0, width - crop + 1, n)], 1)
    return np.tile([(height - crop) // 2, (width - crop) // 2], (n, 1))


def _draw_augmentation(rng: np.random.Generator, n: int, preprocess: Preprocess,
                       size: tuple[int, int], train: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Crop corners [n,2] (or None) and flip flags [n] (or None) for a global batch."""
    height, width = size
    padded = (height + 2 * preprocess.pad, width + 2 * preprocess.pad)
    offsets = _crop_offsets(rng, n, padded, preprocess.crop, train) if preprocess.crop else None
    flip = preprocess.flip if train else preprocess.test_flip
    flips = rng.random(n) < 0.5 if flip else None
    return offsets, flips


def apply_preprocess(images: np.ndarray, preprocess: Preprocess, normalization: Normalization,
                     offsets: np.ndarray | None = None, flips: np.ndarray | None = None) -> np.ndarray:
    """uint8 [b,H,W,C] -> float32 [b,H',W',C]: resize, normalise, pad, crop, flip, BGR."""
    x = _resize_batch(images, preprocess.resize)
    if not preprocess.pad and np.ndim(normalization.mean) <= 1 and np.ndim(normalization.std) <= 1:
        # Normalising is per element and the same at every pixel, so cropping and mirroring the
        # uint8 images first gives the same floats at a fraction of the cost.
        x = _crop_and_flip(x, preprocess.crop, offsets, flips)
        x = _normalized(x, preprocess, normalization)
    else:
        x = _normalized(x, preprocess, normalization)
        if preprocess.pad:
            p = preprocess.pad
            x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        x = _crop_and_flip(x, preprocess.crop, offsets, flips)
    if preprocess.bgr:
        x = x[..., ::-1]
    return np.ascontiguousarray(x, np.float32)


def _normalized(x: np.ndarray, preprocess: Preprocess, normalization: Normalization) -> np.ndarray:
    return (x.astype(np.float32) - normalization.mean) / normalization.std * np.float32(preprocess.scale)


def _crop_and_flip(x: np.ndarray, crop: int, offsets: np.ndarray | None,
                   flips: np.ndarray | None) -> np.ndarray:
    """Each image's crop x crop window at offsets[i] (None: all of it), mirrored where flips[i]."""
    if offsets is not None:
        x = np.stack([image[top:top + crop, left:left + crop] for image, (top, left) in zip(x, offsets)])
    if flips is not None and flips.any():
        x = x.copy() if offsets is None else x
        x[flips] = x[flips, :, ::-1]
    return x


def ten_crop_views(images: np.ndarray, preprocess: Preprocess, normalization: Normalization) -> np.ndarray:
    """[b,10,crop,crop,C]: the 4 corner crops and the centre crop, each also mirrored."""
    if not preprocess.crop:
        raise ValueError('preprocess.ten_crop needs preprocess.crop > 0 (the crop size).')
    height, width = _input_size(images, preprocess)
    height, width = height + 2 * preprocess.pad, width + 2 * preprocess.pad
    corners = [(0, 0), (0, width - preprocess.crop), (height - preprocess.crop, 0),
               (height - preprocess.crop, width - preprocess.crop),
               ((height - preprocess.crop) // 2, (width - preprocess.crop) // 2)]
    n = len(images)
    views = [apply_preprocess(images, preprocess, normalization, np.tile(corner, (n, 1)),
                              np.full(n, mirrored))
             for mirrored in (False, True) for corner in corners]
    return np.stack(views, axis=1)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full training batches per epoch (the remainder is dropped)."""
    return num_examples // batch_size


def num_eval_batches(num_examples: int, batch_size: int) -> int:
    """Eval batches needed to see every example once (the last one padded)."""
    return -(-num_examples // batch_size)


def random_subset(num_examples: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of min(size, num_examples) distinct examples drawn uniformly."""
    return np.sort(rng.choice(num_examples, size=min(size, num_examples), replace=False))


def _process_slice(batch_size: int, process_index: int, process_count: int) -> slice:
    """This process's contiguous part of a global batch."""
    if batch_size <= 0 or batch_size % process_count:
        raise ValueError(f'batch_size {batch_size} must be a positive multiple of '
                         f'process_count {process_count}')
    local = batch_size // process_count
    return slice(process_index * local, (process_index + 1) * local)


def _sliced(array: np.ndarray | None, part: slice) -> np.ndarray | None:
    return None if array is None else array[part]


def _input_size(images: np.ndarray, preprocess: Preprocess) -> tuple[int, int]:
    return (preprocess.resize, preprocess.resize) if preprocess.resize else images.shape[1:3]


def epoch_permutation(num_examples: int, *, epoch: int, seed: int) -> np.ndarray:
    """The training order of one epoch, a pure function of (seed, epoch)."""
    return np.random.default_rng([_PERMUTATION_STREAM, seed, epoch]).permutation(num_examples)


class _TrainBatch:
    """step -> this process's share of global training batch `step` of one epoch (picklable)."""

    def __init__(self, source: ArraySource, batch_size: int, epoch: int, seed: int,
                 preprocess: Preprocess, normalization: Normalization, mine: slice):
        self.source, self.batch_size, self.epoch, self.seed = source, batch_size, epoch, seed
        self.preprocess, self.normalization, self.mine = preprocess, normalization, mine
        self._order: np.ndarray | None = None

    def __getstate__(self) -> dict:
        # Workers redraw the permutation (a pure function) rather than receive N indices.
        return {**self.__dict__, '_order': None}

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        if self._order is None:
            self._order = epoch_permutation(len(self.source), epoch=self.epoch, seed=self.seed)
        batch_size, mine, preprocess = self.batch_size, self.mine, self.preprocess
        images, labels = self.source.get(self._order[step * batch_size:(step + 1) * batch_size][mine])
        rng = np.random.default_rng([_TRAIN_AUG_STREAM, self.seed, self.epoch, step])
        offsets, flips = _draw_augmentation(rng, batch_size, preprocess, _input_size(images, preprocess),
                                            train=True)
        return {
            'image': apply_preprocess(images, preprocess, self.normalization, _sliced(offsets, mine),
                                      _sliced(flips, mine)),
            'label': labels.astype(np.int32),
        }


def train_batches(source: ArraySource, batch_size: int, *, epoch: int, seed: int,
                  preprocess: ml_collections.ConfigDict | Preprocess, normalization: Normalization,
                  process_index: int = 0, process_count: int = 1, num_workers: int | None = None,
                  start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """One epoch of this process's share of each global training batch (remainder dropped).

    From batch `start_step` on (a resumed epoch: the same batches as skipping that many).
    `num_workers` worker processes make the batches (None: the source's `num_workers`;
    0: the calling thread); the batches are the same either way.
    """
    preprocess = Preprocess.from_config(preprocess)
    mine = _process_slice(batch_size, process_index, process_count)
    steps = steps_per_epoch(len(source), batch_size)
    if steps == 0:
        raise ValueError(f'{len(source)} training examples make no full batch of {batch_size}')
    make = _TrainBatch(source, batch_size, epoch, seed, preprocess, normalization, mine)
    yield from _made_in_order(make, range(start_step, steps), _workers(source, num_workers))


class _EvalBatch:
    """step -> this process's share of padded eval batch `step` (picklable)."""

    def __init__(self, source: ArraySource, batch_size: int, preprocess: Preprocess,
                 normalization: Normalization, mine: slice, seed: int, padded: np.ndarray,
                 is_real: np.ndarray):
        self.source, self.batch_size, self.preprocess = source, batch_size, preprocess
        self.normalization, self.mine, self.seed = normalization, mine, seed
        self.padded, self.is_real = padded, is_real  # [num_batches, batch_size]

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        preprocess, mine = self.preprocess, self.mine
        images, labels = self.source.get(self.padded[step, mine])
        if preprocess.ten_crop:
            image = ten_crop_views(images, preprocess, self.normalization)
        else:
            rng = np.random.default_rng([_EVAL_AUG_STREAM, self.seed, step])
            offsets, flips = _draw_augmentation(rng, self.batch_size, preprocess,
                                                _input_size(images, preprocess), train=False)
            image = apply_preprocess(images, preprocess, self.normalization, _sliced(offsets, mine),
                                     _sliced(flips, mine))
        return {
            'image': image,
            'label': labels.astype(np.int32),
            'mask': self.is_real[step, mine],
        }


def eval_batches(source: ArraySource, batch_size: int, *, preprocess: ml_collections.ConfigDict | Preprocess,
                 normalization: Normalization, process_index: int = 0, process_count: int = 1,
                 seed: int = 0, indices: np.ndarray | None = None,
                 num_workers: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """This process's share of padded eval batches; float32 `mask` marks each real example once overall.

    `num_workers` as in `train_batches`.
    """
    preprocess = Preprocess.from_config(preprocess)
    mine = _process_slice(batch_size, process_index, process_count)
    indices = np.arange(len(source)) if indices is None else np.asarray(indices)
    num_real = len(indices)
    num_batches = num_eval_batches(num_real, batch_size)
    # Pad with copies of the first example so every process runs the same number of full-shape steps.
    fill = np.full(num_batches * batch_size - num_real, indices[0] if num_real else 0, indices.dtype)
    padded = np.concatenate([indices, fill]).reshape(num_batches, batch_size)
    is_real = (np.arange(padded.size) < num_real).astype(np.float32).reshape(num_batches, batch_size)
    make = _EvalBatch(source, batch_size, preprocess, normalization, mine, seed, padded, is_real)
    yield from _made_in_order(make, range(num_batches), _workers(source, num_workers))


def _workers(source: ArraySource, num_workers: int | None) -> int:
    num_workers = source.num_workers if num_workers is None else num_workers
    if num_workers < 0:
        raise ValueError(f'num_workers={num_workers} must be >= 0')
    return num_workers


def _made_in_order(make: Callable[[int], dict[str, np.ndarray]], steps: range,
                   num_workers: int) -> Iterator[dict[str, np.ndarray]]:
    """make(step) for each step in order: here, or in `num_workers` grain worker processes."""
    if num_workers == 0 or len(steps) == 0:
        for step in steps:
            yield make(step)
        return
    import grain  # imports jax (seconds): only where worker processes are asked for
    from absl import flags

    if not flags.FLAGS.is_parsed():
        # grain 0.2.18 reads its absl flag grain_enable_multiprocess_worker_profiling unguarded,
        # which fails in programs that parse no absl flags (pytest, argparse benchmarks): give
        # them every flag's default, as an absl program without flags has.
        flags.FLAGS.mark_as_parsed()

    # Worker w makes batches w, w + n, w + 2n, ... and grain interleaves them back in order.
    # One reading thread per worker: the worker's core is busy making the batch itself.
    batches = (grain.MapDataset.range(steps.start, steps.stop, steps.step).map(make)
               .to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
               .mp_prefetch(grain.MultiprocessingOptions(num_workers=min(num_workers, len(steps)),
                                                         per_worker_buffer_size=2),
                            worker_init_fn=functools.partial(_init_worker, parent=os.getpid())))
    iterator = iter(batches)
    try:
        for batch in iterator:
            # Plain arrays over the workers' shared memory (no copy; freed with the last view).
            yield {key: np.asarray(value) for key, value in batch.items()}
    finally:  # an abandoned epoch (the end of a stage, a stop) stops its workers now
        iterator.close()


def _init_worker(worker_index: int, worker_count: int, *, parent: int) -> None:
    """Runs first in each worker process: decode in this process's thread; exit with `parent`."""
    del worker_index, worker_count
    sources.decode_serially()

    def exit_when_orphaned():
        # A SIGKILLed trainer cannot stop its workers; they would wait on a full queue forever.
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=exit_when_orphaned, daemon=True, name='exit-with-parent').start()


def prefetch(batches: Iterator[dict[str, np.ndarray]], size: int = 2) -> Iterator[dict[str, np.ndarray]]:
    """Runs a batch iterator `size` batches ahead in a background thread (hides image decoding).

    Abandoning the returned iterator (closing it, or dropping it) stops the thread and closes
    `batches` (and so any worker processes behind it).
    """
    ready: queue.Queue = queue.Queue(maxsize=size)
    done = object()
    stopped = threading.Event()

    def put(item) -> bool:
        while not stopped.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for batch in batches:
                if not put(batch):
                    break
            else:
                put(done)
        except BaseException as e:  # re-raised in the consumer, where it can be seen
            put(e)
        finally:
            close = getattr(batches, 'close', None)
            if close is not None:
                close()

    threading.Thread(target=produce, daemon=True).start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopped.set()

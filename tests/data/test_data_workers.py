"""Worker processes (grain) make the thread's batches bit for bit, resume exactly, name bad files.

Each pipeline with workers starts fresh processes, which import jax through grain (seconds on
a busy machine), so every test here starts as few as it can.
"""
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import ml_collections
import numpy as np
import pytest
from PIL import Image

from nofe_jax.data import pipeline, sources

pytest.importorskip('grain')

PREPROCESS = pipeline.Preprocess(mean='per_channel', pad=1, crop=6, flip=True, test_flip=True)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_folder(root, per_class=(9, 8, 7), size=(10, 12), image_format='PNG') -> None:
    """root/{train,test}/c<k>/<i>.<ext>: random images of varying size, deterministic."""
    rng = np.random.default_rng(0)
    for split, scale in (('train', 1), ('test', 2)):
        for label, count in enumerate(per_class):
            folder = os.path.join(root, split, f'c{label}')
            os.makedirs(folder, exist_ok=True)
            for i in range(max(1, count // scale)):
                shape = (size[0] + i % 3, size[1] - i % 2, 3)
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
                    os.path.join(folder, f'{i:03d}.{image_format.lower()}'), image_format)


def folder_config(root, num_workers: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(source='image_folder', data_dir=str(root), image_size=8,
                                          num_workers=num_workers))


def assert_same_batches(expected: list[dict], actual: list[dict]) -> None:
    assert len(expected) == len(actual)
    for want, got in zip(expected, actual):
        assert sorted(want) == sorted(got)
        for key in want:
            assert want[key].dtype == got[key].dtype and want[key].shape == got[key].shape, key
            np.testing.assert_array_equal(want[key], got[key], err_msg=key)


def test_workers_make_the_threads_batches_and_a_resumed_epoch_its_remaining_ones(tmp_path):
    write_folder(tmp_path)
    threaded = sources.load_dataset(folder_config(tmp_path, num_workers=0))
    workers = sources.load_dataset(folder_config(tmp_path, num_workers=2))
    assert (threaded.train.num_workers, workers.train.num_workers, workers.test.num_workers) == (0, 2, 2)
    norm = pipeline.compute_normalization(threaded.train, PREPROCESS)
    # As the loop reads a stage's training data: a subset, behind prefetch, skipping the batches
    # a resumed epoch has already trained on (loop.py: islice(train_batches(epoch), step % n)).
    subset = np.arange(1, len(threaded.train))
    kwargs = dict(epoch=3, seed=5, preprocess=PREPROCESS, normalization=norm, process_index=1,
                  process_count=2)
    whole = list(pipeline.train_batches(sources.SubsetSource(threaded.train, subset), 4, **kwargs))
    assert len(whole) == 5 and whole[0]['image'].shape == (2, 6, 6, 3)
    resumed = itertools.islice(pipeline.prefetch(pipeline.train_batches(
        sources.SubsetSource(workers.train, subset), 4, **kwargs)), 2, None)
    assert_same_batches(whole[2:], list(resumed))
    # start_step gives the same remaining batches without making the skipped ones.
    started = pipeline.train_batches(threaded.train, 4, start_step=2, **kwargs)
    assert_same_batches(list(pipeline.train_batches(threaded.train, 4, **kwargs))[2:], list(started))
    # Eval: padded, masked, mirrored at random (test_flip), likewise identical (one worker: the
    # interleaving of two is shown above, and each start costs seconds).
    eval_kwargs = dict(preprocess=PREPROCESS, normalization=norm, seed=5)
    assert_same_batches(list(pipeline.eval_batches(threaded.test, 4, **eval_kwargs)),
                        list(pipeline.eval_batches(workers.test, 4, num_workers=1, **eval_kwargs)))


def test_in_memory_sources_keep_the_thread():
    config = ml_collections.ConfigDict(dict(
        source='synthetic', synthetic_shape=(4, 4, 1), synthetic_classes=2, synthetic_train_size=8,
        synthetic_test_size=4, seed=0, num_workers=2))
    dataset = sources.load_dataset(config)
    assert dataset.train.num_workers == dataset.test.num_workers == 0


def test_num_workers_must_be_a_count():
    config = ml_collections.ConfigDict(dict(
        source='synthetic', image_size=0, synthetic_shape=(4, 4, 1), synthetic_classes=2,
        synthetic_train_size=8, synthetic_test_size=4, seed=0, num_workers=-1))
    assert sources.data_problems(config) == ['data.num_workers=-1 must be >= 0.']


@pytest.mark.parametrize('num_workers', [0, 1])
def test_a_corrupt_jpeg_fails_with_its_path(tmp_path, num_workers):
    write_folder(tmp_path, per_class=(4, 4), size=(40, 40), image_format='JPEG')
    bad = tmp_path / 'train' / 'c1' / '002.jpeg'
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 2])  # truncated: PIL's own message names no file
    dataset = sources.load_dataset(folder_config(tmp_path, num_workers))
    norm = pipeline.Normalization(mean=np.zeros((), np.float32), std=np.ones((), np.float32))
    batches = pipeline.prefetch(pipeline.train_batches(dataset.train, 8, epoch=0, seed=0,
                                                       preprocess=PREPROCESS, normalization=norm))
    with pytest.raises(sources.UnreadableImageError, match=f'cannot decode image {bad}: OSError'):
        list(batches)


def test_prefetch_closes_an_abandoned_iterator():
    closed = []

    def endless():
        try:
            for i in itertools.count():
                yield {'x': i}
        finally:
            closed.append(True)

    batches = pipeline.prefetch(endless())
    assert next(batches)['x'] == 0
    batches.close()
    deadline = time.monotonic() + 10
    while not closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed


_ORPHAN_SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np, psutil
    from nofe_jax.data import pipeline, sources

    if __name__ == '__main__':
        source = sources.ImageFolderSource(sys.argv[1], image_size=8)
        norm = pipeline.Normalization(mean=np.zeros((), np.float32), std=np.ones((), np.float32))
        batches = pipeline.train_batches(source, 2, epoch=0, seed=0, preprocess=pipeline.Preprocess(),
                                         normalization=norm, num_workers=1)
        next(batches)
        print(json.dumps([p.pid for p in psutil.Process().children()]), flush=True)
        sys.stdin.read()  # until killed
''')


def test_workers_exit_when_their_trainer_is_killed(tmp_path):
    psutil = pytest.importorskip('psutil')
    write_folder(tmp_path)
    process = subprocess.Popen([sys.executable, '-c', _ORPHAN_SCRIPT, str(tmp_path / 'train')],
                               cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, 'PYTHONPATH': REPO})
    try:
        children = [psutil.Process(pid) for pid in json.loads(process.stdout.readline())]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert children  # the worker (and multiprocessing's resource tracker)
    _, alive = psutil.wait_procs(children, timeout=20)
    assert alive == []

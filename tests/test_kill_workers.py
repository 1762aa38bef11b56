"""Worker processes in a real run: killed mid-epoch and rerun, it ends bitwise as the thread's run.

The quickstart base smoke (42 steps, one epoch, checkpoints every 10) reads scikit-learn's
digits exported to an image folder: once uninterrupted with the thread (data.num_workers=0),
once with a worker process, SIGKILLed at step 15 and rerun, so the rerun resumes at step 10
inside the epoch (the loop skips the batches already trained on) and evaluates with workers.
(Two workers' interleaving is tests/data/test_data_workers.py's; each start costs seconds.)
"""
import os
import time

import pytest
from PIL import Image

from experiments.benchmarks import kill_soak
from nofe_jax.data import sources

pytest.importorskip('grain')


def write_digits_folder(root) -> str:
    """root/{train,test}/<digit>/<n>.png: the digits split, losslessly."""
    digits = sources.load_digits_dataset()
    for split, source in (('train', digits.train), ('test', digits.test)):
        for n, (image, label) in enumerate(zip(source.images, source.labels)):
            folder = os.path.join(root, split, str(label))
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image[..., 0]).save(os.path.join(folder, f'{n:04d}.png'))
    return str(root)


def run_counting_workers(args, workdir, kill_at=None) -> tuple[int, int]:
    """(return code, how many worker processes the run started), as kill_soak.run_once runs it."""
    psutil = pytest.importorskip('psutil')
    process, workers = kill_soak.start(args, workdir, kill_at), set()
    while process.poll() is None:
        try:
            children = psutil.Process(process.pid).children()
        except psutil.NoSuchProcess:
            break
        for child in children:
            try:
                if 'spawn_main' in ' '.join(child.cmdline()):  # not the resource tracker
                    workers.add(child.pid)
            except psutil.Error:
                pass
        time.sleep(0.1)
    return process.wait(), len(workers)


def test_a_run_with_workers_killed_mid_epoch_ends_as_the_threads_uninterrupted_run(tmp_path):
    root = write_digits_folder(tmp_path / 'digits')
    assert sorted(os.listdir(os.path.join(root, 'train'))) == [str(d) for d in range(10)]
    args = (*kill_soak.RECIPE_ARGS['base'], '--config.data.source=image_folder',
            f'--config.data.data_dir={root}')
    reference, killed = tmp_path / 'thread', tmp_path / 'workers'
    assert run_counting_workers((*args, '--config.data.num_workers=0'), reference) == (0, 0)
    workers = (*args, '--config.data.num_workers=1')
    code, started = run_counting_workers(workers, killed, 'step:15')
    assert code == kill_soak.KILLED and started >= 1
    code, started = run_counting_workers(workers, killed)
    assert code == 0 and started >= 2  # the resumed epoch's and the evaluation's at least
    assert kill_soak.restarts(killed) == 1
    assert kill_soak.differences(reference, killed) == []

r"""Input-pipeline images/s beside model-training images/s: is the pipeline the bottleneck?

  python -m experiments.benchmarks.input_pipeline
  python -m experiments.benchmarks.input_pipeline --config_args=model=alexnet_c100,pad=2 \
      --json_out=/tmp/pipe.json

Two data sets, both read as `experiments/configs/fashion_mnist_nofe.py:<config_args>` reads
them (the config's preprocessing, batch size and seed): (a) `idx`, the Fashion-MNIST IDX files
of the Debian `dataset-fashion-mnist` package, held in memory; (b) `image_folder`, a copy of
the first `num_images` / 10 Fashion-MNIST training images of each class (and a tenth as many
test images) written once as PNG files into root/{train,test}/<class>/ in a temporary folder
and decoded with PIL on access (`sources.ImageFolderSource`, 8 threads).

Measured side by side in one run, for each data set:

- pipeline: iterating `_Runner.train_batches(epoch)` of the loop (`pipeline.train_batches`
  behind `pipeline.prefetch`, 2 batches ahead on a host thread) and handing every batch to
  the device as the loop does (`parallel.to_global`), with no model: `pipeline_batches`
  batches per round (0 = one epoch), round r iterating epoch r.
- model: the loop's jitted train step (`steps.make_train_step`, the config's optimiser) of
  the flat base model (`methods/flat/recipe.py`'s stage, on the generalist's train/optim settings),
  the K-way generalist and the NofE (`methods/nofe/recipe.py`: `generalist_stage` / `nofe_stage` over a
  random balanced partition) on a few batches already on the device, compiled first,
  `iterations` steps per round (`--stages` picks which of the three).
- base fed: the flat base model's train step on the batches of epoch r as the loop gets
  them (the pipeline above feeding the step, sharing the cores with it), `iterations` steps.

Rounds alternate between the pipeline and the models so that background load hits all
alike; each reports its median images/s. ratio = pipeline / the fastest model; PASS when
the pipeline outruns the fastest train step (it is then not the bottleneck of any stage),
FAIL otherwise. As the pipeline's threads and XLA share the cores in a real run, "base
fed / resident" shows what feeding costs the step (1.00 = nothing).

Measured with the defaults (tiny_cnn, batch 128) on 2 CPU cores shared with a training run:
IDX 257,000 img/s and image folder 13,700 img/s against 940 img/s for the fastest train step
(PASS, 272x and 15x); fed by the pipeline, the base step kept 0.98 (IDX) and 0.91 (folder) of
its device-resident speed. The folder's rate is PNG opening and decoding, about 60 us per
28x28 file, which 8 threads barely speed up at this size (16,700 img/s vs 14,800 with one):
an accelerator stepping tiny_cnn faster than that would wait for it.
Prints a Markdown table and one JSON line; `--json_out` also writes that JSON to a file.

ImageNet-like case (`--case=imagenet_like`): does the pipeline scale with cores on real-sized
JPEGs, and how many cores does a host need to feed a model?

  python -m experiments.benchmarks.input_pipeline --case=imagenet_like --num_images=500 \
      --model_images_per_s=3000

writes `num_images` synthetic JPEGs with ImageNet's size distribution (long side 500 for most,
others 300..800 wide or tall, aspect 4:3 / 3:2 / 1:1; smooth colour fields plus grain, quality
90: about 485x385 and 100 KB on average) once into `--cache_dir`, then reads them as an
ImageNet config does (`imagenet10k_deepme.py`: an image folder resized to 256, random 224
crops and mirrors; `sources.ImageFolderSource`, `pipeline.train_batches` behind
`pipeline.prefetch`) with the thread (num_workers 0; the folder's 8 decoding threads) and
with 1 and 2 worker processes (`--workers`), in alternating rounds, one epoch each. Reported
per reader: seconds to the first batch (worker start-up), images/s after it (median over
rounds, the first batch of each worker left out) and over the whole epoch, and the CPU time
per image left in the training process (with workers: receiving the batches). A reader that
decodes serially in one thread gives the CPU time per image, whence images/s per core and the
cores a host needs to feed `--model_images_per_s`; that time is split into decoding (which the
thread reader spreads over its threads) and batch augmentation (which it runs in its one
prefetch thread: the thread's ceiling on any number of cores). The synthetic images are
somewhat smaller than ImageNet's (about 485x385, 103 KB). On a machine shared with other work
the CPU times are the steadier figures: wall-clock rates there depend on what else runs.

Measured with the command above on 2 CPU cores shared with four other engineers' work (1-min
load average 11-13), two runs: one core decodes and augments 198 and 208 img/s (5.1 and 4.8
CPU ms per image: 3.8-4.2 decoding + resizing, 1.0-1.2 augmenting), so 3,000 img/s takes 15-16
cores; the thread 103 and 116 img/s, 1 worker 80 and 73, 2 workers 87 and 83 (no scaling is
visible where the machine is 6x oversubscribed), workers leaving 0.2 CPU ms per image in the
training process against the thread's 5; workers start in 6.5-6.8 s (1) and 13.6-13.7 s (2),
as each imports jax (grain does). The thread's augmentation caps it at 830-1,010 img/s on any
number of cores; workers have no such cap.
"""
import argparse
import contextlib
import io
import itertools
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from PIL import Image

from experiments import benchmarks
from experiments.configs import fashion_mnist_nofe
from nofe_jax import parallel
from nofe_jax.data import pipeline, sources
from nofe_jax.grouping import specialties
from nofe_jax.methods.nofe import recipe as nofe_recipe
from nofe_jax.models import registry
from nofe_jax.training import loop, tasks
from nofe_jax.training import run as run_lib

DATASETS = ('idx', 'image_folder')
MODEL_STAGES = ('base', 'generalist', 'nofe')
TRAIN_BATCHES = 4  # distinct device-resident batches the timed train steps cycle through


def folder_name(label: int, class_name: str) -> str:
    """Class folder name that sorts in label order ('T-shirt/top' -> '00_T-shirt-top')."""
    return f'{label:02d}_{class_name.replace("/", "-")}'


def write_image_folder(root: str, num_images: int, data_dir: str = '') -> str:
    """root/{train,test}/<class>/<n>.png: the first num_images / 10 Fashion-MNIST training images
    of each class (num_images / 100 test images); deterministic. Returns root."""
    fashion = sources.load_idx_dataset(data_dir)
    per_class = {'train': num_images // fashion.num_classes, 'test': max(1, num_images // 100)}
    for split, source in (('train', fashion.train), ('test', fashion.test)):
        for label, name in enumerate(fashion.class_names):
            folder = os.path.join(root, split, folder_name(label, name))
            os.makedirs(folder, exist_ok=True)
            for n, index in enumerate(np.flatnonzero(source.labels == label)[:per_class[split]]):
                Image.fromarray(source.images[index, :, :, 0]).save(os.path.join(folder, f'{n:05d}.png'))
    return root


def data_config(dataset: str, config_args: str, batch_size: int, image_root: str):
    """`fashion_mnist_nofe.py:<config_args>` reading `dataset` (idx, or the folder under image_root)."""
    config = fashion_mnist_nofe.get_config(config_args)
    if dataset == 'image_folder':
        config.data.update(source='image_folder', data_dir=image_root)
    if batch_size:
        for stage in (config.generalist, config.experts):
            stage.train.batch_size = batch_size
    return config


def build_stages(run: run_lib.Run, seed: int) -> dict[str, loop.Stage]:
    """The flat base model, the generalist and the NofE stages, as their recipes build them."""
    config, num_classes = run.config, run.dataset.num_classes
    partition = specialties.random_balanced(num_classes, config.nofe.num_experts, np.random.default_rng(seed))
    flat = loop.Stage(name='base', model=registry.build_base(config.model.name, num_classes,
                                                             **run_lib.model_overrides(config)),
                      task=tasks.ClassificationTask(num_classes), train_config=config.generalist.train,
                      optim_config=config.generalist.optim)
    subsets = nofe_recipe.count_subsets(run)
    return {'base': flat, 'generalist': nofe_recipe.generalist_stage(run, partition, False, subsets),
            'nofe': nofe_recipe.nofe_stage(run, partition, None)[0]}


def pipeline_round(runner: loop._Runner, pipeline_batches: int, record: dict) -> Callable[[int], float]:
    """round(r) -> images/s of the loop's prefetched train batches of epoch r, placed on the device."""
    def round_(r: int) -> float:
        limit = pipeline_batches or runner.steps_per_epoch
        start = time.perf_counter()
        count, images, last = 0, 0, None
        for batch in itertools.islice(runner.train_batches(r), limit):
            record['image_shapes'].add(tuple(batch['image'].shape))
            record['label_shapes'].add(tuple(batch['label'].shape))
            last = parallel.to_global(batch, runner.batch_sharding)
            count, images = count + 1, images + batch['image'].shape[0]
        jax.block_until_ready(last)
        seconds = time.perf_counter() - start
        record['batches_per_round'].add(count)
        return images / seconds
    return round_


def model_rounds(runner: loop._Runner, stage: loop.Stage,
                 iterations: int) -> dict[str, Callable[[int], float]]:
    """{'resident': round, 'fed': round}, round(r) -> images/s of `iterations` compiled train steps
    (one state) on device-resident batches, or on the batches of epoch r as the loop gets them."""
    batches = [parallel.to_global(b, runner.batch_sharding)
               for b in itertools.islice(runner.train_batches(0), TRAIN_BATCHES)]
    grouping = runner.device_grouping(stage.grouping)
    holder = {'state': runner.init_state(runner.model_input())}
    holder['state'], metrics = runner.train_step(holder['state'], batches[0], grouping)  # compile
    jax.block_until_ready(metrics)

    def steps_on(inputs: Iterator[dict]) -> float:
        start = time.perf_counter()
        for batch in itertools.islice(inputs, iterations):
            holder['state'], metrics = runner.train_step(holder['state'], batch, grouping)
        jax.block_until_ready((holder['state'], metrics))
        return iterations * stage.train_config.batch_size / (time.perf_counter() - start)

    return {'resident': lambda r: steps_on(itertools.cycle(batches)),
            'fed': lambda r: steps_on(parallel.to_global(b, runner.batch_sharding)
                                      for b in runner.train_batches(r))}


def measure(dataset: str, config_args: str = '', batch_size: int = 0, image_root: str = '',
            pipeline_batches: int = 0, iterations: int = 10, rounds: int = 5, seed: int = 0,
            model_stages: Sequence[str] = MODEL_STAGES) -> dict[str, Any]:
    """One row: pipeline and model images/s on `dataset`, their ratio and the verdict."""
    config = data_config(dataset, config_args, batch_size, image_root)
    with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
        run = run_lib.prepare_run(config, workdir)
        stages = {name: stage for name, stage in build_stages(run, seed).items() if name in model_stages}
        runners = {name: loop._Runner(stage, run.dataset, run.normalization, config)  # pylint: disable=W0212
                   for name, stage in stages.items()}
        record = {'image_shapes': set(), 'label_shapes': set(), 'batches_per_round': set()}
        timed = {'pipeline': pipeline_round(runners[model_stages[0]], pipeline_batches, record)}
        for name, stage in stages.items():
            rounds_of = model_rounds(runners[name], stage, iterations)
            timed[name] = rounds_of['resident']
            if name == 'base':
                timed['base_fed'] = rounds_of['fed']
        rates = {name: [] for name in timed}
        for r in range(rounds):
            for name, round_ in timed.items():
                rates[name].append(round_(r))
        run.writer.close()
    median = {name: statistics.median(values) for name, values in rates.items()}
    fastest = max(model_stages, key=median.get)
    ratio = median['pipeline'] / median[fastest]
    row = {'dataset': dataset, 'description': run.dataset.description, 'model': config.model.name,
           'num_experts': config.nofe.num_experts, 'batch_size': config.generalist.train.batch_size,
           'train_images': len(run.dataset.train),
           'steps_per_epoch': runners[model_stages[0]].steps_per_epoch,
           'preprocess': config.data.preprocess.to_dict(),
           'batch_image_shapes': sorted(list(s) for s in record['image_shapes']),
           'batch_label_shapes': sorted(list(s) for s in record['label_shapes']),
           'batches_per_round': sorted(record['batches_per_round']),
           **{f'{name}_images_per_s': value for name, value in median.items()},
           'fastest_model': fastest, 'ratio': ratio, 'verdict': 'PASS' if ratio > 1 else 'FAIL'}
    if 'base_fed' in median:
        row['base_fed_over_resident'] = median['base_fed'] / median['base']
    return row


def run_benchmark(datasets: Sequence[str] = DATASETS, config_args: str = '', batch_size: int = 0,
                  num_images: int = 2000, pipeline_batches: int = 0, iterations: int = 10, rounds: int = 5,
                  seed: int = 0, model_stages: Sequence[str] = MODEL_STAGES) -> dict[str, Any]:
    """Every data set's row, as a JSON-ready dict."""
    unknown = sorted(set(datasets) - set(DATASETS)) + sorted(set(model_stages) - set(MODEL_STAGES))
    if unknown or not model_stages:
        raise ValueError(f'Unknown data sets or stages {unknown}; valid: {list(DATASETS)} and '
                         f'a non-empty subset of {list(MODEL_STAGES)}.')
    with tempfile.TemporaryDirectory() as image_root:
        if 'image_folder' in datasets:
            write_image_folder(image_root, num_images)
        rows = [measure(d, config_args, batch_size, image_root, pipeline_batches, iterations, rounds, seed,
                        model_stages) for d in datasets]
    return {'backend': jax.default_backend(), 'device': str(jax.devices()[0].device_kind),
            'config': 'fashion_mnist_nofe.py' + (f':{config_args}' if config_args else ''),
            'num_images': num_images, 'pipeline_batches': pipeline_batches, 'iterations': iterations,
            'rounds': rounds, 'model_stages': list(model_stages), 'rows': rows}


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of `run_benchmark`'s result."""
    stages = result['model_stages']
    fed = 'base' in stages
    lines = [f"{result['config']} on {result['backend']} ({result['device']}); images/s, median of "
             f"{result['rounds']} alternating rounds (pipeline: "
             f"{result['pipeline_batches'] or 'one epoch of'} batches, models: {result['iterations']} steps)",
             '',
             '| data | train images | batch | pipeline img/s | ' + ''.join(f'{s} img/s | ' for s in stages)
             + 'pipeline / fastest | verdict |'
             + (' base fed by the pipeline img/s (/ resident) |' if fed else ''),
             '|---|---:|---:|---:|' + '---:|' * len(stages) + '---:|---|' + ('---:|' if fed else '')]
    for r in result['rows']:
        line = (f"| {r['dataset']} | {r['train_images']} | {r['batch_size']} | "
                f"{r['pipeline_images_per_s']:.0f} | "
                + ''.join(f"{r[f'{s}_images_per_s']:.0f} | " for s in stages)
                + f"{r['ratio']:.2f} | {r['verdict']} |")
        if fed:
            line += f" {r['base_fed_images_per_s']:.0f} ({r['base_fed_over_resident']:.2f}) |"
        lines.append(line)
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- ImageNet-like JPEGs

IMAGENET_LIKE_CLASSES = 10
# (width, height) shapes with their shares: most ImageNet photos are 500 pixels on the long side.
_LANDSCAPE_SHAPES = ((500, 375), (500, 333), (500, 500), (400, 300), (640, 480), (800, 600), (300, 225))
_SHAPE_SHARES = (0.5, 0.2, 0.05, 0.08, 0.07, 0.02, 0.08)
_PORTRAIT_SHARE = 0.12


def imagenet_like_shape(rng: np.random.Generator, scale: float = 1.0) -> tuple[int, int]:
    """(width, height) of one image: ImageNet's mix of 500x375-like photos (`scale` shrinks them)."""
    width, height = _LANDSCAPE_SHAPES[rng.choice(len(_LANDSCAPE_SHAPES), p=_SHAPE_SHARES)]
    if rng.random() < _PORTRAIT_SHARE:
        width, height = height, width
    return max(8, round(width * scale)), max(8, round(height * scale))


def imagenet_like_image(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A photo-like RGB image: a smooth random colour field plus fine grain (JPEG: about 110 KB
    at 500x375, quality 90, as ImageNet's photos)."""
    width, height = size
    coarse = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 9), 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize(size, Image.BICUBIC), np.float32)
    grain = rng.normal(0, 20, (height, width, 1)) + rng.normal(0, 10, (height, width, 3))
    return Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8))


def write_imagenet_like(cache_dir: str, num_images: int, scale: float = 1.0, seed: int = 0) -> str:
    """<cache_dir>/imagenet_like-n<N>-x<scale>-s<seed>/<class>/<i>.jpg, written once (renamed into
    place whole, so an interrupted write is never reused); returns that folder."""
    root = os.path.join(os.path.expanduser(cache_dir), f'imagenet_like-n{num_images}-x{scale:g}-s{seed}')
    if os.path.isdir(root):
        return root
    os.makedirs(os.path.dirname(root), exist_ok=True)
    partial = tempfile.mkdtemp(prefix=os.path.basename(root) + '.partial-', dir=os.path.dirname(root))
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        folder = os.path.join(partial, f'class_{i % IMAGENET_LIKE_CLASSES:02d}')
        os.makedirs(folder, exist_ok=True)
        image = imagenet_like_image(rng, imagenet_like_shape(rng, scale))
        image.save(os.path.join(folder, f'{i:06d}.jpg'), 'JPEG', quality=90)
    try:
        os.rename(partial, root)
    except OSError:  # another run wrote it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    return root


def folder_stats(root: str) -> dict[str, float]:
    """Mean width, height and file size (KB) of the JPEGs under root/<class>/."""
    source = sources.ImageFolderSource(root)
    sizes = []
    for path in source.paths:
        with Image.open(path) as image:
            sizes.append(image.size)
    widths, heights = np.asarray(sizes, np.float64).T
    kilobytes = [os.path.getsize(path) / 1000 for path in source.paths]
    return {'mean_width': float(widths.mean()), 'mean_height': float(heights.mean()),
            'mean_kb': float(np.mean(kilobytes)), 'min_side': int(min(widths.min(), heights.min())),
            'max_side': int(max(widths.max(), heights.max()))}


def reader_round(root: str, num_workers: int, batch_size: int, resize: int, crop: int, seed: int,
                 decode_threads: int = 8) -> Callable[[int], dict[str, float]]:
    """round(r) -> one epoch (epoch r) of decode + resize + random crop + flip, read as the loop
    reads it: seconds to the first batch, images/s once every worker has delivered its first
    batch (the steady rate: the start-up and what the workers made meanwhile are left out),
    images/s over the whole epoch, and the CPU ms per image this (the training) process spent:
    all of the work for the thread readers, receiving the batches for the worker readers."""
    source = sources.ImageFolderSource(root, image_size=resize, num_threads=decode_threads,
                                       num_workers=num_workers)
    preprocess = pipeline.Preprocess(mean='per_channel', scale=1.0 / 255.0, crop=crop, flip=True)
    # ImageNet's channel means: the subtraction costs what it costs in a run.
    normalization = pipeline.Normalization(mean=np.asarray([124.0, 116.0, 104.0], np.float32),
                                           std=np.ones((), np.float32))
    skip = max(1, num_workers)

    def round_(r: int) -> dict[str, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        batches = pipeline.train_batches(source, batch_size, epoch=r, seed=seed, preprocess=preprocess,
                                         normalization=normalization)
        if decode_threads > 1 or num_workers:  # the loop's reading; the one-core reader is bare
            batches = pipeline.prefetch(batches)
        times, images = [], []
        for batch in batches:
            assert batch['image'].shape == (batch_size, crop, crop, 3), batch['image'].shape
            times.append(time.perf_counter())
            images.append(batch['image'].shape[0])
        cpu = time.process_time() - cpu_start
        return {'first_batch_s': times[0] - start,
                'images_per_s': sum(images[skip:]) / (times[-1] - times[skip - 1]),
                'epoch_images_per_s': sum(images) / (times[-1] - start),
                'cpu_ms_per_image': 1000 * cpu / sum(images)}
    return round_


def cost_split(root: str, batch_size: int, resize: int, crop: int, seed: int) -> dict[str, float]:
    """CPU ms per image of decoding + resizing (`source.get`, which the thread reader spreads over
    its decoding threads) and of the batch augmentation (`apply_preprocess`, which it runs in its
    one prefetch thread), one thread, one epoch. 1000 / the latter bounds the thread reader's
    images/s on any number of cores."""
    source = sources.ImageFolderSource(root, image_size=resize, num_threads=1)
    preprocess = pipeline.Preprocess(mean='per_channel', scale=1.0 / 255.0, crop=crop, flip=True)
    normalization = pipeline.Normalization(mean=np.asarray([124.0, 116.0, 104.0], np.float32),
                                           std=np.ones((), np.float32))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(source))
    decode = augment = 0.0
    count = len(source) // batch_size * batch_size
    for start in range(0, count, batch_size):
        t0 = time.process_time()
        images, _ = source.get(order[start:start + batch_size])
        t1 = time.process_time()
        offsets = np.stack([rng.integers(0, resize - crop + 1, batch_size)] * 2, 1)
        pipeline.apply_preprocess(images, preprocess, normalization, offsets, rng.random(batch_size) < 0.5)
        t2 = time.process_time()
        decode, augment = decode + t1 - t0, augment + t2 - t1
    return {'decode_ms_per_image': 1000 * decode / count, 'augment_ms_per_image': 1000 * augment / count}


def run_imagenet_like(cache_dir: str, num_images: int = 500, workers: Sequence[int] = (0, 1, 2),
                      batch_size: int = 32, resize: int = 256, crop: int = 224, rounds: int = 3,
                      model_images_per_s: float = 3000.0, scale: float = 1.0,
                      seed: int = 0) -> dict[str, Any]:
    """The one-core reader's row, then every reader's (thread, worker counts), JSON-ready."""
    if num_images < (max(workers) + 2) * batch_size:
        raise ValueError(f'num_images={num_images} must give at least {max(workers) + 2} batches '
                         f'of {batch_size}')
    root = write_imagenet_like(cache_dir, num_images, scale, seed)
    # 'core': the thread reader decoding in that one thread, nothing ahead: what one core does.
    readers = {'1 core (serial)': reader_round(root, 0, batch_size, resize, crop, seed, decode_threads=1),
               **{'thread' if w == 0 else f'{w} worker' + 's' * (w > 1):
                  reader_round(root, w, batch_size, resize, crop, seed) for w in workers}}
    measured = {name: [] for name in readers}
    for r in range(rounds):  # alternating, so background load hits every reader alike
        for name, round_ in readers.items():
            measured[name].append(round_(r))
    split = cost_split(root, batch_size, resize, crop, seed)
    core = statistics.median(m['cpu_ms_per_image'] for m in measured['1 core (serial)'])
    per_core = 1000 / max(core, 1e-6)
    rows = []
    for (name, values), w in zip(measured.items(), [None, *workers]):
        median = {key: statistics.median(m[key] for m in values) for key in values[0]}
        rows.append({'reader': name, 'num_workers': w, **median,
                     'images_per_s_all_rounds': [m['images_per_s'] for m in values]})
    for row in rows:
        row['over_thread'] = row['images_per_s'] / rows[1]['images_per_s']
    return {'case': 'imagenet_like', 'folder': root, 'num_images': num_images, **folder_stats(root),
            'batch_size': batch_size, 'resize': resize, 'crop': crop, 'rounds': rounds,
            'cpu_ms_per_image_one_core': core, 'images_per_s_per_core': per_core, **split,
            'thread_ceiling_images_per_s': 1000 / max(split['augment_ms_per_image'], 1e-6),
            'model_images_per_s': model_images_per_s,
            'cores_to_feed_model': math.ceil(model_images_per_s / per_core),
            'cpu_count': os.cpu_count(), 'load_average_1min': os.getloadavg()[0], 'rows': rows}


def format_imagenet_like(result: dict[str, Any]) -> str:
    """Markdown table of `run_imagenet_like`'s result, and the cores a host needs."""
    lines = [f"{result['num_images']} synthetic JPEGs, mean {result['mean_width']:.0f}x"
             f"{result['mean_height']:.0f}, {result['mean_kb']:.0f} KB; decode + resize "
             f"{result['resize']} + random crop {result['crop']} + flip, batch {result['batch_size']}; "
             f"median of {result['rounds']} alternating rounds of one epoch; {result['cpu_count']} cores, "
             f"1-min load average {result['load_average_1min']:.1f} at the end",
             '',
             '| reader | first batch s | img/s (steady) | / thread | img/s (epoch) '
             '| trainer CPU ms / img |',
             '|---|---:|---:|---:|---:|---:|']
    for r in result['rows']:
        lines.append(f"| {r['reader']} | {r['first_batch_s']:.2f} | {r['images_per_s']:.0f} | "
                     f"{r['over_thread']:.2f} | {r['epoch_images_per_s']:.0f} | "
                     f"{r['cpu_ms_per_image']:.1f} |")
    lines += ['', f"One core decodes and augments {result['images_per_s_per_core']:.0f} img/s "
                  f"({result['cpu_ms_per_image_one_core']:.1f} CPU ms per image): feeding "
                  f"{result['model_images_per_s']:g} img/s takes {result['cores_to_feed_model']} cores "
                  f"(as many workers), plus what the training process itself uses.",
              f"Of each image's cost, decoding + resizing takes {result['decode_ms_per_image']:.1f} ms "
              f"(spread over the thread reader's decoding threads) and the batch augmentation "
              f"{result['augment_ms_per_image']:.1f} ms (in its one prefetch thread): the thread "
              f"cannot pass {result['thread_ceiling_images_per_s']:.0f} img/s on any number of cores; "
              f"workers do both in parallel."]
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses `argv`, runs the benchmark, prints the table and one JSON line; returns the result."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--case', default='fashion', choices=('fashion', 'imagenet_like'),
                        help='fashion: pipeline beside the train steps; imagenet_like: JPEG readers')
    parser.add_argument('--datasets', default=','.join(DATASETS), help='comma-separated: idx, image_folder')
    parser.add_argument('--config_args', default='', help='fashion_mnist_nofe.py arguments, e.g. k=5')
    parser.add_argument('--batch_size', type=int, default=0, help="0 = the config's (128)")
    parser.add_argument('--num_images', type=int, default=None,
                        help='training images in the image folder (default: fashion 2000, imagenet_like 500)')
    parser.add_argument('--pipeline_batches', type=int, default=0,
                        help='batches per pipeline round; 0 = an epoch')
    parser.add_argument('--stages', default=','.join(MODEL_STAGES),
                        help='comma-separated model stages to time: base, generalist, nofe')
    parser.add_argument('--iterations', type=int, default=10, help='timed train steps per round')
    parser.add_argument('--rounds', type=int, default=5, help='alternating rounds (median)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json_out', default=None, help='also write the JSON result here')
    imagenet = parser.add_argument_group('imagenet_like')
    imagenet.add_argument('--cache_dir', default='~/.cache/nofe_jax/benchmarks',
                          help='where the JPEG folder is written once and reused')
    imagenet.add_argument('--workers', default='0,1,2', help='readers: 0 = the thread, n = n worker processes')
    imagenet.add_argument('--model_images_per_s', type=float, default=3000.0,
                          help='the rate to feed (3000: AlexNet training on one GPU)')
    imagenet.add_argument('--resize', type=int, default=256)
    imagenet.add_argument('--crop', type=int, default=224)
    imagenet.add_argument('--image_scale', type=float, default=1.0, help='shrinks every image (tests)')
    args = parser.parse_args(argv)
    if args.case == 'imagenet_like':
        result = run_imagenet_like(args.cache_dir, args.num_images or 500,
                                   [int(w) for w in args.workers.split(',')], args.batch_size or 32,
                                   args.resize, args.crop, args.rounds, args.model_images_per_s,
                                   args.image_scale, args.seed)
        return benchmarks.report(format_imagenet_like(result), result, args.json_out)
    result = run_benchmark(args.datasets.split(','), args.config_args, args.batch_size, args.num_images or 2000,
                           args.pipeline_batches, args.iterations, args.rounds, args.seed,
                           args.stages.split(','))
    return benchmarks.report(format_table(result), result, args.json_out)


if __name__ == '__main__':
    main()

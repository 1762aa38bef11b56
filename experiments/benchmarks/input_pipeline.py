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
"""
import argparse
import contextlib
import io
import itertools
import os
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
from nofe_jax.data import sources
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses `argv`, runs the benchmark, prints the table and one JSON line; returns the result."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--datasets', default=','.join(DATASETS), help='comma-separated: idx, image_folder')
    parser.add_argument('--config_args', default='', help='fashion_mnist_nofe.py arguments, e.g. k=5')
    parser.add_argument('--batch_size', type=int, default=0, help="0 = the config's (128)")
    parser.add_argument('--num_images', type=int, default=2000, help='training images in the image folder')
    parser.add_argument('--pipeline_batches', type=int, default=0,
                        help='batches per pipeline round; 0 = an epoch')
    parser.add_argument('--stages', default=','.join(MODEL_STAGES),
                        help='comma-separated model stages to time: base, generalist, nofe')
    parser.add_argument('--iterations', type=int, default=10, help='timed train steps per round')
    parser.add_argument('--rounds', type=int, default=5, help='alternating rounds (median)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json_out', default=None, help='also write the JSON result here')
    args = parser.parse_args(argv)
    result = run_benchmark(args.datasets.split(','), args.config_args, args.batch_size, args.num_images,
                           args.pipeline_batches, args.iterations, args.rounds, args.seed,
                           args.stages.split(','))
    return benchmarks.report(format_table(result), result, args.json_out)


if __name__ == '__main__':
    main()

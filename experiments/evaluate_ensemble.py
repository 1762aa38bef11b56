r"""Test accuracy of finished flat runs, each alone and as one ensemble (softmax averaged).

  python -m experiments.evaluate_ensemble /tmp/flat_a /tmp/flat_b /tmp/flat_c
  python -m experiments.evaluate_ensemble /tmp/flat_* --json_out=/tmp/ensemble.json

The baseline that asks whether a method of G networks (DMDE's or DeepME's bases) beats one
network only by being G networks: G flat models, e.g. fine-tuned from the same start with
different seeds, averaged. Every workdir must hold a finished flat run (recipe 'base') of the same
data; each is evaluated on the test split in eval mode with its own config's model. Prints a table
and one JSON line; ``--json_out`` also writes that JSON to a file.
"""
import json
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from nofe_jax import validation
from nofe_jax.data import pipeline, sources
from nofe_jax.models import registry
from nofe_jax.training import init_files, init_from
from nofe_jax.training import run as run_lib

_JSON_OUT = flags.DEFINE_string('json_out', '', 'Also write the JSON result to this file.')
_BATCH_SIZE = 500


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config of the finished flat run in ``workdir``; a ConfigError saying why not."""
    path = os.path.join(workdir, 'config.json')
    if not os.path.isfile(path) or init_files.checkpoint_state_dir(workdir) is None:
        raise validation.ConfigError(f'{workdir} holds no finished run (config.json and '
                                     'checkpoints/base): give the workdirs of flat runs.')
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if config.recipe != 'base':
        raise validation.ConfigError(f'{workdir} is a {config.recipe!r} run; the ensemble averages '
                                     "flat models (recipe 'base').")
    return config


def test_probabilities(workdir: str, config: ml_collections.ConfigDict, dataset: sources.Dataset,
                       normalization: pipeline.Normalization) -> tuple[np.ndarray, np.ndarray]:
    """(softmax [N, C], labels [N]) of the run's last checkpoint on the test split."""
    variables = init_from.read_checkpoint_variables(init_files.checkpoint_state_dir(workdir))
    model = registry.build_base(config.model.name, dataset.num_classes, **run_lib.model_overrides(config))
    # The variables are an argument, not constants baked into the program (slow to compile).
    forward = jax.jit(lambda v, x: jax.nn.softmax(model.apply(v, x, train=False)[0].astype(np.float32)))
    probabilities, labels = [], []
    for batch in pipeline.eval_batches(dataset.test, _BATCH_SIZE, preprocess=config.data.preprocess,
                                       normalization=normalization):
        keep = batch['mask'] > 0
        probabilities.append(np.asarray(forward(variables, batch['image']))[keep])
        labels.append(batch['label'][keep])
    return np.concatenate(probabilities), np.concatenate(labels)


def accuracies(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 and top-5 of class scores [N, C]."""
    top5 = np.argsort(-probabilities, axis=-1)[:, :5]
    return {'top1': float(np.mean(top5[:, 0] == labels)),
            'top5': float(np.mean(np.any(top5 == labels[:, None], axis=-1)))}


def evaluate(workdirs: Sequence[str]) -> dict:
    """{'members': [{workdir, top1, top5}], 'ensemble': {top1, top5}} over the test split."""
    configs = [read_config(w) for w in workdirs]
    for workdir, config in zip(workdirs[1:], configs[1:]):
        if config.data.to_dict() != configs[0].data.to_dict():
            raise validation.ConfigError(f'{workdir} was trained on other data than {workdirs[0]}: '
                                         'an ensemble averages models of the same classes.')
    dataset = sources.load_dataset(configs[0].data)
    normalization = pipeline.compute_normalization(dataset.train, configs[0].data.preprocess)
    members, summed = [], 0.0
    for workdir, config in zip(workdirs, configs):
        probabilities, labels = test_probabilities(workdir, config, dataset, normalization)
        members.append({'workdir': workdir, **accuracies(probabilities, labels)})
        summed = summed + probabilities
    return {'members': members, 'ensemble': accuracies(summed / len(workdirs), labels)}


def format_table(result: dict) -> str:
    rows = [(m['workdir'], m['top1'], m['top5']) for m in result['members']]
    rows.append((f'ensemble of {len(rows)}', result['ensemble']['top1'], result['ensemble']['top5']))
    return '\n'.join(['| run | test top-1 | test top-5 |', '|---|---|---|']
                     + [f'| {name} | {100 * t1:.2f}% | {100 * t5:.2f}% |' for name, t1, t5 in rows])


def main(argv):
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError('Give the workdirs of one or more finished flat runs.')
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    try:
        result = evaluate(workdirs)
    except (validation.ConfigError, sources.DatasetNotFoundError) as e:
        raise SystemExit(f'error: {e}') from None
    print(format_table(result))
    print(json.dumps(result))
    if _JSON_OUT.value:
        with open(_JSON_OUT.value, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    app.run(main)

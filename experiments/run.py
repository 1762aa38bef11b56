r"""Trains and evaluates the recipe a config names.

  python -m experiments.run --config=experiments/configs/quickstart.py --workdir=/tmp/q
  python -m experiments.run --config=experiments/configs/cifar100_base.py:model=nin_c100 \
      --workdir=/tmp/nin --config.train.batch_size=256

Rerunning the same command on the same workdir resumes from the last checkpoint.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from nofe_jax.training import recipes

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (path[:arg]).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and plots go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    # Orbax logs every save at INFO; keep the terminal to our progress lines.
    logging.set_verbosity(logging.WARNING)
    recipes.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
    app.run(main)

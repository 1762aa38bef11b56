r"""Quickstart: a tiny CNN on scikit-learn's handwritten digits (real data, offline).

  python -m experiments.run --config=experiments/configs/quickstart.py --workdir=/tmp/q

Hardware: 2 CPU cores. Runtime and accuracy: see README "Results" (measured
with the command above). There is no paper number: this config only shows
the machinery (data, jitted steps, eval, checkpoints, summary) end to end.
`quickstart.py:smoke` runs 2 epochs.
"""
from experiments.configs import common


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'smoke': False})
    config = common.get_config()
    config.recipe = 'base'
    config.model.name = 'tiny_cnn'
    config.data.source = 'digits'
    config.train.duration = '2 epochs' if args['smoke'] else '30 epochs'
    config.train.batch_size = 32
    config.train.eval_batch_size = 250
    config.train.log_every = '20 steps'
    config.train.eval_every = '10 epochs'
    config.train.checkpoint_every = '10 epochs'
    config.optim.name = 'sgd'
    config.optim.lr = 0.05
    config.optim.schedule = 'cosine'
    config.optim.weight_decay = 1e-4
    return config

r"""Flat base CNN on Fashion-MNIST (real data, offline: Debian `dataset-fashion-mnist`).

  python -m experiments.run --config=experiments/configs/fashion_mnist_base.py --workdir=/tmp/fm_base

Arguments: epochs=<int> (default 6, the generalist + expert epochs of
fashion_mnist_nofe.py, so both see the same number of training epochs);
smoke (2 epochs on 2,000 synthetic 28x28x1 images). Data: the IDX files in
--config.data.data_dir or /usr/share/datasets/fashion-mnist.
Measured with the command above on 2 CPU cores: test top-1 91.22%, 4.6 min
(README "Results"; an earlier 91.15% in 17.9 min shared the cores with tests). No paper number.
"""
from experiments.configs import common


def configure_stage(stage, epochs: int) -> None:
    """Training settings shared by every Fashion-MNIST stage."""
    stage.train.update(duration=f'{epochs} epochs', batch_size=128, eval_batch_size=500,
                       log_every='100 steps', eval_every='1 epoch', checkpoint_every='1 epoch')
    stage.optim.update(name='sgd', lr=0.05, schedule='cosine', momentum=0.9, weight_decay=5e-4)


def configure_data(config) -> None:
    """Real Fashion-MNIST from IDX files, per-channel mean, random flips."""
    config.model.name = 'tiny_cnn'
    config.data.source = 'idx'
    config.data.preprocess.update(mean='per_channel', std='per_channel', scale=1.0, flip=True)


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'epochs': 6, 'smoke': False})
    config = common.get_config()
    configure_data(config)
    configure_stage(config, args['epochs'])
    if args['smoke']:
        common.make_smoke(config, image_shape=(28, 28, 1), num_classes=10)
    return config

r"""Flat C-way base CNNs on CIFAR-100 (NofE paper, Table 3 "Base model").

  python -m experiments.run --config=experiments/configs/cifar100_base.py:model=alexnet_c100 \
      --workdir=/tmp/c100_base --config.data.data_dir=$HOME/tensorflow_datasets

Arguments: model=alexnet_c100 | alexnet_quick_c100 | vgg11_c100 | nin_c100 |
resnet56_c100 (default alexnet_c100); smoke (320 training and 100 test synthetic 32x32x3
images of 100 classes, 2 epochs of 10 steps, the real model and solver; seconds on 2 CPU
cores; the summary says synthetic).

Data, preprocessing (per-pixel BGR mean, crops, mirroring), Caffe SGD with the
release's per-blob lr/decay multipliers and lr drops come from experiments/configs/release.py.
Paper top-1 (CIFAR-100 test): AlexNet-C100 54.04, AlexNet-Quick 37.94, VGG11 68.48,
NIN 64.73, ResNet56 73.52. Measured here: not run (CIFAR-100 is not obtainable on
the offline machines this project is developed on); expected runtime on one
modern GPU: minutes (AlexNet/Quick) to a few hours (VGG/ResNet56).
"""
from experiments.configs import common, release


@common.rejects_unread_args
def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'model': 'alexnet_c100', 'smoke': False})
    model = args['model']
    if model not in release.NOFE:
        raise ValueError(f'Unknown CIFAR-100 model {model!r}; choose one of {sorted(release.NOFE)}.')
    config = common.get_config()
    config.recipe = 'base'
    config.model.name = model
    config.data.source = 'tfds'
    config.data.name = 'cifar100'
    config.data.preprocess.update(release.PREPROCESS[model])
    release.apply_solver(config.train, config.optim, release.NOFE[model], model)
    config.train.eval_batch_size = 500
    config.train.log_every = '100 steps'
    config.train.eval_every = '10 epochs'
    config.train.checkpoint_every = '1 epoch'
    if args['smoke']:
        common.make_smoke(config, image_shape=(32, 32, 3), num_classes=100)
    return config

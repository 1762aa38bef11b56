r"""Network of Experts on ImageNet (ILSVRC-2012) with BVLC AlexNet (NofE paper, Table 5).

  python -m experiments.run --config=experiments/configs/imagenet_nofe.py:k=10 \
      --workdir=/tmp/in_nofe --config.data.data_dir=$HOME/tensorflow_datasets

Arguments: k=10 | 40 (default 10), specialties=learned | spectral, balance (fully_balanced),
smoke (8 synthetic 256x256x3 training and 2 test images of 1,000 classes, cropped to 227:
two steps of 4 images per stage, ten-crop eval; the real model, K, classes, preprocessing and
solver at the real image size, only fewer images: 29 s on 2 busy CPU cores, 13 s of it compiling).
Data: tfds `imagenet2012` (manual download into <data_dir>/downloads/manual/, then
`tfds build imagenet2012`), images resized to 256x256, per-pixel mean, random
227 crops and mirrors for training, 10-crop evaluation (4 corners + centre,
with mirrors; softmax averaged) on the validation set, as in the paper.
Specialties are re-learned every 0.2 epoch from a random 10,000-image
training subset, from the end of the first 0.2 epoch on, each update rebuilding
the partition from M (paper: `update_warmup='0 epochs'`, `stay_margin=0`; updates
are skipped only while the generalist is near chance on S). Table 5's spectral
baseline is plain spectral clustering (`spectral_balanced=False`). Solver: BVLC
AlexNet's (lr 0.01, x0.1 every 100k iterations, batch 256, momentum 0.9, wd 5e-4)
for the NofE stage; the generalist (no release solver) trains 30 epochs at a
constant lr 0.01.
Release facts (the authors' ImageNet deploy prototxt): trunk conv1-pool5 from the generalist,
each expert conv6 3x3x256 (group 2) + pool + fc6/fc7 1024 + fc8 100; 40,409,960
parameters at K=10 (`python -m experiments.describe --config=experiments/configs/imagenet_nofe.py`).
Paper top-1: base 58.71, NofE K=10 61.29, K=40 60.85, spectral K=10 56.10.
Measured here: not run (ImageNet is not obtainable offline; needs GPUs/TPUs:
the NofE stage is about 90 epochs of AlexNet-scale compute).
"""
from experiments.configs import common, release


def bvlc_stage(stage, duration: str, lr_values: tuple, boundaries: tuple) -> None:
    stage.train.update(duration=duration, batch_size=256, eval_batch_size=256,
                       log_every='100 steps', eval_every='5 epochs', checkpoint_every='1 epoch')
    stage.optim.update(name='caffe_sgd', momentum=0.9, weight_decay=5e-4, schedule='piecewise',
                       lr=lr_values[0], boundary_lrs=lr_values[1:], boundaries=boundaries,
                       multipliers=release.MULTIPLIERS['alexnet'])


@common.rejects_unread_args
def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'k': 10, 'specialties': 'learned',
                                   'balance': 'fully_balanced', 'smoke': False})
    config = common.get_config()
    config.model.name = 'alexnet'
    config.data.update(source='tfds', name='imagenet2012', test_split='validation', image_size=256)
    config.data.preprocess.update(mean='per_pixel', std='none', scale=1.0, bgr=True, pad=0,
                                  crop=227, flip=True, test_flip=False, ten_crop=True)
    common.add_nofe(config)
    config.nofe.update(num_experts=args['k'], specialties=args['specialties'],
                       balance=args['balance'], update_every='0.2 epochs', subset_size=10000,
                       update_warmup='0 epochs', stay_margin=0.0, spectral_balanced=False)
    bvlc_stage(config.generalist, '30 epochs', (0.01,), ())
    bvlc_stage(config.experts, '450000 steps', (0.01, 0.001, 0.0001, 0.00001),
                ('100000 steps', '200000 steps', '300000 steps'))
    if args['smoke']:
        common.make_smoke(config, image_shape=(256, 256, 3), num_classes=1000,
                          stage_names=('generalist', 'experts'), train_size=8, test_size=2)
        config.data.image_size = 0
        config.nofe.update(subset_size=4, update_every='1 epoch')
        for stage in (config.generalist, config.experts):
            stage.train.update(batch_size=4, eval_batch_size=2)
    return config

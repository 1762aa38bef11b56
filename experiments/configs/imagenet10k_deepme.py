r"""DeepME on ImageNet-10K — the paper's setting (VGG16 bases, T=15).

  python -m experiments.run --config=experiments/configs/imagenet10k_deepme.py --workdir=/tmp/in10k_deepme \
      --config.data.data_dir=/data/imagenet10k

Data: an image folder, <data_dir>/train/<wnid>/* and <data_dir>/test/<wnid>/*, one folder per
class named by its WordNet id (all 10,184 classes). The paper splits every class 85/5/10
(train/validation/test): put the 85% in train/ and the 10% in test/; the 5% validation images
choose T and delta in the paper and are not read here. Theta, the classes' LCH, is read from
WordNet itself (`deepme.class_table='wnid'`).

Arguments: groups (T, 15), threshold (delta, 0.3), finetune (False: bases frozen while the gate
trains, the paper; True: end to end, its future work), gate_input=all|first,
ablation=none|nossc|nogate (the paper's DeepME-NoSSC and -NoGate), smoke
(8 synthetic 224x224 images of 10 classes per split, Theta from the digits' table: the
machinery only).

Solvers (the paper's): bases SGD with momentum 0.9, batch 256, L2 5e-4, the rate decaying
exponentially from 0.01 to 0.00001 (the paper's warm-up 0.01 -> 0.001 and fine-tuning
0.001 -> 0.00001 in one schedule; 30 epochs: the paper gives no budget); the gate 0.001 -> 0.0001
exponentially for 5 epochs, batch 256. Paper (per-class average accuracy, top-1/3/5): DeepME
32.13 / 51.72 / 59.79, DMDE 29.51, flat VGG16 27.62, NoSSC 20.24, NoGate 7.84. Measured here:
not run (no ImageNet-10K offline; fifteen VGG16s take GPU-months).
"""
from experiments.configs import common


def _stage(stage, duration: str, lr: float, final_lr: float) -> None:
    stage.train.update(duration=duration, batch_size=256, eval_batch_size=256,
                       log_every='100 steps', eval_every='5 epochs', checkpoint_every='2000 steps')
    stage.optim.update(name='sgd', momentum=0.9, weight_decay=5e-4, schedule='exponential', lr=lr,
                       final_lr=final_lr)


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {**common.DEEPME_ARGS, 'groups': 15, 'smoke': False})
    ablation = args['ablation']
    if ablation in ('flat', 'dmde'):
        raise ValueError('imagenet10k_deepme.py: for the flat and DMDE baselines run '
                         'imagenet10k_dmde.py (AlexNet bases, as in the DMDE paper).')
    common.checked_ablation(ablation, 'imagenet10k_deepme.py')
    config = common.get_config()
    config.model.name = 'vgg16'
    config.data.update(source='image_folder', image_size=256)
    config.data.preprocess.update(mean='per_channel', std='none', scale=1.0, bgr=True, pad=0,
                                  crop=224, flip=True, test_flip=False)
    common.configure_deepme(config, args, 'wnid', similarity_subset_size=20000)
    _stage(config.bases, '30 epochs', 0.01, 0.00001)
    _stage(config.gate, '5 epochs', 0.001, 0.0001)
    if args['smoke']:
        common.make_smoke(config, image_shape=(224, 224, 3), num_classes=10,
                          stage_names=('bases', 'gate'), train_size=8, test_size=8)
        config.data.image_size = 0
        # Synthetic classes have no WordNet ids: Theta from the shipped table of 10 classes.
        config.deepme.update(class_table='digits', num_groups=3, similarity_subset_size=8)
        for stage in (config.bases, config.gate):
            stage.train.update(batch_size=4, eval_batch_size=4)
    return config

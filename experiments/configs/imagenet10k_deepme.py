r"""DeepME on ImageNet-10K — the paper's setting (VGG16 bases, T=15).

  python -m experiments.run --config=experiments/configs/imagenet10k_deepme.py --workdir=/tmp/in10k_deepme \
      --config.data.data_dir=/data/imagenet10k

Data: an image folder, <data_dir>/train/<wnid>/* and <data_dir>/test/<wnid>/*, one folder per
class named by its WordNet id (all 10,184 classes). The paper splits every class 85/5/10
(train/validation/test): put the 85% in train/ and the 10% in test/; the 5% validation images
choose T and delta in the paper and are not read here. Theta, the classes' LCH, is read from
WordNet itself (`deepme.class_table='wnid'`).

Every base network, and the flat baseline (VGG16-Ext), starts from one ImageNet-pretrained VGG16
(the paper's protocol): a .npz of torchvision state-dict names at `init_from` (default
~/nofe_weights/vgg16.npz; a missing file is refused at once; docs/methods.md, "Start from a
trained network"). The preprocessing below is Caffe's (BGR, 0-255, mean subtracted), what the
Caffe VGG16 the paper used expects; for torchvision's own VGG16 weights set
`--config.data.preprocess.bgr=False --config.data.preprocess.scale=0.00392156862745098
--config.data.preprocess.std=per_channel`.

Arguments: groups (T, 15), threshold (delta, 0.3), finetune (False: bases frozen while the gate
trains, the paper; True: end to end, its future work), gate_input=all|first|shared (default:
shared, the pretrained VGG16's features, whenever the networks start from it; all from scratch),
ablation=none|nossc|nogate|flat|scratch (the paper's DeepME-NoSSC and -NoGate; flat:
VGG16-Ext, one 10,184-way VGG16 from the same pretrained network on the bases' solver; scratch: every network from random weights, without the warm-up), init_from (above),
smoke (8 synthetic 224x224 images of 10 classes per split, from scratch, Theta from the digits'
table: the machinery only).

Solvers (the paper's): bases SGD with momentum 0.9, batch 256, L2 5e-4, the rate decaying
exponentially from 0.01 to 0.00001 over 30 epochs (the paper gives no budget), the last layer
alone for the first 10 (`bases.optim.last_layer_only`: the paper's warm-up 0.01 -> 0.001), then
every layer (its fine-tuning 0.001 -> 0.00001); the gate 0.001 -> 0.0001 exponentially for 5
epochs, batch 256. Paper (per-class average accuracy, top-1/3/5): DeepME
32.13 / 51.72 / 59.79, DMDE 29.51, flat VGG16 27.62, NoSSC 20.24, NoGate 7.84. Measured here:
not run (no ImageNet-10K offline; fifteen VGG16s take GPU-months).
"""
from experiments.configs import common

PRETRAINED_VGG16 = '~/nofe_weights/vgg16.npz'
# This config's own ablations beyond DeepME's: its flat baseline and the start from scratch.
ABLATIONS = ('flat', 'scratch')


def _stage(stage, duration: str, lr: float, final_lr: float) -> None:
    stage.train.update(duration=duration, batch_size=256, eval_batch_size=256,
                       log_every='100 steps', eval_every='5 epochs', checkpoint_every='2000 steps')
    stage.optim.update(name='sgd', momentum=0.9, weight_decay=5e-4, schedule='exponential', lr=lr,
                       final_lr=final_lr)


def _bases_solver(stage, warm_up: bool) -> None:
    """30 epochs, 0.01 -> 0.00001: with ``warm_up``, the last layer alone for the first 10 (where
    the rate reaches 0.001, the paper's boundary between its two phases)."""
    _stage(stage, '30 epochs', 0.01, 0.00001)
    stage.optim.last_layer_only = '10 epochs' if warm_up else '0 steps'


@common.rejects_unread_args
def get_config(arg: str | None = None):
    args = common.parse_args(arg, {**common.DEEPME_ARGS, 'groups': 15, 'init_from': PRETRAINED_VGG16,
                                   'smoke': False, 'gate_input': ''})
    ablation = args['ablation']
    if ablation == 'dmde':
        raise ValueError('imagenet10k_deepme.py: for the DMDE baseline run imagenet10k_dmde.py '
                         '(AlexNet bases, as in the DMDE paper).')
    if ablation not in ABLATIONS:
        common.checked_ablation(ablation, 'imagenet10k_deepme.py')
    config = common.get_config()
    config.model.name = 'vgg16'
    config.init_from = '' if ablation == 'scratch' else args['init_from']
    config.data.update(source='image_folder', image_size=256)
    config.data.preprocess.update(mean='per_channel', std='none', scale=1.0, bgr=True, pad=0,
                                  crop=224, flip=True, test_flip=False)
    if ablation == 'flat':
        _bases_solver(config, warm_up=True)
        if args['smoke']:
            common.make_large_image_smoke(config, image_shape=(224, 224, 3), num_classes=10,
                                          stage_names=('',))
        return config
    common.configure_deepme(config, args, 'wnid', similarity_subset_size=20000)
    _bases_solver(config.bases, warm_up=ablation != 'scratch')
    _stage(config.gate, '5 epochs', 0.001, 0.0001)
    if args['smoke']:
        common.make_large_image_smoke(config, image_shape=(224, 224, 3), num_classes=10,
                                      stage_names=('bases', 'gate'))
        # Synthetic classes have no WordNet ids: Theta from the shipped table of 10 classes.
        config.deepme.update(class_table='digits', num_groups=3, similarity_subset_size=8)
    # The paper's gate reads "the image's representation": the network every base starts from.
    config.deepme.gate_input = args['gate_input'] or ('shared' if config.init_from else 'all')
    return config

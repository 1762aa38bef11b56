r"""DeepME on CIFAR-100 (the DeepME method on the NofE paper's 100-class benchmark and base CNNs).

  python -m experiments.run --config=experiments/configs/cifar100_deepme.py --workdir=/tmp/c100_deepme \
      --config.data.data_dir=$HOME/tensorflow_datasets
  python -m experiments.run --config=experiments/configs/cifar100_deepme.py:smoke --workdir=/tmp/deepme_smoke

Arguments (key=value, comma-separated):
  model        alexnet_c100 (default) | alexnet_quick_c100 | vgg11_c100 | nin_c100 | resnet56_c100
  groups       T, soft spectral clusters of CIFAR-100's WordNet LCH (default 10)
  threshold    membership threshold delta (default 0.3: with T=10, groups of 3-16 classes)
  finetune     False (bases frozen while the gate trains, the paper) | True (end to end)
  gate_input   all (every base network's features, the default) | first (network 0's) |
               shared (init_from's flat model's: set --config.init_from)
  ablation     none | nossc | nogate | flat (cifar100_base.py) | dmde (cifar100_dmde.py)
  smoke        320 training / 100 test synthetic 32x32x3 images of 100 classes, one epoch per
               stage, T=4; the real class table and models

The bases train with the release's flat-model solver of the chosen model (experiments/configs/
release.py); the gate trains for 10 epochs at a tenth of that model's first rate, bases frozen.
The paper's figures are for ImageNet-10K with VGG16 bases (imagenet10k_deepme.py): DeepME 32.13%
per-class top-1 vs 29.51% for DMDE and 27.62% for the flat VGG16 (docs/methods.md, "DeepME"). Measured
here: not run — CIFAR-100 cannot be obtained on the offline development machines; the smoke
run checks the machinery only.
"""
from experiments.configs import cifar100_base, cifar100_dmde, common, release


@common.rejects_unread_args
def get_config(arg: str | None = None):
    args = common.parse_args(arg, {**common.DEEPME_ARGS, 'model': 'alexnet_c100', 'groups': 10,
                                   'smoke': False})
    ablation = common.checked_ablation(args['ablation'], 'cifar100_deepme.py')
    model = args['model']
    smoke = ',smoke' if args['smoke'] else ''
    if ablation == 'flat':
        return cifar100_base.get_config(f'model={model}{smoke}')
    if ablation == 'dmde':
        return cifar100_dmde.get_config(f'model={model}{smoke}')
    config = cifar100_base.get_config(f'model={model}')
    base_train = config.train.to_dict()  # add_deepme drops the top-level stage blocks
    common.configure_deepme(config, args, 'cifar100', similarity_subset_size=5000)
    for stage in (config.bases, config.gate):
        stage.train.update(base_train)
        release.apply_solver(stage.train, stage.optim, release.NOFE[model], model)
    config.gate.train.duration = '10 epochs'
    config.gate.optim.update(schedule='constant', lr=config.gate.optim.lr / 10, boundaries=(),
                             boundary_lrs=(), multipliers=())
    if args['smoke']:
        common.make_smoke(config, image_shape=(32, 32, 3), num_classes=100,
                          stage_names=('bases', 'gate'))
        config.deepme.update(similarity_subset_size=320, num_groups=4)  # 4 bases, not 10
    return config

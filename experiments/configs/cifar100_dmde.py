r"""Deep Mixture of Diverse Experts on CIFAR-100 (the DMDE method of Zhao et al., TPAMI 2019, on
the NofE paper's 100-class benchmark and base CNNs).

  python -m experiments.run --config=experiments/configs/cifar100_dmde.py --workdir=/tmp/c100_dmde \
      --config.data.data_dir=$HOME/tensorflow_datasets
  python -m experiments.run --config=experiments/configs/cifar100_dmde.py:smoke --workdir=/tmp/dmde_smoke

Arguments (key=value, comma-separated):
  model        alexnet_c100 (default) | alexnet_quick_c100 | vgg11_c100 | nin_c100 | resnet56_c100
  overlap      any value in [0, 1) (default 0.5: each class in two groups; the paper sweeps 0-0.5)
  group_size   M, classes per task group (default 25: 4 groups at overlap 0; at 0.5, 8 groups
               of 25 classes moved by 12.5, each class in two)
  ontology     semantic (WordNet LCH, 10 categories) | coarse (CIFAR-100's 20 superclasses) |
               visual (a flat model's features, trained first) | random
  fusion       eq7 (stacking, Eq. 7) | stack2 (Eq. 12, groups weighted by 1 - phi) |
               stack2_literal (Eq. 12 as printed, by phi) | early (concatenated features)
  multitask    True | False (Table II: the w_0 + v_k split with the trace and Laplacian terms)
  freeze       False (bases fine-tuned end to end with the N-way softmax, at 0.01 of its
               rate) | True (bases frozen)
  smoke        320 training / 100 test synthetic 32x32x3 images of 100 classes, one epoch per
               stage, M=50 (4 bases); the real ontology (CIFAR-100's class table) and models

The bases train with the release's flat-model solver of the chosen model (Caffe SGD, its
per-blob multipliers and lr drops; experiments/configs/release.py); the fusion stage fine-tunes
with a tenth of that model's first rate for 10 epochs. The paper's DMDE figures are for
ImageNet-10K with AlexNet bases (imagenet10k_dmde.py): 38.65% top-1 at overlap 0.5, vs 31.70%
for the flat 7,756-way AlexNet (docs/methods.md, "Deep Mixture of Diverse Experts"). Measured here: not run — CIFAR-100 cannot be
obtained on the offline development machines; the smoke run checks the machinery only.
"""
from experiments.configs import cifar100_base, common, release


@common.rejects_unread_args
def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'model': 'alexnet_c100', 'overlap': 0.5, 'group_size': 25,
                                   'ontology': 'semantic', 'fusion': 'eq7', 'multitask': True,
                                   'freeze': False, 'smoke': False})
    model = args['model']
    config = cifar100_base.get_config(f'model={model}')
    base_train = config.train.to_dict()  # add_dmde drops the top-level stage blocks
    common.add_dmde(config)
    config.dmde.update(ontology=args['ontology'], group_size=args['group_size'],
                       overlap=args['overlap'], fusion=args['fusion'], multitask=args['multitask'],
                       base_lr_mult=0.0 if args['freeze'] else 0.01, class_table='cifar100',
                       num_categories=20 if args['ontology'] == 'coarse' else 10,
                       similarity_subset_size=5000)
    config.bases.train.update(base_train)
    release.apply_solver(config.bases.train, config.bases.optim, release.NOFE[model], model)
    config.fusion.train.update(base_train)
    release.apply_solver(config.fusion.train, config.fusion.optim, release.NOFE[model], model)
    config.fusion.train.duration = '10 epochs'
    config.fusion.optim.update(schedule='constant', lr=config.fusion.optim.lr / 10,
                               boundaries=(), boundary_lrs=())
    if args['smoke']:
        common.make_smoke(config, image_shape=(32, 32, 3), num_classes=100,
                          stage_names=('bases', 'fusion'))
        config.dmde.update(similarity_subset_size=320, group_size=50)  # 4 bases, not 9
    return config

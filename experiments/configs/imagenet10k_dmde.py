r"""Deep Mixture of Diverse Experts on ImageNet-10K — the paper's setting (Zhao et al., TPAMI 2019).

  python -m experiments.run --config=experiments/configs/imagenet10k_dmde.py --workdir=/tmp/in10k_dmde \
      --config.data.data_dir=/data/imagenet10k

Data: an image folder, <data_dir>/train/<wnid>/* and <data_dir>/test/<wnid>/* (or val/), one
folder per class named by its WordNet id (the paper keeps the 7,756 "atomic" leaf classes of
ImageNet-10K's 10,184; build the folders from them). The semantic ontology reads the wnids from
WordNet itself (`dmde.class_table='wnid'`; Debian's wordnet-base or nltk's WordNet).

Every base network, and the flat baseline, starts from one ImageNet-pretrained AlexNet (the
paper's protocol: its bases are AlexNets "fine-tuned" on their group's images, Sec. 3): BVLC
AlexNet's Caffe weights converted to a .npz of torchvision names (docs/methods.md, "Start from a
trained network"), at `init_from` (default ~/nofe_weights/bvlc_alexnet.npz; a missing file is
refused at once). The preprocessing below is Caffe's, the one those weights expect.

Arguments: overlap (0.5: every class in two groups; the paper's sweep is 0.0-0.5), group_size
(M, 1000: at overlap 0.5 about 16 groups for 7,756 classes, 8 at 0), categories (64 category
nodes: the paper does not give the number), fusion=eq7|stack2|stack2_literal|early,
multitask (True), freeze (False), init_from (the pretrained AlexNet, above), scratch (the
ablation: every network from random weights), flat (the baseline, the paper's "AlexNet extension": one 7,756-way AlexNet
from the same pretrained network on the bases' solver), smoke (8 synthetic 256x256 images of 20
classes per split, from scratch: the machinery only).

AlexNet bases with the BVLC solver (imagenet_nofe.py's), 256-pixel images, 227 crops and
mirrors; the fused classifier fine-tunes for 5 epochs at 0.001 with the bases at 0.01 of that.
(The paper does not give its fine-tuning solver; this is the from-scratch one.)
Paper (7,756 classes): DMDE 38.65 / 55.41 / 64.32 (top-1/5/10) against 31.70 for
the flat 7,756-way AlexNet; visual tree 37.55, Stack 2 37.63, early fusion 36.23, random groups
34.53. Measured here: not run (no ImageNet-10K offline; sixteen AlexNets take GPU-weeks).
"""
from experiments.configs import common, imagenet_nofe

PRETRAINED_ALEXNET = '~/nofe_weights/bvlc_alexnet.npz'
BASES_SOLVER = ('450000 steps', (0.01, 0.001, 0.0001, 0.00001),
                ('100000 steps', '200000 steps', '300000 steps'))


@common.rejects_unread_args
def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'overlap': 0.5, 'group_size': 1000, 'categories': 64,
                                   'fusion': 'eq7', 'multitask': True, 'freeze': False,
                                   'init_from': PRETRAINED_ALEXNET, 'scratch': False, 'flat': False,
                                   'smoke': False})
    config = common.get_config()
    config.model.name = 'alexnet'
    config.init_from = '' if args['scratch'] else args['init_from']
    config.data.update(source='image_folder', image_size=256)
    config.data.preprocess.update(mean='per_pixel', std='none', scale=1.0, bgr=True, pad=0,
                                  crop=227, flip=True, test_flip=False)
    if args['flat']:
        imagenet_nofe.bvlc_stage(config, *BASES_SOLVER)
        if args['smoke']:
            common.make_large_image_smoke(config, image_shape=(256, 256, 3), num_classes=20,
                                          stage_names=('',))
        return config
    common.add_dmde(config)
    config.dmde.update(ontology='semantic', class_table='wnid', num_categories=args['categories'],
                       group_size=args['group_size'], overlap=args['overlap'],
                       fusion=args['fusion'], multitask=args['multitask'],
                       base_lr_mult=0.0 if args['freeze'] else 0.01,
                       similarity_subset_size=20000)
    imagenet_nofe.bvlc_stage(config.bases, *BASES_SOLVER)
    imagenet_nofe.bvlc_stage(config.fusion, '5 epochs', (0.001,), ())
    if args['smoke']:
        common.make_large_image_smoke(config, image_shape=(256, 256, 3), num_classes=20,
                                      stage_names=('bases', 'fusion'))
        config.dmde.update(ontology='random', num_categories=4, group_size=10,
                           similarity_subset_size=8)
    return config

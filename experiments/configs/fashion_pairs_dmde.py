r"""Deep Mixture of Diverse Experts on the Fashion-MNIST pairs benchmark (100 real classes).

  python -m experiments.build_fashion_pairs --out=/tmp/fashion_pairs.npz
  python -m experiments.run --config=experiments/configs/fashion_pairs_dmde.py --workdir=/tmp/pairs_dmde

Arguments: overlap (0.5), group_size (M, 50: 4 groups at overlap 0.5, 2 at 0), categories (10),
ontology=semantic|visual|random (semantic: the mean WordNet LCH of the two left and the two right
items, semantic.pair_similarity), fusion=eq7|stack2|early, multitask (True), freeze (False),
model=tiny_cnn|alexnet_c100, base_epochs (8), fusion_epochs (4), path, smoke. 12 epochs in all,
like fashion_pairs.py's flat model and NofE; each group trains a whole base network (4x the
flat model's cost per epoch at the defaults). No paper number. Measured (docs/results.md):
overlap=0.0,base_epochs=4,fusion_epochs=2 gives 64.40% in 6 min on 2 CPU cores, overlap 0.5
64.27% in 42 min (the flat tiny CNN: 67.73% after 6 epochs, the NofE 68.00%).
"""
from experiments.configs import common, fashion_pairs
from experiments.configs.fashion_mnist_base import SOLVERS, checked_model
from experiments.configs.fashion_mnist_dmde import FUSION_LR_DIVISOR


def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'overlap': 0.5, 'group_size': 50, 'categories': 10,
                                   'ontology': 'semantic', 'fusion': 'eq7', 'multitask': True,
                                   'freeze': False, 'model': 'tiny_cnn', 'base_epochs': 8,
                                   'fusion_epochs': 4, 'path': '/tmp/fashion_pairs.npz',
                                   'smoke': False})
    model = checked_model(args['model'], 'fashion_pairs_dmde.py')
    config = common.get_config()
    config.model.name = model
    config.data.update(source='npz', path=args['path'])
    config.data.preprocess.update(mean='per_channel', std=SOLVERS[model][2], scale=1.0)
    common.add_dmde(config)
    config.dmde.update(ontology=args['ontology'], num_categories=args['categories'],
                       group_size=args['group_size'], overlap=args['overlap'],
                       fusion=args['fusion'], multitask=args['multitask'],
                       base_lr_mult=0.0 if args['freeze'] else 0.01, class_table='fashion_pairs')
    fashion_pairs.configure_stage(config.bases, args['base_epochs'], model, 'flat')
    fashion_pairs.configure_stage(config.fusion, args['fusion_epochs'], model, 'flat')
    config.fusion.optim.lr /= FUSION_LR_DIVISOR
    if args['smoke']:
        common.make_smoke(config, image_shape=(28, 56, 1), num_classes=100,
                          stage_names=('bases', 'fusion'))
        config.dmde.similarity_subset_size = 250
    return config

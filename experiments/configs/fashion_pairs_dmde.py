r"""Deep Mixture of Diverse Experts on the Fashion-MNIST pairs benchmark (100 real classes).

  python -m experiments.build_fashion_pairs --out=/tmp/fashion_pairs.npz
  python -m experiments.run --config=experiments/configs/fashion_pairs_dmde.py --workdir=/tmp/pairs_dmde

Arguments: overlap (0.5), group_size (M, 50: 4 groups at overlap 0.5, 2 at 0), categories (10),
ontology=semantic|visual|random (semantic: the mean WordNet LCH of the two left and the two right
items, semantic.tuple_similarity), fusion=eq7|stack2|stack2_literal|early, multitask (True),
freeze (False), model=tiny_cnn|alexnet_c100, base_epochs (8), fusion_epochs (4), path, smoke. 12 epochs
in all, like fashion_pairs.py's flat model and NofE (`base`: that flat model, base_epochs +
fusion_epochs, so one sweep tables DMDE against it:
`python -m experiments.sweep --config=experiments/configs/fashion_pairs_dmde.py
--variants='base;;overlap=0.0;ontology=random;fusion=stack2;multitask=False' --seeds=3 ...`);
each group trains a whole base network (4x the flat model's cost per epoch at the defaults). No paper number. Measured (docs/results.md):
overlap=0.0,base_epochs=4,fusion_epochs=2 gives 64.40% in 6 min on 2 CPU cores, overlap 0.5
64.27% in 42 min (the flat tiny CNN: 67.73% after 6 epochs, the NofE 68.00%), measured before the
fusion read log Y and the not-in-group images carried half of a group's data term (reproduce
with --config.dmde.fusion_input=raw --config.dmde.not_in_group_weight=0; not re-run since).
"""
import dataclasses

from experiments.configs import common, fashion_pairs
from experiments.configs.fashion_mnist_base import checked_model
from experiments.configs.fashion_mnist_dmde import FUSION_LR_DIVISOR


@common.rejects_unread_args
def get_config(arg: str | None = None):
    return tuples_dmde_config(arg, items=2, config_name='fashion_pairs_dmde.py')


@dataclasses.dataclass(frozen=True)
class Defaults:
    """What DMDE's defaults take from the benchmark it runs on."""
    group_size: int            # M
    class_table: str           # the semantic ontology's
    # What the fusion's rate is divided by beyond FUSION_LR_DIVISOR. The N x N fusion layer reads
    # log Y, whose squared norm, and so the step SGD takes on its logits, grows with N: on the
    # tuples (N = 1,000; seed 0, the same trained bases) the fusion at 0.005 diverged (training
    # loss 25 after its epoch, test top-1 11.77%), at 0.0005 it reached 23.93% (test loss 4.90).
    fusion_lr_divisor: float
    # (base_epochs, fusion_epochs), 12 in all. The tuples' bases memorise their 12 images per
    # class, so the fusion layer, trained on their outputs on those images, cannot learn what holds
    # on test images: one epoch of it lost 6.26 +- 1.14 points against its identity start, Eq. 7
    # alone (3 seeds, docs/results.md). There the default is Eq. 7 alone (fusion_epochs=0).
    epochs: tuple[int, int]


DMDE_DEFAULTS = {2: Defaults(50, 'fashion_pairs', 1, (8, 4)), 3: Defaults(200, 'fashion_tuples', 10, (12, 0))}


def tuples_dmde_config(arg: str | None, items: int, config_name: str):
    """DMDE on the `items`-garment benchmark; tuples (items >= 3) take ``ontology=left`` too:
    the classes in label order, which runs through the left items (fashion_tuples_dmde.py)."""
    defaults = DMDE_DEFAULTS[items]
    args = common.parse_args(arg, {**fashion_pairs.benchmark_args(items), 'overlap': 0.5,
                                   'group_size': defaults.group_size, 'categories': 10,
                                   'ontology': 'semantic' if items == 2 else 'left',
                                   'fusion': 'eq7', 'multitask': True, 'freeze': False, 'base': False,
                                   'base_epochs': defaults.epochs[0], 'fusion_epochs': defaults.epochs[1]})
    model = checked_model(args['model'], config_name)
    if args['base']:  # the flat model over the same total epochs: a sweep's baseline variant
        return fashion_pairs.tuples_config(
            f'base,generalist_epochs={args["base_epochs"]},expert_epochs={args["fusion_epochs"]},'
            f'model={model},path={args["path"]}' + (',smoke' if args['smoke'] else ''), items, config_name)
    config = common.get_config()
    fashion_pairs.configure_data(config, model, args['path'])
    common.add_dmde(config)
    ontology, categories = args['ontology'], args['categories']
    if ontology == 'left':
        if items < 3:
            raise ValueError(f'{config_name}: ontology=left is for the tuples (items >= 3).')
        ontology, categories = 'random', 1  # one category: the windows run in label order
    config.dmde.update(ontology=ontology, num_categories=categories,
                       group_size=args['group_size'], overlap=args['overlap'],
                       fusion=args['fusion'], multitask=args['multitask'],
                       base_lr_mult=0.0 if args['freeze'] else 0.01, class_table=defaults.class_table)
    fashion_pairs.configure_stage(config.bases, args['base_epochs'], model, 'flat',
                                fashion_pairs.GROUP_EVAL_BATCH_SIZE)
    fashion_pairs.configure_stage(config.fusion, args['fusion_epochs'], model, 'flat',
                                fashion_pairs.GROUP_EVAL_BATCH_SIZE)
    config.fusion.optim.lr /= FUSION_LR_DIVISOR * defaults.fusion_lr_divisor
    if args['smoke'] and items >= 3:  # 1,000 classes: two disjoint groups keep the smoke a smoke
        config.dmde.update(group_size=500, overlap=0.0)
    return fashion_pairs.maybe_smoke(config, args['smoke'], items, ('bases', 'fusion'))

r"""DeepME on the Fashion-MNIST tuples (1,000 real classes with known structure).

  python -m experiments.build_fashion_pairs --items=3 --out=/tmp/fashion_tuples.npz
  python -m experiments.run --config=experiments/configs/fashion_tuples_deepme.py --workdir=/tmp/tuples_deepme

Arguments: those of fashion_pairs_deepme.py (groups T (10), threshold, finetune, gate_input,
model=tiny_cnn|alexnet_c100, base_epochs (8), gate_epochs (4), path, smoke,
ablation=none|nossc|nogate|flat|dmde): 12 epochs in all, like fashion_tuples.py's flat model
and NofE. Theta, the classes' semantic similarity, is the mean over the three positions of the
two items' WordNet LCH (semantic.tuple_similarity over the shipped Fashion-MNIST table), so
classes that share items, and items of one garment family, are close. Each of the T groups
trains a whole base network over its classes, and every base runs on every image: a base epoch
costs T flat epochs (5-8 min at groups=5 on 2 CPU cores). From a trained flat model
(--config.init_from=...) give the bases --config.bases.optim.lr=0.01: at the flat model's 0.05
the bases, a fresh classifier on trained features, did not learn. Measured from the flat model
(groups=5,gate_input=shared, docs/results.md): below the flat model continued, because two base
epochs leave the bases below it within their groups. No paper number.
"""
from experiments.configs import common, fashion_pairs_deepme


@common.rejects_unread_args
def get_config(arg: str | None = None):
    return fashion_pairs_deepme.tuples_deepme_config(arg, items=3, config_name='fashion_tuples_deepme.py')

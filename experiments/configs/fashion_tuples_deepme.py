r"""DeepME on the Fashion-MNIST tuples (1,000 real classes with known structure).

  python -m experiments.build_fashion_pairs --items=3 --out=/tmp/fashion_tuples.npz
  python -m experiments.run --config=experiments/configs/fashion_tuples_deepme.py --workdir=/tmp/tuples_deepme

Arguments: those of fashion_pairs_deepme.py (groups T (10), threshold, finetune, gate_input,
theta=left|mean, model=tiny_cnn|alexnet_c100, base_epochs (8), gate_epochs (4), path, smoke,
ablation=none|nossc|nogate|flat|dmde): 12 epochs in all, like fashion_tuples.py's flat model
and NofE. Theta, the classes' semantic similarity, reads every class as a WordNet hyponym of its
left item (theta=left, semantic.left_item_paths): SSC then groups whole left items, related ones
together (T=5: {T-shirt, Shirt}, {Trouser, Pullover, Coat}, {Dress}, {Sandal, Sneaker, Ankle boot},
{Bag}; T=10: one left item each). theta=mean, the mean LCH over the three positions, has no such
cut (eigenvalues 5 and 6 tie at T=5) and gave groups of 187-232 classes that no item bounds. No
semantic Laplacian (deepme.lambda3=0): at groups of 100-300 classes it outweighs the data term
(docs/methods.md, "Base networks"). Each of the T groups trains a whole base network over its
classes, and every base runs on every image: a base epoch costs T flat epochs (5-8 min at
groups=5 on 2 CPU cores). From a trained flat model of these classes (--config.init_from=...)
each base starts from its classes' columns of that model's classifier; give the bases
--config.bases.optim.lr=0.01. Measured from the flat model with gate_input=shared, groups=5 and
groups=10 (31-37 min a run): docs/results.md, "Tuples (1,000 classes), from the trained flat
model". No paper number.
"""
from experiments.configs import common, fashion_pairs_deepme


@common.rejects_unread_args
def get_config(arg: str | None = None):
    return fashion_pairs_deepme.tuples_deepme_config(arg, items=3, config_name='fashion_tuples_deepme.py')

r"""Deep Mixture of Diverse Experts on the Fashion-MNIST tuples (1,000 real classes).

  python -m experiments.build_fashion_pairs --items=3 --out=/tmp/fashion_tuples.npz
  python -m experiments.run --config=experiments/configs/fashion_tuples_dmde.py --workdir=/tmp/tuples_dmde

Arguments: those of fashion_pairs_dmde.py (overlap 0.5, group_size M, categories, ontology, fusion,
multitask, freeze, base, model=tiny_cnn|alexnet_c100, base_epochs (12), fusion_epochs (0), path,
smoke): 12 epochs in all, like fashion_tuples.py's flat model and NofE. With fusion_epochs=0 the
classifier is Eq. 7 itself (the N x N layer stays at its identity start): the bases memorise their
12 images per class, and a fusion layer trained on their outputs on those images lost 6.26 +- 1.14
points against that start (3 seeds, docs/results.md); fusion_epochs=N trains it (early fusion must).

The ontology (default ``ontology=left``) is the coarse grouping the builder stores as
``ontology_categories``: each class's left item, 10 categories of 100 classes. The builder numbers
the classes left item first (class = left * 100 + middle * 10 + right), so that grouping is
contiguous in label order, and DMDE's task groups (windows over the classes laid out category by
category) come out of it by laying the classes out in label order: the config asks for one
category (dmde.ontology='random' with num_categories=1, whose class order is the label order).
With the default M=200 and overlap 0.5 the windows move by 100 classes: 10 task groups, each two
whole left-item categories ({T-shirt, Trouser}, {Trouser, Pullover}, ..., {Ankle boot, T-shirt}),
each class in two groups; overlap=0.0 gives 5 disjoint groups. Neither recipe reads the .npz's
groupings itself yet (the DMDE recipe's 'coarse' ontology reads shipped tables by dataset name),
hence this equivalent. ``ontology=visual`` (a flat model's class-mean features, trained first),
``ontology=random`` (with ``categories``) and ``ontology=semantic`` (spectral clustering of the mean
WordNet LCH of the three positions' items, semantic.tuple_similarity) also work. Each group trains a whole base network: every base runs on every image, so a base
epoch costs G flat epochs (7-8 min with overlap=0.0, 5 groups, on 2 CPU cores). A trained fusion
runs at a tenth of the pairs' rate (DMDE_DEFAULTS: at theirs it diverged here). From a trained
flat model (--config.init_from=...) give the bases --config.bases.optim.lr=0.01: at the flat
model's 0.05 the bases, a fresh classifier on trained features, did not learn. Measured from the
flat models of fashion_tuples.py:base, 3 seeds (docs/results.md, "Tuples (1,000 classes), from
the trained flat model"): 30.34 +- 0.75% against 27.51 +- 0.16% for the flat model continued 3
epochs, with
  python -m experiments.sweep --config=experiments/configs/fashion_tuples_dmde.py:overlap=0.0,base_epochs=2,fusion_epochs=0 \
      --variants='' --override='init_from=/tmp/tuples_flat/base/seed{seed}' \
      --override='bases.optim.lr=0.01' --seeds=3 --workdir=/tmp/tuples_dmde
No paper number.
"""
from experiments.configs import common, fashion_pairs_dmde


@common.rejects_unread_args
def get_config(arg: str | None = None):
    return fashion_pairs_dmde.tuples_dmde_config(arg, items=3, config_name='fashion_tuples_dmde.py')

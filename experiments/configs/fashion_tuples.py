r"""Fashion-MNIST tuples: the 1,000-class real benchmark with known structure (issue 23).

Build the data once (deterministic), then run:

  python -m experiments.build_fashion_pairs --items=3 --out=/tmp/fashion_tuples.npz
  python -m experiments.run --config=experiments/configs/fashion_tuples.py:base --workdir=/tmp/ft_base
  python -m experiments.run --config=experiments/configs/fashion_tuples.py --workdir=/tmp/ft_nofe

Each image is three garments side by side (28x84x1), class = (left, middle, right item), 1,000
classes; 20,000 training and 10,000 test tuples (20 and 10 per class). The summary scores the
learned specialties against the three true groupings (left, middle, right item) by NMI.

Arguments: those of fashion_pairs.py (model=tiny_cnn|alexnet_c100, base, k, balance, specialties,
subset, head, branch_init, pad, generalist_epochs (4), expert_epochs (8), path, smoke), the same
defaults and learning rates: every variant trains 12 epochs in all (the flat model
generalist_epochs + expert_epochs). The variants of issue 23:
  flat                       base
  NofE learned (balanced)    (no argument; balance=fully_balanced, specialties=learned)
  NofE learned (elasso)      balance=elasso
  NofE random                specialties=random
  NofE spectral              specialties=spectral
Smoke: 320 training and 100 test synthetic 28x84 images of the 1,000 classes.
Why 20 training tuples per class: one flat tiny-CNN run (base, 12 epochs) should take at most
about 15 minutes on 2 CPU cores, so a 3-seed sweep of a few variants fits a night; MEASURED below.
No paper number.
"""
from experiments.configs import fashion_pairs


def get_config(arg: str | None = None):
    return fashion_pairs.tuples_config(arg, items=3, config_name='fashion_tuples.py')

r"""Fashion-MNIST tuples: the 1,000-class real benchmark with known structure.

Build the data once (3.2 s, deterministic; 40 MB), then run:

  python -m experiments.build_fashion_pairs --items=3 --out=/tmp/fashion_tuples.npz
  python -m experiments.run --config=experiments/configs/fashion_tuples.py:base --workdir=/tmp/ft_base
  python -m experiments.run --config=experiments/configs/fashion_tuples.py --workdir=/tmp/ft_nofe

Each image is three garments side by side (28x84x1), class = (left, middle, right item), 1,000
classes; 12,000 training and 10,000 test tuples (12 and 10 per class). The summary scores the
learned specialties against the three true groupings (left, middle, right item) by NMI.

Arguments: those of fashion_pairs.py (model=tiny_cnn|alexnet_c100, base, k, balance, specialties,
subset, head, branch_init, init, experts, pad, generalist_epochs (2), expert_epochs (4), path,
smoke), the same learning rates: every variant trains 6 epochs in all (the flat model
generalist_epochs + expert_epochs; at 12 the flat model gained nothing, see below). Unlike the pairs, the counts M come from a fresh S of 10,000
training tuples per update, rebuilt from M each time (stay_margin 0, the paper's rule): see
fashion_pairs.BENCHMARKS for the measurement; subset=holdout keeps 2,000 training tuples (2 per
class) out of the generalist instead. The variants:
  flat                       base
  NofE learned (balanced)    (no argument; balance=fully_balanced, specialties=learned)
  NofE learned (elasso)      balance=elasso
  NofE random                specialties=random
  NofE spectral              specialties=spectral
  NofE from scratch          init=scratch (Sec. 4.1: the learned specialties, no generalist weights)
  NofE shuffled              experts=shuffled (the learned arm's generalist, then experts over its
                             partition with the classes permuted: what the grouping itself is worth)
and each with model=alexnet_c100. Smoke: 320 training and 100 test synthetic 28x84 images of the
1,000 classes. Over seeds:

  python -m experiments.sweep --config=experiments/configs/fashion_tuples.py \
      --variants='base;;specialties=random;experts=shuffled' --seeds=3 --workdir=/tmp/sweep_tuples \
      --baseline=base

Why 12 training tuples per class: a flat tiny-CNN run of 12 epochs should take at most about 15
minutes on 2 CPU cores, so that a 3-seed sweep of a few variants runs in a night. Alone on the 2
cores it trained at 173 images/s (its first 100 steps), which gives 12 x 12,000 images in 14 min
plus the evaluations; 20 per class would take 23 min.
Measured at 12 epochs (seed 0, base,generalist_epochs=4,expert_epochs=8, 2 AMD EPYC cores shared with three other
engineers' test suites, load average up to 14): test top-1 26.19%, top-5 58.76% (chance 0.1%);
68.2 min wall at 32% of the CPU, 938 s user + 397 s system CPU time (about 11 min of the 2
cores). Training left chance at once (loss 6.83 -> 5.47 in the first 100 steps, test top-1 21.8%
after 2 epochs) and then memorised the 12 images per class: training loss 0.0006, top-1 100%,
while the test loss rose from 3.47 (epoch 2) to 4.93 (epoch 12) and test top-1 crept from 21.8%
to 26.2%. No paper number.
Over 3 seeds at the default 6 epochs (docs/results.md, "Fashion-MNIST tuples"): flat 26.96 ±
0.30%, NofE learned 29.46 ± 0.58%, NofE random 28.93 ± 1.01%; paired, learned - flat +2.51 ±
0.32 points, learned - random +0.54 ± 0.43.
"""
from experiments.configs import common, fashion_pairs


@common.rejects_unread_args
def get_config(arg: str | None = None):
    return fashion_pairs.tuples_config(arg, 3, config_name='fashion_tuples.py')

r"""Fashion-MNIST styles: 100 real classes nested in their 10 items, the NofE's premise built in.

Build the data once (about 2 minutes: k-means of each item's images), then run:

  python -m experiments.build_fashion_styles --out=/tmp/fashion_styles.npz
  python -m experiments.run --config=experiments/configs/fashion_styles.py:base --workdir=/tmp/fs_base
  python -m experiments.run --config=experiments/configs/fashion_styles.py --workdir=/tmp/fs_nofe

Each image is one garment (28x28x1); its class is (item, style), a style being one of 10 k-means
clusters of the item's images, so the classes an expert must tell apart depend on its group
(sneaker shapes, bag shapes), as CIFAR-100's fine classes do within their superclasses, and unlike
the pairs and tuples, whose classes are combinations of the same items. 12,000 training images
(120 per class) and all 10,000 test images. The summary scores the learned specialties against
the true grouping (the item) by NMI; the oracle arm puts the experts on it:

  python -c "import numpy as np; np.savetxt('/tmp/item.txt',
      np.load('/tmp/fashion_styles.npz')['grouping_item'], fmt='%d')"
  ... --config=experiments/configs/fashion_styles.py:experts=file,partition=/tmp/item.txt

Arguments: those of fashion_pairs.py, with its learning rates; 2 generalist + 4 expert epochs
(the flat model 6). The counts M come from 2,000 training images held out of stage 1, with an
update every quarter epoch from the first quarter, rebuilt from M each time (stay_margin 0, the
paper's rule): at 120 images per class this recovers more of the items than the tuples' rule, a
fresh S of 10,000 every half epoch from the end of epoch 1 (the arguments
`subset=train,update_every=0.5,update_warmup=1`): NMI 0.47 +- 0.03 vs 0.31 +- 0.05 at
branch_width=2, at the same test top-1. No paper number.
Measured over 3 seeds on 2 CPU cores, 3-6 min a run (docs/results.md), under the tuples' rule:
flat 77.41 +- 0.31%, NofE learned 76.73 +- 0.13%, shuffled 76.70 +- 0.20%, true grouping
76.93 +- 0.53%; with branch_width=2 the true grouping beats the shuffled partition by +0.98 +- 0.30
points (paired), and learned ones do not: +0.01 +- 0.38 under the tuples' rule, +0.38 +- 1.18
under this one.
"""
from experiments.configs import common, fashion_pairs


@common.rejects_unread_args
def get_config(arg: str | None = None):
    return fashion_pairs.tuples_config(arg, 'styles', config_name='fashion_styles.py')

r"""Builds Fashion-MNIST pairs: a 100-class real benchmark with known confusable structure.

  python -m experiments.build_fashion_pairs --out=/tmp/fashion_pairs.npz

Each image is two Fashion-MNIST garments side by side (28x56x1); its class is
(left item, right item), 10 x 10 = 100 classes named 'Shirt|Bag'. Classes that
share an item, and garments of one family (T-shirt/top, Pullover, Coat, Shirt),
are the confusable ones, so a learned partition can be scored against two true
groupings, by left item and by right item (stored as `grouping_left_item` and
`grouping_right_item`, which the NofE summary scores its specialties against).
Each split is built only from its own images (train pairs from the 60,000
training images, test pairs from the 10,000 test images), and an image is used
at most once per side within a split. Deterministic for a seed.
"""
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from nofe_jax.data import sources

NUM_ITEMS = len(sources.FASHION_MNIST_CLASSES)
NUM_CLASSES = NUM_ITEMS * NUM_ITEMS


def pair_class_names(item_names: Sequence[str] = sources.FASHION_MNIST_CLASSES) -> list[str]:
    """'left|right' for class left * 10 + right."""
    return [f'{left}|{right}' for left in item_names for right in item_names]


def left_item_groups() -> np.ndarray:
    """int32[100]: the left item of every pair class (a true 10-way grouping)."""
    return (np.arange(NUM_CLASSES) // NUM_ITEMS).astype(np.int32)


def right_item_groups() -> np.ndarray:
    """int32[100]: the right item of every pair class (a true 10-way grouping)."""
    return (np.arange(NUM_CLASSES) % NUM_ITEMS).astype(np.int32)


def make_pairs(images: np.ndarray, labels: np.ndarray, per_class: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [100 * per_class, H, 2W, C], int32 labels) from one split's item images and labels.

    Every item is drawn `per_class * 10` times per side, each time a different
    image of that item (so the split must hold that many images of every item).
    """
    pair_left = np.repeat(left_item_groups(), per_class)
    pair_right = np.repeat(right_item_groups(), per_class)

    def draw(items: np.ndarray) -> np.ndarray:
        chosen = np.empty(items.size, np.int64)
        for item in range(NUM_ITEMS):
            slots = np.flatnonzero(items == item)
            pool = np.flatnonzero(labels == item)
            if pool.size < slots.size:
                raise ValueError(f'item {item} has {pool.size} images; {slots.size} are needed '
                                 f'for {per_class} pairs per class.')
            chosen[slots] = rng.choice(pool, size=slots.size, replace=False)
        return chosen

    left, right = draw(pair_left), draw(pair_right)
    order = rng.permutation(pair_left.size)
    pairs = np.concatenate([images[left[order]], images[right[order]]], axis=2)
    return pairs, (pair_left * NUM_ITEMS + pair_right)[order].astype(np.int32)


def build(data_dir: str = '', train_per_class: int = 150, test_per_class: int = 30,
          seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of the .npz: x_train, y_train, x_test, y_test, class_names, item groupings."""
    fashion = sources.load_idx_dataset(data_dir)
    rng = np.random.default_rng(seed)
    x_train, y_train = make_pairs(fashion.train.images, fashion.train.labels, train_per_class, rng)
    x_test, y_test = make_pairs(fashion.test.images, fashion.test.labels, test_per_class, rng)
    return {'x_train': x_train, 'y_train': y_train, 'x_test': x_test, 'y_test': y_test,
            'class_names': np.array(pair_class_names()),
            'grouping_left_item': left_item_groups(), 'grouping_right_item': right_item_groups()}


FLAGS = flags.FLAGS
flags.DEFINE_string('out', '/tmp/fashion_pairs.npz', 'Where to write the .npz.')
flags.DEFINE_string('data_dir', '', 'Folder with the Fashion-MNIST IDX files (default: Debian\'s).')
flags.DEFINE_integer('train_per_class', 150, 'Training pairs per class (at most 600).')
flags.DEFINE_integer('test_per_class', 30, 'Test pairs per class (at most 100).')
flags.DEFINE_integer('seed', 0, 'Seed of the pairing.')


def main(argv: Sequence[str]) -> None:
    del argv
    arrays = build(FLAGS.data_dir, FLAGS.train_per_class, FLAGS.test_per_class, FLAGS.seed)
    np.savez_compressed(FLAGS.out, **arrays)
    print(f'wrote {FLAGS.out}: {len(arrays["y_train"])} train / {len(arrays["y_test"])} test images '
          f'{arrays["x_train"].shape[1:]}, {NUM_CLASSES} classes')


if __name__ == '__main__':
    app.run(main)

r"""Builds Fashion-MNIST tuples: real benchmarks of 100 or 1,000 classes with known structure.

  python -m experiments.build_fashion_pairs --out=/tmp/fashion_pairs.npz             # 100 classes
  python -m experiments.build_fashion_pairs --items=3 --out=/tmp/fashion_tuples.npz  # 1,000 classes

Each image is `items` Fashion-MNIST garments side by side (28x(28*items)x1); its class is the
tuple of items, read left to right, 10^items classes named 'Shirt|Bag' or 'Shirt|Bag|Coat'
(class = left * 100 + middle * 10 + right for three items). Classes that share an item, and
garments of one family (T-shirt/top, Pullover, Coat, Shirt), are the confusable ones, so a learned
partition can be scored against true groupings, one per position: `grouping_left_item`,
`grouping_right_item` (pairs) and `grouping_middle_item` (tuples), which the NofE summary scores
its specialties against. Tuples (items >= 3) also store a coarse grouping usable as an ontology,
`ontology_categories` (the left item of every class: 10 categories of 100 classes, contiguous
in label order) and `ontology_category_names` (the item names); they are not under the
`grouping_` prefix, so the summary does not score the left item twice. Pairs keep exactly
the arrays they always had (`--items=2` writes the same arrays, bit for bit, as before tuples).

Each split is built only from its own images (train tuples from the 60,000 training images, test
tuples from the 10,000 test images), and an image is used at most once per position within a
split. Deterministic for a seed.

Images per class: pairs 150 train / 30 test (15,000 / 3,000 images). Tuples 12 train / 10 test
(12,000 / 10,000 images): a flat tiny-CNN run (experiments/configs/fashion_tuples.py:base, 12
epochs) trains at about 170 images/s on 2 otherwise idle CPU cores (measured: 173 img/s over its
first 100 steps), so 12 x 12,000 training images take 14 min, plus 6 evaluations of the 10,000
test images: about the 15 minutes per run that lets a 3-seed sweep of several variants run in a
night on such a machine (20 per class: 23 min at that rate). fashion_tuples.py's docstring has the
measured run. 10 test tuples per class is the test split's limit (10 x 100 classes per item and
position = the 1,000 test images of each item).
"""
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from nofe_jax.data import sources

NUM_ITEMS = len(sources.FASHION_MNIST_CLASSES)
NUM_CLASSES = NUM_ITEMS * NUM_ITEMS  # of the pairs
POSITION_NAMES = {1: ('item',), 2: ('left', 'right'), 3: ('left', 'middle', 'right')}
# (train, test) tuples per class when the flags leave them at 0, by number of items.
DEFAULT_PER_CLASS = {2: (150, 30), 3: (12, 10)}
DEFAULT_OUT = {2: '/tmp/fashion_pairs.npz', 3: '/tmp/fashion_tuples.npz'}


def num_classes(items: int = 2) -> int:
    return NUM_ITEMS ** items


def position_names(items: int) -> tuple[str, ...]:
    """'left', ('middle',) 'right' (or 'position0', ... beyond three items)."""
    return POSITION_NAMES.get(items, tuple(f'position{p}' for p in range(items)))


def tuple_class_names(items: int = 2, item_names: Sequence[str] = sources.FASHION_MNIST_CLASSES) -> list[str]:
    """'left|...|right' for every class, in label order."""
    return ['|'.join(item_names[i] for i in position_items(items)[:, c]) for c in range(num_classes(items))]


def pair_class_names(item_names: Sequence[str] = sources.FASHION_MNIST_CLASSES) -> list[str]:
    """'left|right' for class left * 10 + right."""
    return tuple_class_names(2, item_names)


def position_items(items: int = 2) -> np.ndarray:
    """int32[items, 10^items]: the item at each position of every class (true groupings)."""
    classes = np.arange(num_classes(items))
    return np.stack([(classes // NUM_ITEMS ** (items - 1 - p)) % NUM_ITEMS
                     for p in range(items)]).astype(np.int32)


def left_item_groups() -> np.ndarray:
    """int32[100]: the left item of every pair class (a true 10-way grouping)."""
    return position_items(2)[0]


def right_item_groups() -> np.ndarray:
    """int32[100]: the right item of every pair class (a true 10-way grouping)."""
    return position_items(2)[1]


def make_tuples(images: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator,
                items: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 [10^items * per_class, H, items * W, C], int32 labels, int64 [n, items] source
    image indices) from one split's item images and labels.

    Every item is drawn `per_class * 10^(items-1)` times per position, each time a different
    image of that item (so the split must hold that many images of every item).
    """
    classes = np.arange(num_classes(items))
    slot_items = np.repeat(position_items(items), per_class, axis=1)  # [items, n]

    def draw(wanted: np.ndarray) -> np.ndarray:
        chosen = np.empty(wanted.size, np.int64)
        for item in range(NUM_ITEMS):
            slots = np.flatnonzero(wanted == item)
            pool = np.flatnonzero(labels == item)
            if pool.size < slots.size:
                raise ValueError(f'item {item} has {pool.size} images; {slots.size} are needed '
                                 f'for {per_class} tuples of {items} items per class.')
            chosen[slots] = rng.choice(pool, size=slots.size, replace=False)
        return chosen

    sources_ = np.stack([draw(wanted) for wanted in slot_items], axis=1)  # [n, items]
    order = rng.permutation(sources_.shape[0])
    sources_ = sources_[order]
    tuples = np.concatenate([images[sources_[:, p]] for p in range(items)], axis=2)
    return tuples, np.repeat(classes, per_class)[order].astype(np.int32), sources_


def make_pairs(images: np.ndarray, labels: np.ndarray, per_class: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [100 * per_class, H, 2W, C], int32 labels) from one split's item images and labels."""
    return make_tuples(images, labels, per_class, rng, items=2)[:2]


def build(data_dir: str = '', train_per_class: int = 0, test_per_class: int = 0,
          seed: int = 0, items: int = 2, return_sources: bool = False) -> dict[str, np.ndarray]:
    """The arrays of the .npz: x_train, y_train, x_test, y_test, class_names, item groupings
    (and, for items >= 3, the ontology). Per-class counts of 0 take DEFAULT_PER_CLASS.
    ``return_sources`` adds ``source_train``/``source_test``: each tuple's Fashion-MNIST image
    indices in its own split (for tests; not written to the .npz)."""
    if items < 1:
        raise ValueError(f'items must be >= 1, got {items}.')
    default_train, default_test = DEFAULT_PER_CLASS.get(items, (1, 1))
    train_per_class, test_per_class = train_per_class or default_train, test_per_class or default_test
    fashion = sources.load_idx_dataset(data_dir)
    rng = np.random.default_rng(seed)
    x_train, y_train, source_train = make_tuples(fashion.train.images, fashion.train.labels,
                                                 train_per_class, rng, items)
    x_test, y_test, source_test = make_tuples(fashion.test.images, fashion.test.labels,
                                              test_per_class, rng, items)
    arrays = {'x_train': x_train, 'y_train': y_train, 'x_test': x_test, 'y_test': y_test,
              'class_names': np.array(tuple_class_names(items))}
    for name, grouping in zip(position_names(items), position_items(items)):
        arrays[f'grouping_{name}_item'] = grouping
    if items >= 3:
        arrays['ontology_categories'] = position_items(items)[0]
        arrays['ontology_category_names'] = np.array(sources.FASHION_MNIST_CLASSES)
    if return_sources:
        arrays.update(source_train=source_train, source_test=source_test)
    return arrays


FLAGS = flags.FLAGS
flags.DEFINE_integer('items', 2, 'Garments per image: 2 = the 100 pairs, 3 = the 1,000 tuples.')
flags.DEFINE_string('out', '', 'Where to write the .npz (default: /tmp/fashion_pairs.npz for 2 '
                    'items, /tmp/fashion_tuples.npz for 3).')
flags.DEFINE_string('data_dir', '', 'Folder with the Fashion-MNIST IDX files (default: Debian\'s).')
flags.DEFINE_integer('train_per_class', 0, 'Training tuples per class (0: 150 pairs, 20 tuples; '
                     'at most 6,000 / 10^(items-1)).')
flags.DEFINE_integer('test_per_class', 0, 'Test tuples per class (0: 30 pairs, 10 tuples; '
                     'at most 1,000 / 10^(items-1)).')
flags.DEFINE_integer('seed', 0, 'Seed of the draw.')


def main(argv: Sequence[str]) -> None:
    del argv
    out = FLAGS.out or DEFAULT_OUT.get(FLAGS.items, f'/tmp/fashion_tuples{FLAGS.items}.npz')
    arrays = build(FLAGS.data_dir, FLAGS.train_per_class, FLAGS.test_per_class, FLAGS.seed, FLAGS.items)
    np.savez_compressed(out, **arrays)
    print(f'wrote {out}: {len(arrays["y_train"])} train / {len(arrays["y_test"])} test images '
          f'{arrays["x_train"].shape[1:]}, {num_classes(FLAGS.items)} classes')


if __name__ == '__main__':
    app.run(main)

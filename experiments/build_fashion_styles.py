r"""Builds Fashion-MNIST styles: 100 real classes nested in 10 groups, each group needing its own features.

  python -m experiments.build_fashion_styles --out=/tmp/fashion_styles.npz

Each image is one Fashion-MNIST garment (28x28x1); its class is (item, style): the styles of an item
are the 10 k-means clusters of that item's training images (pixels), and a test image takes the
style of its item's nearest centre. Classes are named 'Sneaker #3'; `grouping_item` (class // 10)
is the true grouping, which the NofE summary scores its specialties against.

Why this benchmark beside the pairs and tuples: there a class is a combination of items, so the
classes an expert must tell apart differ by the same items whichever way the classes are grouped
(every left-item group still separates all ten right items). Here they are nested, like
CIFAR-100's fine classes within its superclasses: telling sneakers apart takes other features than
telling bags apart, and confusions stay within an item. It is where grouping confusable classes
into specialties should pay, so it tests whether the NofE's specialties matter when the premise
holds.

Images per class: 120 training images of every style (the smallest style of the 60,000 training
images has 125 at seed 0), drawn without replacement, and every one of the 10,000 test images
(15-189 per class: `test/per_class_top1` is the balanced figure). Each split is built from its
own images; the centres come from the training images only. Deterministic for a seed (k-means by
scikit-learn with a fixed random state).
"""
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from nofe_jax.data import sources
from nofe_jax.grouping import clustering

STYLES_PER_ITEM = 10
DEFAULT_TRAIN_PER_CLASS = 120
DEFAULT_OUT = '/tmp/fashion_styles.npz'


def class_names(item_names: Sequence[str] = sources.FASHION_MNIST_CLASSES) -> list[str]:
    """'item #style' for class item * 10 + style."""
    return [f'{name} #{style}' for name in item_names for style in range(STYLES_PER_ITEM)]


def pixels(images: np.ndarray) -> np.ndarray:
    """float64 [n, H*W*C] in [0, 1]: the space the styles are clusters of."""
    return images.reshape(images.shape[0], -1).astype(np.float64) / 255.0


def item_styles(train_images: np.ndarray, test_images: np.ndarray, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """(int32 styles of the training images, of the test images) of one item: k-means clusters of
    its training images, and each test image's nearest cluster centre."""
    train_points = pixels(train_images)
    styles = clustering.kmeans(train_points, STYLES_PER_ITEM, rng)
    centres = np.stack([train_points[styles == s].mean(axis=0) for s in range(STYLES_PER_ITEM)])
    test_styles = np.argmin(clustering.squared_distances(pixels(test_images), centres), axis=1)
    return styles, test_styles.astype(np.int32)


def build_from(train: sources.InMemorySource, test: sources.InMemorySource,
               train_per_class: int = DEFAULT_TRAIN_PER_CLASS, seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of the .npz from a training and a test split of the 10 items."""
    rng = np.random.default_rng(seed)
    num_items = len(sources.FASHION_MNIST_CLASSES)
    chosen, test_labels = [], np.empty_like(test.labels, np.int32)
    for item in range(num_items):
        train_of_item, test_of_item = np.flatnonzero(train.labels == item), np.flatnonzero(test.labels == item)
        styles, test_styles = item_styles(train.images[train_of_item], test.images[test_of_item], rng)
        test_labels[test_of_item] = item * STYLES_PER_ITEM + test_styles
        for style in range(STYLES_PER_ITEM):
            members = train_of_item[styles == style]
            if members.size < train_per_class:
                raise ValueError(f'style {style} of item {item} has {members.size} training images; '
                                 f'{train_per_class} per class are asked for (--train_per_class).')
            chosen.append(rng.choice(members, size=train_per_class, replace=False))
    chosen = np.concatenate(chosen)  # in class order: item * 10 + style
    order = rng.permutation(chosen.size)
    classes = np.arange(num_items * STYLES_PER_ITEM)
    train_labels = np.repeat(classes, train_per_class).astype(np.int32)
    return {'x_train': train.images[chosen[order]], 'y_train': train_labels[order],
            'x_test': test.images, 'y_test': test_labels, 'class_names': np.array(class_names()),
            'grouping_item': (classes // STYLES_PER_ITEM).astype(np.int32)}


def build(data_dir: str = '', train_per_class: int = DEFAULT_TRAIN_PER_CLASS, seed: int = 0
          ) -> dict[str, np.ndarray]:
    """The benchmark from the Fashion-MNIST IDX files in `data_dir` (default: Debian's)."""
    fashion = sources.load_idx_dataset(data_dir)
    return build_from(fashion.train, fashion.test, train_per_class, seed)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined only when run as a script: the pairs builder defines flags of the same names, and a
    process that imports both (the test suite) must not see them twice."""
    flags.DEFINE_string('out', DEFAULT_OUT, 'Where to write the .npz.')
    flags.DEFINE_string('data_dir', '', 'Folder with the Fashion-MNIST IDX files (default: Debian\'s).')
    flags.DEFINE_integer('train_per_class', DEFAULT_TRAIN_PER_CLASS, 'Training images per (item, style) class.')
    flags.DEFINE_integer('seed', 0, 'Seed of the clustering and the draw.')


def main(argv: Sequence[str]) -> None:
    del argv
    arrays = build(FLAGS.data_dir, FLAGS.train_per_class, FLAGS.seed)
    np.savez_compressed(FLAGS.out, **arrays)
    print(f'wrote {FLAGS.out}: {len(arrays["y_train"])} train / {len(arrays["y_test"])} test images '
          f'{arrays["x_train"].shape[1:]}, {len(arrays["class_names"])} classes')


if __name__ == '__main__':
    define_flags()
    app.run(main)

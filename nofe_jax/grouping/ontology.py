"""Two-layer class ontologies (DMDE): classes -> category nodes, and the task groups they guide.

An ontology here is an int[C] vector: the category of each class, numbered
0..K-1 (clustered categories in the order of their lowest class label, coarse
labels as the dataset numbers them). Task groups are windows over the classes
laid out category by category (docs/methods.md, "Ontology and task groups").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nofe_jax.grouping import ONTOLOGY_SOURCES, clustering, semantic, specialties, task_groups

# CIFAR-100's 20 superclasses in label order (coarse_label_names.txt of the
# release), each with its 5 fine classes as named in CIFAR100_CLASS_NAMES.
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    'aquatic_mammals': ('beaver', 'dolphin', 'otter', 'seal', 'whale'),
    'fish': ('aquarium_fish', 'flatfish', 'ray', 'shark', 'trout'),
    'flowers': ('orchid', 'poppy', 'rose', 'sunflower', 'tulip'),
    'food_containers': ('bottle', 'bowl', 'can', 'cup', 'plate'),
    'fruit_and_vegetables': ('apple', 'mushroom', 'orange', 'pear', 'sweet_pepper'),
    'household_electrical_devices': ('clock', 'keyboard', 'lamp', 'telephone', 'television'),
    'household_furniture': ('bed', 'chair', 'couch', 'table', 'wardrobe'),
    'insects': ('bee', 'beetle', 'butterfly', 'caterpillar', 'cockroach'),
    'large_carnivores': ('bear', 'leopard', 'lion', 'tiger', 'wolf'),
    'large_man-made_outdoor_things': ('bridge', 'castle', 'house', 'road', 'skyscraper'),
    'large_natural_outdoor_scenes': ('cloud', 'forest', 'mountain', 'plain', 'sea'),
    'large_omnivores_and_herbivores': ('camel', 'cattle', 'chimpanzee', 'elephant', 'kangaroo'),
    'medium_mammals': ('fox', 'porcupine', 'possum', 'raccoon', 'skunk'),
    'non-insect_invertebrates': ('crab', 'lobster', 'snail', 'spider', 'worm'),
    'people': ('baby', 'boy', 'girl', 'man', 'woman'),
    'reptiles': ('crocodile', 'dinosaur', 'lizard', 'snake', 'turtle'),
    'small_mammals': ('hamster', 'mouse', 'rabbit', 'shrew', 'squirrel'),
    'trees': ('maple_tree', 'oak_tree', 'palm_tree', 'pine_tree', 'willow_tree'),
    'vehicles_1': ('bicycle', 'bus', 'motorcycle', 'pickup_truck', 'train'),
    'vehicles_2': ('lawn_mower', 'rocket', 'streetcar', 'tank', 'tractor'),
}


def _fine_to_coarse(class_names: Sequence[str], superclasses: dict[str, tuple[str, ...]]) -> np.ndarray:
    """int32[C]: the superclass index of each class, from superclass -> member names."""
    coarse = {name: k for k, members in enumerate(superclasses.values()) for name in members}
    return np.array([coarse[name] for name in class_names], dtype=np.int32)


# dataset -> (coarse names, int32[C] coarse label of each fine class in label order).
COARSE_LABELS: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
    'cifar100': (tuple(CIFAR100_SUPERCLASSES),
                 _fine_to_coarse(semantic.CIFAR100_CLASS_NAMES, CIFAR100_SUPERCLASSES)),
}


def _check_coarse(dataset: str) -> None:
    if dataset not in COARSE_LABELS:
        raise ValueError(f'No coarse labels for {dataset!r}; known: {sorted(COARSE_LABELS)}. '
                         'Use source semantic, visual or random.')


def coarse_labels(dataset: str) -> np.ndarray:
    """int32[C]: a dataset's own coarse label of each class (CIFAR-100: its 20 superclasses)."""
    _check_coarse(dataset)
    return COARSE_LABELS[dataset][1].copy()


def coarse_names(dataset: str) -> tuple[str, ...]:
    """The names of a dataset's coarse labels, by label (category names for ontology_lines)."""
    _check_coarse(dataset)
    return COARSE_LABELS[dataset][0]


def spectral_categories(similarity: np.ndarray, num_categories: int, rng: np.random.Generator) -> np.ndarray:
    """int32[C]: spectral clustering of a C x C class similarity used as an affinity.

    Negative similarities (cosine of features can be < 0) are clipped to 0,
    as an affinity must be non-negative, and the diagonal is dropped: a
    class's similarity to itself says nothing about which classes go
    together. k-means may leave a cluster empty, so there can be fewer than
    `num_categories` categories.
    """
    affinity = np.maximum(np.asarray(similarity, dtype=np.float64), 0.0)
    np.fill_diagonal(affinity, 0.0)
    return clustering.spectral_clustering(affinity, num_categories, rng)


def build_ontology(source: str, num_classes: int, num_categories: int | None, rng: np.random.Generator,
                   dataset: str | None = None, visual_similarity: np.ndarray | None = None) -> np.ndarray:
    """int32[C]: each class's category node, from one of ONTOLOGY_SOURCES.

    semantic: spectral clustering of the LCH matrix of `dataset`'s shipped
      class -> synset table (no WordNet needed);
    visual: spectral clustering of `visual_similarity` (C x C, e.g.
      similarity.class_mean_cosine_similarity), negatives clipped to 0;
    coarse: `dataset`'s coarse labels (num_categories None or their number);
    random: a seeded random partition into categories of sizes floor/ceil(C/K).
    """
    if source not in ONTOLOGY_SOURCES:
        raise ValueError(f'Unknown ontology source {source!r}; valid: {ONTOLOGY_SOURCES}.')
    if source == 'coarse':
        categories = coarse_labels(dataset)
        found = len(np.unique(categories))
        if num_categories is not None and num_categories != found:
            raise ValueError(f'{dataset} has {found} coarse labels, but num_categories={num_categories}; '
                             'set it to None or to that number.')
    elif num_categories is None:
        raise ValueError(f'Ontology source {source!r} needs num_categories.')
    elif source == 'random':
        categories = specialties.random_balanced(num_classes, num_categories, rng)
    elif source == 'semantic':
        categories = spectral_categories(semantic.semantic_similarity(dataset), num_categories, rng)
    else:
        if visual_similarity is None:
            raise ValueError('Ontology source visual needs visual_similarity (a C x C matrix).')
        categories = spectral_categories(visual_similarity, num_categories, rng)
    if categories.shape != (num_classes,):
        raise ValueError(f'The {source} ontology has {categories.shape[0]} classes, expected {num_classes}.')
    return categories


def class_order(categories: np.ndarray) -> np.ndarray:
    """int[C]: the classes left to right, category by category, ascending label inside a category."""
    return np.argsort(np.asarray(categories), kind='stable')


def ontology_task_groups(categories: np.ndarray, group_size: int, overlap: float) -> list[np.ndarray]:
    """DMDE task groups: task_groups.tree_guided_windows over the ontology's class order."""
    return task_groups.tree_guided_windows(class_order(categories), group_size, overlap)


def category_members(categories: np.ndarray, class_names: Sequence[str]) -> list[list[str]]:
    """The class names of each category, category by category, ascending label inside each."""
    categories = np.asarray(categories)
    return [[class_names[c] for c in np.flatnonzero(categories == k)] for k in np.unique(categories)]


def ontology_lines(categories: np.ndarray, class_names: Sequence[str],
                   category_names: Sequence[str] | None = None) -> list[str]:
    """One report line per category: 'name (n): class, class, ...'; names default to 'category k'."""
    members = category_members(categories, class_names)
    names = category_names if category_names is not None else [f'category {k}' for k in range(len(members))]
    return [f'{name} ({len(classes)}): {", ".join(classes)}' for name, classes in zip(names, members)]

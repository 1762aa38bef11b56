"""Visual similarity between classes from deep features, and graph Laplacians."""

from __future__ import annotations

import numpy as np


def _class_indices(labels: np.ndarray, classes: np.ndarray) -> list[np.ndarray]:
    """Example indices of each class in `classes`; raises if one has no example."""
    labels = np.asarray(labels)
    indices = [np.flatnonzero(labels == c) for c in np.asarray(classes)]
    empty = [int(c) for c, idx in zip(np.asarray(classes), indices) if idx.size == 0]
    if empty:
        raise ValueError(f'No examples of classes {empty} among the features; '
                         'use a larger subset or drop those classes.')
    return indices


def class_mean_cosine_similarity(features: np.ndarray, labels: np.ndarray,
                                 classes: np.ndarray) -> np.ndarray:
    """[M, M] mean cosine similarity over image pairs: S_ab = <mean x̂_a, mean x̂_b> (exact, O(M d))."""
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)
    means = np.stack([unit[idx].mean(axis=0) for idx in _class_indices(labels, classes)])
    return means @ means.T


def rbf_similarity(features: np.ndarray, labels: np.ndarray, classes: np.ndarray, gamma: float,
                   num_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """[M, M] mean of exp(-gamma ||x_a - x_b||^2) over `num_pairs` random image pairs per class pair.

    Two independent samples (with replacement) per class; S_ab pairs the
    p-th image of a's first sample with the p-th of b's second, then S is
    symmetrised.
    """
    features = np.asarray(features, dtype=np.float64)
    indices = _class_indices(labels, classes)
    first = np.stack([rng.choice(idx, size=num_pairs) for idx in indices])   # [M, P]
    second = np.stack([rng.choice(idx, size=num_pairs) for idx in indices])  # [M, P]
    x, y = features[first], features[second]  # [M, P, d]
    x_sq, y_sq = np.sum(x ** 2, axis=-1), np.sum(y ** 2, axis=-1)  # [M, P]
    sim = np.empty((len(indices), len(indices)))
    for a in range(len(indices)):
        sq = x_sq[a][None, :] + y_sq - 2.0 * np.einsum('pd,bpd->bp', x[a], y)  # [M, P]
        sim[a] = np.exp(-gamma * np.maximum(sq, 0.0)).mean(axis=1)
    return (sim + sim.T) / 2


def laplacian(similarity: np.ndarray) -> np.ndarray:
    """Graph Laplacian L = diag(S 1) - S."""
    similarity = np.asarray(similarity)
    return np.diag(similarity.sum(axis=1)) - similarity

"""Count and confusion matrices from predictions (host-side numpy)."""

from __future__ import annotations

import numpy as np


def _check_labels(name: str, labels: np.ndarray, limit: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'{name} must be a 1-D integer vector, got {labels.dtype} {labels.shape}.')
    if labels.size and (labels.min() < 0 or labels.max() >= limit):
        raise ValueError(f'{name} must lie in [0, {limit}), got [{labels.min()}, {labels.max()}].')
    return labels


def count_matrix(true_classes: np.ndarray, predicted_groups: np.ndarray, num_classes: int,
                 num_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    """int64[C, K]: M[i, j] = number of images of class i predicted in group j (raw counts).

    `weights` (0/1 or bool, one per example) masks out padded examples.
    """
    true_classes = _check_labels('true_classes', true_classes, num_classes)
    predicted_groups = _check_labels('predicted_groups', predicted_groups, num_groups)
    if true_classes.shape != predicted_groups.shape:
        raise ValueError(f'true_classes and predicted_groups differ in length: '
                         f'{true_classes.shape} vs {predicted_groups.shape}.')
    flat = true_classes.astype(np.int64) * num_groups + predicted_groups
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != true_classes.shape:
            raise ValueError(f'weights must have shape {true_classes.shape}, got {weights.shape}.')
        flat = flat[weights.astype(bool)]
    return np.bincount(flat, minlength=num_classes * num_groups).reshape(num_classes, num_groups)


def confusion_matrix(true_classes: np.ndarray, predicted_classes: np.ndarray, num_classes: int,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """int64[C, C]: M[i, j] = number of images of class i predicted as class j."""
    return count_matrix(true_classes, predicted_classes, num_classes, num_classes, weights)

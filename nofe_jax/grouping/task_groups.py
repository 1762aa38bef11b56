"""Overlapping task groups: tree-guided windows (DMDE) and soft-cluster thresholding (DeepME)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def tree_guided_windows(class_order: Sequence[int], group_size: int, overlap: float) -> list[np.ndarray]:
    """Windows of about `group_size` consecutive classes over `class_order`, stride group_size*(1-overlap).

    The order is cut into B = ceil(C / stride) contiguous blocks of near-equal
    size (at most the stride); window g is blocks g .. g+r-1 (wrapping), with
    r = 1 / (1 - overlap). Every class is then in exactly r windows, so
    1 / (1 - overlap) must be an integer (overlap 0, 1/2, 2/3, 3/4, ...).
    Windows hold at most `group_size` classes.
    """
    order = np.asarray(class_order)
    num_classes = order.shape[0]
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f'overlap must be in [0, 1), got {overlap}.')
    repeats = round(1.0 / (1.0 - overlap))
    if abs(repeats * (1.0 - overlap) - 1.0) > 1e-9:
        raise ValueError(f'1 / (1 - overlap) must be an integer so every class is covered equally; '
                         f'got overlap={overlap}. Use 0, 0.5, 2/3, 0.75, ...')
    if not repeats <= group_size <= num_classes:
        raise ValueError(f'group_size must be between {repeats} and the number of classes '
                         f'({num_classes}), got {group_size}.')
    stride = group_size // repeats
    num_blocks = max(-(-num_classes // stride), repeats)
    blocks = np.array_split(order, num_blocks)
    return [np.concatenate([blocks[(g + r) % num_blocks] for r in range(repeats)])
            for g in range(num_blocks)]


def ssc_groups(memberships: np.ndarray, delta: float) -> list[np.ndarray]:
    """Class c joins every group t with memberships[c, t] >= delta, and always its argmax group.

    Groups left with no class are dropped (no network can be trained for them).
    """
    memberships = np.asarray(memberships)
    if memberships.ndim != 2:
        raise ValueError(f'memberships must be [C, T], got shape {memberships.shape}.')
    joined = memberships >= delta
    joined[np.arange(memberships.shape[0]), np.argmax(memberships, axis=1)] = True
    groups = [np.flatnonzero(joined[:, t]) for t in range(memberships.shape[1])]
    return [g for g in groups if g.size]


def group_membership_report(groups: Sequence[np.ndarray], num_classes: int) -> dict[str, Any]:
    """Group sizes, per-class coverage, and how many classes sit in two or more groups."""
    coverage = np.zeros(num_classes, dtype=np.int64)
    for group in groups:
        np.add.at(coverage, np.asarray(group, dtype=np.int64), 1)
    return {
        'num_groups': len(groups),
        'sizes': [int(np.size(g)) for g in groups],
        'min_coverage': int(coverage.min()),
        'max_coverage': int(coverage.max()),
        'uncovered': np.flatnonzero(coverage == 0).tolist(),
        'in_two_or_more': int(np.sum(coverage >= 2)),
    }


def random_groups_like(groups: Sequence[np.ndarray], num_classes: int,
                       rng: np.random.Generator) -> list[np.ndarray]:
    """The same group sizes and overlap pattern over randomly relabelled classes (DeepME's NoSSC
    ablation: random clusters of the sizes SSC found)."""
    relabel = rng.permutation(num_classes)
    return [np.sort(relabel[np.asarray(g, dtype=np.int64)]) for g in groups]

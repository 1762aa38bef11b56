"""Overlapping task groups: tree-guided windows (DMDE) and soft-cluster thresholding (DeepME)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np


def tree_guided_windows(class_order: Sequence[int], group_size: int, overlap: float) -> list[np.ndarray]:
    """Windows of at most `group_size` consecutive classes over `class_order`, moved by a stride of
    group_size * (1 - overlap), wrapping at the end; any overlap in [0, 1).

    With C classes, M = `group_size` and r = 1 / (1 - overlap): G = ceil(C / (M (1 - overlap)))
    windows start evenly around the order (window g at floor(g C / G), so the actual stride C / G
    is at most M (1 - overlap)), and each spans r C / G <= M positions (its end rounded down).
    The last windows run past the end onto the first classes. Every class is covered, floor(r)
    or ceil(r) times: equally often when r is an integer (window g is then blocks g .. g + r - 1
    of G near-equal blocks; overlap 0 is a partition), otherwise a share frac(r) of the classes
    once more. Windows hold exactly M classes when the stride divides C, else M or fewer (sizes
    differ by at most one). The overlap is read as an exact fraction (0.3 as 3/10), so no
    rounding error moves a window edge.
    """
    order = np.asarray(class_order)
    num_classes = order.shape[0]
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f'overlap must be in [0, 1), got {overlap}.')
    share = 1 - Fraction(overlap).limit_denominator(10**6)  # 1 - overlap, exactly
    if not (group_size * share >= 1 and group_size <= num_classes):
        raise ValueError(f'group_size * (1 - overlap) must be at least 1 and group_size at most the '
                         f'number of classes ({num_classes}), got group_size={group_size}, overlap={overlap}.')
    num_windows = math.ceil(num_classes / (group_size * share))
    span = Fraction(num_classes, num_windows) / share  # r C / G positions, at most M
    starts = [Fraction(g * num_classes, num_windows) for g in range(num_windows)]
    return [order[np.arange(math.floor(start), math.floor(start + span)) % num_classes] for start in starts]


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

"""Task groups as slot tables: which class each output slot of each group's network holds.

DMDE and DeepME train one network per task group, all with their parameters stacked on a
leading G axis. Groups may overlap (a class in several groups) and differ in size, so every
network gets ``m_max`` class slots (padded, masked) and, for DMDE, one more output after them
for "not in this group". The NofE's partition into specialties is the special case of disjoint
groups without that output (``ExpertLayout`` keeps its one slot per class). Host-side numpy only:
the tables, the pairs of groups sharing a class, and each group's similarity Laplacians.
"""
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from nofe_jax.grouping import similarity


@dataclasses.dataclass(frozen=True)
class GroupLayout:
    """Slot -> class tables of G stacked group networks."""

    slot_classes: np.ndarray  # int32 [G, m_max]: the class each slot holds (0 where padded)
    slot_mask: np.ndarray  # bool [G, m_max]: True where the slot holds a class
    not_in_group: bool  # each network has one more output, at index m_max: "not in this group"

    @property
    def num_groups(self) -> int:
        return self.slot_classes.shape[0]

    @property
    def m_max(self) -> int:
        """Class slots per network (the largest group)."""
        return self.slot_classes.shape[1]

    @property
    def num_outputs(self) -> int:
        """Outputs per network: its class slots and the not-in-group output if any."""
        return self.m_max + int(self.not_in_group)

    @property
    def sizes(self) -> np.ndarray:
        """int32 [G]: classes per group."""
        return self.slot_mask.sum(axis=1).astype(np.int32)

    def membership(self, num_classes: int) -> np.ndarray:
        """bool [C, G]: class c belongs to group g."""
        member = np.zeros((num_classes, self.num_groups), bool)
        groups = np.broadcast_to(np.arange(self.num_groups)[:, None], self.slot_classes.shape)
        member[self.slot_classes[self.slot_mask], groups[self.slot_mask]] = True
        return member

    def class_targets(self, num_classes: int) -> np.ndarray:
        """int32 [C, G]: the output group g's network is trained to give an image of class c —
        its slot, else the not-in-group output (m_max), else -1 (no target in that group)."""
        absent = self.m_max if self.not_in_group else -1
        targets = np.full((num_classes, self.num_groups), absent, np.int32)
        groups, slots = np.nonzero(self.slot_mask)
        targets[self.slot_classes[groups, slots], groups] = slots
        return targets


def group_layout(groups: Sequence[Sequence[int]], num_classes: int,
                 not_in_group: bool = False) -> GroupLayout:
    """The layout of task groups (class ids, each group's in ascending order in its slots)."""
    groups = [np.unique(np.asarray(g, dtype=np.int64)) for g in groups]
    if not groups or any(g.size == 0 for g in groups):
        raise ValueError(f'every task group needs a class; got sizes {[int(g.size) for g in groups]}.')
    if min(g.min() for g in groups) < 0 or max(g.max() for g in groups) >= num_classes:
        raise ValueError(f'task groups must hold class ids in [0, {num_classes}).')
    m_max = max(g.size for g in groups)
    slot_classes = np.zeros((len(groups), m_max), np.int32)
    slot_mask = np.zeros((len(groups), m_max), bool)
    for i, g in enumerate(groups):
        slot_classes[i, :g.size], slot_mask[i, :g.size] = g, True
    return GroupLayout(slot_classes, slot_mask, not_in_group)


def shared_class_pairs(layout: GroupLayout, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(int32 [P, 3] rows (class c, group t, group h) for every class held by both groups t < h,
    bool [P] mask): what DeepME's consistency term compares. With no shared class, one masked
    dummy row (shapes stay static)."""
    member = layout.membership(num_classes)
    rows = [(c, t, h) for c in np.flatnonzero(member.sum(axis=1) >= 2)
            for t in np.flatnonzero(member[c]) for h in np.flatnonzero(member[c]) if t < h]
    if not rows:
        return np.zeros((1, 3), np.int32), np.zeros(1, bool)
    return np.asarray(rows, np.int32), np.ones(len(rows), bool)


def group_classes(layout: GroupLayout, group: int) -> np.ndarray:
    """The class ids of ``group``, in slot order."""
    return layout.slot_classes[group][layout.slot_mask[group]]


def class_similarity(features: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """[M, M] class-mean cosine similarity of ``classes``, clipped at 0 (an affinity, so its
    Laplacian is positive semi-definite); rows and columns of classes absent from ``labels`` are 0."""
    present = np.isin(classes, labels)
    result = np.zeros((classes.size, classes.size))
    if present.any():
        found = similarity.class_mean_cosine_similarity(features, labels, classes[present])
        result[np.ix_(present, present)] = np.maximum(found, 0.0)
    return result


def restricted_laplacians(layout: GroupLayout,
                          similarity_of: Callable[[int, np.ndarray], np.ndarray]) -> np.ndarray:
    """[G, m_max, m_max] float32 Laplacians of ``similarity_of(group, classes)`` per group
    (padding 0)."""
    laplacians = np.zeros((layout.num_groups, layout.m_max, layout.m_max), np.float32)
    for g in range(layout.num_groups):
        classes = group_classes(layout, g)
        laplacians[g, :classes.size, :classes.size] = similarity.laplacian(similarity_of(g, classes))
    return laplacians


def group_laplacians(features: np.ndarray, labels: np.ndarray, layout: GroupLayout) -> np.ndarray:
    """Laplacians of each group's visual similarity, from features [N, G, d] of each group's own
    network."""
    return restricted_laplacians(layout, lambda g, classes: class_similarity(features[:, g], labels, classes))


def semantic_laplacians(semantic_similarity: np.ndarray, layout: GroupLayout) -> np.ndarray:
    """Laplacians of the [C, C] semantic similarity restricted to each group (diagonal dropped)."""
    affinity = np.maximum(semantic_similarity, 0.0) * (1.0 - np.eye(semantic_similarity.shape[0]))
    return restricted_laplacians(layout, lambda g, classes: affinity[np.ix_(classes, classes)])

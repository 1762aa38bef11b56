"""Task groups as stacked networks: which class each output slot of each group's network holds.

DMDE and DeepME train one network per task group, all with their parameters stacked on a
leading G axis. Groups may overlap (a class in several groups) and differ in size, so every
network gets ``m_max`` class slots (padded, masked) and, for DMDE, one more output after them
for "not in this group". The NofE's partition into specialties is the special case of disjoint
groups without that output (``ExpertLayout`` keeps its one slot per class).
"""
import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# A logit no softmax gives weight to, for padded slots (finite, so 0 * it stays 0).
MASKED_LOGIT = -1e9


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


def mask_padded_slots(group_logits: jax.Array, slot_mask: jax.Array) -> jax.Array:
    """[B, G, outputs] logits with the padded class slots at MASKED_LOGIT (a not-in-group output
    after the m_max class slots is kept)."""
    m_max = slot_mask.shape[1]
    keep = jnp.concatenate([slot_mask, jnp.ones((slot_mask.shape[0], group_logits.shape[-1] - m_max),
                                                bool)], axis=1)
    return jnp.where(keep, group_logits, MASKED_LOGIT)


def scatter_to_classes(slot_values: jax.Array, slot_classes: jax.Array, slot_mask: jax.Array,
                       num_classes: int) -> jax.Array:
    """[B, C]: for each class, the sum over the groups holding it of their slot values.

    ``slot_values`` [B, G, m_max] (a not-in-group output must be dropped first); padded slots add
    nothing. ``slot_classes`` and ``slot_mask`` are data, not static: groups may change without
    recompiling.
    """
    batch = slot_values.shape[0]
    values = jnp.where(slot_mask, slot_values, 0.0).reshape(batch, -1)
    return jnp.zeros((batch, num_classes), values.dtype).at[:, slot_classes.reshape(-1)].add(values)

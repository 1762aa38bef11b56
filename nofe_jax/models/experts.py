"""K expert branches as one vmapped module, and the parameter-free gather from branch slots to class order."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nofe_jax.models import layers


@dataclasses.dataclass(frozen=True)
class ExpertLayout:
    """Where each class's logit lives in the stacked branch outputs [B, num_experts, c_max]."""

    num_experts: int
    c_max: int
    class_slots: np.ndarray  # int32 [C]: k * c_max + local index of the class in specialty k
    sizes: np.ndarray  # int32 [num_experts]: classes per kept specialty
    specialty_ids: np.ndarray  # int32 [num_experts]: original specialty id of each expert


def expert_layout(class_to_specialty: np.ndarray) -> ExpertLayout:
    """Expert layout of a class -> specialty map; empty specialties are dropped and the rest renumbered."""
    class_to_specialty = np.asarray(class_to_specialty)
    if class_to_specialty.ndim != 1 or class_to_specialty.size == 0:
        raise ValueError(f"class_to_specialty must be a non-empty 1-D array, got shape {class_to_specialty.shape}")
    if not np.issubdtype(class_to_specialty.dtype, np.integer) or class_to_specialty.min() < 0:
        raise ValueError("class_to_specialty must hold non-negative integer specialty ids")
    # np.unique lists only specialties that own a class, so empty ones vanish here.
    specialty_ids, expert_of_class, sizes = np.unique(class_to_specialty, return_inverse=True, return_counts=True)
    c_max = int(sizes.max())
    # A stable sort by expert keeps ascending class ids inside each expert.
    order = np.argsort(expert_of_class, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    local = np.empty_like(order)
    local[order] = np.arange(order.size) - np.repeat(starts, sizes)
    return ExpertLayout(
        num_experts=int(specialty_ids.size),
        c_max=c_max,
        class_slots=(expert_of_class * c_max + local).astype(np.int32),
        sizes=sizes.astype(np.int32),
        specialty_ids=specialty_ids.astype(np.int32),
    )


def gather_class_logits(branch_logits: jax.Array, class_slots: jax.Array) -> jax.Array:
    """Class-order logits [B, C] from branch logits [B, K, c_max] and flat slots int32 [C]."""
    batch = branch_logits.shape[0]
    return jnp.take(branch_logits.reshape(batch, -1), class_slots, axis=1)


class ExpertBranches(nn.Module):
    """K copies of `branch` with parameters stacked on a leading K axis, run as one batched module.

    `branch` is an unbound branch module whose `num_outputs` is c_max; its variables live under
    `branch` with shapes [K, ...]. All branches read the same (unbatched) trunk features.
    """

    branch: nn.Module
    num_experts: int

    @property
    def c_max(self) -> int:
        """Outputs per branch."""
        return self.branch.num_outputs

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Branch logits [B, K, c_max] of shared trunk features."""

        def run(branch: nn.Module, features: jax.Array) -> jax.Array:
            return branch(features, train=train)

        stacked = nn.vmap(
            run,
            variable_axes={"params": 0, "batch_stats": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=None,
            out_axes=1,
            axis_size=self.num_experts,
        )
        with layers.stacked_kernels():
            return stacked(self.branch, features)

"""Network of Experts: a shared trunk (weights copied from the generalist) + K stacked expert branches,
and the generalist variant whose head is one expert branch."""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from nofe_jax.models.experts import ExpertBranches, gather_class_logits


def _branch_input(features: jax.Array, pre_branch: Callable[[jax.Array], jax.Array] | None) -> jax.Array:
    """Trunk features as every branch reads them (after the optional parameter-free `pre_branch`)."""
    return features if pre_branch is None else pre_branch(features)


class NetworkOfExperts(nn.Module):
    """Trunk (same param tree as the base model's `trunk`) + `experts`, gathered into C class logits.

    `pre_branch` is an optional parameter-free function applied once to the trunk features before
    the branches (the release's AlexNet-C100 adds the LRN `norm3` there).
    """

    trunk: nn.Module
    experts: ExpertBranches
    pre_branch: Callable[[jax.Array], jax.Array] | None = None

    @property
    def num_experts(self) -> int:
        """Number of expert branches K."""
        return self.experts.num_experts

    @property
    def c_max(self) -> int:
        """Outputs per branch."""
        return self.experts.c_max

    @nn.compact
    def __call__(
        self, x: jax.Array, class_slots: jax.Array, *, train: bool
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(class logits [B, C] in class order, named intermediates); class_slots int32 [C] is data, not static."""
        features = self.trunk(x, train=train)
        branch_input = _branch_input(features, self.pre_branch)
        branch_logits = self.experts(branch_input, train=train).astype(jnp.float32)  # [B, K, c_max]
        logits = gather_class_logits(branch_logits, class_slots)
        return logits, {"features": features, "branch_logits": branch_logits, "logits": logits}


class BranchGeneralist(nn.Module):
    """Generalist whose K-way head is one expert branch (`nofe.generalist_head='branch'`).

    Same `trunk` and `pre_branch` as the NofE, so every expert can start from a copy of `branch`'s
    layers (all but its classifier) instead of from random fillers.
    """

    trunk: nn.Module
    branch: nn.Module
    pre_branch: Callable[[jax.Array], jax.Array] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(specialty logits [B, K] in float32, named intermediates)."""
        features = self.trunk(x, train=train)
        logits = self.branch(_branch_input(features, self.pre_branch), train=train).astype(jnp.float32)
        return logits, {"features": features, "logits": logits}

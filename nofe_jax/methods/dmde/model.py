"""DMDE's models: the stacking functions (Eq. 7, Eq. 12) and ``StackedFusion``, the N-way
classifier over the stacked group networks; and the builders of both from a config."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nofe_jax import validation
from nofe_jax.grouping import task_groups
from nofe_jax.grouping.layout import GroupLayout, group_layout
from nofe_jax.models import layers, registry
from nofe_jax.models.group_networks import (GroupNetworks, layout_table_shapes, mask_padded_slots, run_groups,
                                           scatter_to_classes)
from nofe_jax.training import run as run_lib


def not_in_group_probability(probs: jax.Array, eps: float) -> jax.Array:
    """phi [B, G]: each network's not-in-group probability (its last output), clamped to
    [eps, 1 - eps] so the stacking ratios stay finite."""
    return jnp.clip(probs[..., -1], eps, 1.0 - eps)


def stack_eq7(probs: jax.Array, slot_classes: jax.Array, slot_mask: jax.Array, num_classes: int,
              eps: float) -> jax.Array:
    """DMDE Eq. 7: Y(i) = sum_j PS(i, j) (1 - phi_j) / phi_j over the groups j holding class i.

    (Its Lambda_j(i) is 1 in the group and PS is 0 outside it, so lambda_overlap has no effect.)
    """
    phi = not_in_group_probability(probs, eps)
    return scatter_to_classes(probs[..., :-1] * ((1.0 - phi) / phi)[..., None], slot_classes,
                              slot_mask, num_classes)


def stack2(probs: jax.Array, slot_classes: jax.Array, slot_mask: jax.Array, num_classes: int,
           eps: float, lambda_overlap: float) -> jax.Array:
    """DMDE Eq. 12 ("Stack 2"), as written: Y(i) = sum_j lambda_overlap PS(i, j) phi_j."""
    phi = not_in_group_probability(probs, eps)
    return lambda_overlap * scatter_to_classes(probs[..., :-1] * phi[..., None], slot_classes,
                                               slot_mask, num_classes)


class StackedFusion(nn.Module):
    """DMDE's N-way classifier over the group networks: a stacking function of their probabilities
    (``eq7``, ``stack2``) or, ``early``, the concatenation of their features, then one fully
    connected N-way layer ``fusion``. The slot tables are data (groups may change without
    recompiling). Frozen group networks (``freeze_groups``) run in eval mode without gradient;
    their optimiser must also leave them alone (weight decay), which the DMDE recipe does."""

    groups: GroupNetworks
    num_classes: int
    fusion: str = 'eq7'
    phi_eps: float = 0.01
    lambda_overlap: float = 1.0
    freeze_groups: bool = False  # run the group networks in eval mode and stop their gradient

    @nn.compact
    def __call__(self, x: jax.Array, slot_classes: jax.Array, slot_mask: jax.Array, *,
                 train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(class logits [B, C] in float32, intermediates: the stacked input of ``fusion`` etc.)."""
        group_logits, out = run_groups(self.groups, x, train=train, frozen=self.freeze_groups)
        if self.fusion == 'early':
            stacked = out['features'].reshape(x.shape[0], -1).astype(jnp.float32)
        else:
            probs = jax.nn.softmax(mask_padded_slots(group_logits, slot_mask), axis=-1)
            stacked = (stack_eq7(probs, slot_classes, slot_mask, self.num_classes, self.phi_eps)
                       if self.fusion == 'eq7' else
                       stack2(probs, slot_classes, slot_mask, self.num_classes, self.phi_eps,
                              self.lambda_overlap))
        # A stacking function already scores the N classes: the N x N layer starts as the identity,
        # i.e. from the stacking rule's own decision (the paper leaves the init open).
        init = layers.xavier() if self.fusion == 'early' else layers.identity_filler
        logits = layers.dense(self.num_classes, init=init, name='fusion')(stacked)
        logits = logits.astype(jnp.float32)
        return logits, {'features': stacked, 'group_logits': group_logits, 'logits': logits}


def group_networks(config: ml_collections.ConfigDict, layout: GroupLayout
                   ) -> GroupNetworks:
    """The stacked base networks over ``layout``: the config's base model, one per group."""
    base = registry.build_base(config.model.name, layout.num_outputs, **run_lib.model_overrides(config))
    return GroupNetworks(base, layout.num_groups, layout.m_max,
                                 split_classifier=config.dmde.multitask)


def fusion_model(config: ml_collections.ConfigDict, layout: GroupLayout,
                 num_classes: int) -> StackedFusion:
    dmde = config.dmde
    return StackedFusion(group_networks(config, layout), num_classes, fusion=dmde.fusion,
                                 phi_eps=dmde.phi_eps, lambda_overlap=dmde.lambda_overlap,
                                 freeze_groups=dmde.base_lr_mult == 0)


def balanced_layout(config: ml_collections.ConfigDict, num_classes: int) -> GroupLayout:
    """The layout of windows over the classes in label order (the shapes of any ontology's)."""
    windows = task_groups.tree_guided_windows(np.arange(num_classes), config.dmde.group_size,
                                              config.dmde.overlap)
    return group_layout(windows, num_classes, not_in_group=True)


def build_models(config: ml_collections.ConfigDict, num_classes: int) -> dict:
    """{name: (model, extra apply args)}: the stacked base networks and the fused network."""
    check_group_size(config.dmde.group_size, num_classes)
    layout = balanced_layout(config, num_classes)
    tables = layout_table_shapes(layout)
    return {'bases': (group_networks(config, layout), ()),
            'fusion': (fusion_model(config, layout, num_classes), tables)}


def check_group_size(group_size: int, num_classes: int) -> None:
    """M classes per task group must fit the C classes."""
    validation.check_fits_classes('dmde.group_size', group_size, num_classes, symbol='M')

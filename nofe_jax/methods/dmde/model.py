"""DMDE's models: the stacking functions (Eq. 7, Eq. 12 in two readings) and ``StackedFusion``,
the N-way classifier over the stacked group networks; and the builders of both from a config."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nofe_jax import validation
from nofe_jax.grouping import task_groups
from nofe_jax.grouping.layout import GroupLayout, group_layout
from nofe_jax.models import layers, registry
from nofe_jax.models.group_networks import (GroupNetworks, layout_table_shapes, log_scatter_to_classes,
                                           mask_padded_slots, run_groups)
from nofe_jax.training import run as run_lib


def log_group_weights(log_probs: jax.Array, stacking: str, eps: float, lambda_overlap: float) -> jax.Array:
    """log [B, G] of the weight each group's class probabilities get in a stacking function, from
    phi_j, its not-in-group probability (its last output) clamped to [eps, 1 - eps]:
    ``eq7`` (1 - phi) / phi (Eq. 7); ``stack2`` lambda_overlap (1 - phi), the group's belief that
    the image is in it (Eq. 12 read as the text and Table I describe it: Eq. 7 without the ratio);
    ``stack2_literal`` lambda_overlap phi (Eq. 12 as printed: the belief that it is NOT)."""
    phi = jnp.clip(jnp.exp(log_probs[..., -1]), eps, 1.0 - eps)
    if stacking == 'eq7':
        return jnp.log1p(-phi) - jnp.log(phi)
    return jnp.log(lambda_overlap) + (jnp.log1p(-phi) if stacking == 'stack2' else jnp.log(phi))


def log_stacked_scores(log_probs: jax.Array, slot_classes: jax.Array, slot_mask: jax.Array,
                       num_classes: int, stacking: str, eps: float, lambda_overlap: float) -> jax.Array:
    """log Y [B, C]: Y(i) = sum over the groups j holding class i of PS(i, j) times the group's
    weight (``log_group_weights``), from the networks' log-probabilities [B, G, m_max + 1]. In log
    space, so a class every group finds unlikely keeps a finite score and gradient.

    (Lambda_j(i) of Eq. 7 is 1 in the group and PS is 0 outside it, so lambda_overlap has no
    effect there.)
    """
    weights = log_group_weights(log_probs, stacking, eps, lambda_overlap)
    return log_scatter_to_classes(log_probs[..., :-1] + weights[..., None], slot_classes, slot_mask,
                                  num_classes)


class StackedFusion(nn.Module):
    """DMDE's N-way classifier over the group networks: a stacking function of their probabilities
    (``eq7``, ``stack2``, ``stack2_literal``) or, ``early``, the concatenation of their features,
    then one fully connected N-way layer ``fusion``. The slot tables are data (groups may change
    without recompiling). Frozen group networks (``freeze_groups``) run in eval mode without
    gradient; their optimiser must also leave them alone (weight decay), which the DMDE recipe
    does."""

    groups: GroupNetworks
    num_classes: int
    fusion: str = 'eq7'
    fusion_input: str = 'log'  # log: log Y | raw: Y
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
            log_probs = jax.nn.log_softmax(mask_padded_slots(group_logits, slot_mask), axis=-1)
            log_scores = log_stacked_scores(log_probs, slot_classes, slot_mask, self.num_classes,
                                            self.fusion, self.phi_eps, self.lambda_overlap)
            stacked = log_scores if self.fusion_input == 'log' else jnp.exp(log_scores)
        # A stacking function already scores the N classes: the N x N layer starts as the identity.
        # On log Y that is softmax(log Y) = Y / sum Y, the stacking rule's own normalised scores;
        # on raw Y (up to (1 - eps) / eps per group) it is softmax(Y), confident when wrong.
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
                         fusion_input=dmde.fusion_input, phi_eps=dmde.phi_eps,
                         lambda_overlap=dmde.lambda_overlap, freeze_groups=dmde.base_lr_mult == 0)


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

"""DeepME's model: ``GatedMixture``, the gate network weighing the stacked group networks per
image, with its unit-L2 gate weights; and the builders from a config."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nofe_jax import validation
from nofe_jax.grouping.layout import GroupLayout, group_layout
from nofe_jax.methods.deepme import options
from nofe_jax.models import layers, registry
from nofe_jax.models.group_networks import (GroupNetworks, layout_table_shapes, log_scatter_to_classes,
                                           mask_padded_slots, run_groups, scatter_to_classes)
from nofe_jax.training import run as run_lib


def log_gate_weights(gate_logits: jax.Array) -> jax.Array:
    """log phi [B, T]: phi has unit L2 norm per image (DeepME Eq. 3) and is non-negative, the
    softmax of the gate's logits L2-normalised. (A plain g / ||g|| may turn negative, and a
    negative weight on a base loss rewards that base for being wrong.) In log space, so a
    saturated gate still has a gradient."""
    log_softmax = jax.nn.log_softmax(gate_logits.astype(jnp.float32), axis=-1)
    return log_softmax - 0.5 * jax.nn.logsumexp(2.0 * log_softmax, axis=-1, keepdims=True)


def gate_weights(gate_logits: jax.Array) -> jax.Array:
    """phi [B, T] (``log_gate_weights``)."""
    return jnp.exp(log_gate_weights(gate_logits))


def gate_features(base_features: jax.Array, gate_input: str) -> jax.Array:
    """[B, d]: what the gate reads of the base networks' features [B, T, ...], without gradient
    into them: all T concatenated ('all') or network 0's ('first', a network trained on one
    group only, which routes worse: docs/methods.md "Gate stage")."""
    chosen = base_features[:, 0] if gate_input == 'first' else base_features
    return frozen_features(chosen)


def frozen_features(features: jax.Array) -> jax.Array:
    """[B, d] float32, flattened, without gradient into the network that made them."""
    return flat_features(jax.lax.stop_gradient(features))


def flat_features(features: jax.Array) -> jax.Array:
    """[B, d] float32, flattened."""
    return features.reshape(features.shape[0], -1).astype(jnp.float32)


class GatedMixture(nn.Module):
    """DeepME's mixture: F(x) = sum_t phi_t(x) f_t(x), f_t the group networks' softmax scattered
    into the N classes (zero outside the group), phi the gate's weights (``gate_weights``) or,
    ``gate='equal'`` (the NoGate ablation), 1 / sqrt(T) each.

    The gate is an MLP on ``gate_features``: every group network's features concatenated
    (``gate_input='all'``, the default), the first one's (``'first'``) or, ``'shared'``, those of
    ``shared``, the trained flat model the bases started from (``freeze_shared``: eval mode, no
    gradient; else trained with the gate; its classifier goes unused); layer-normalised, without
    gradient into the group networks. Returns
    log(F / sum F) as the logits (the mixture's own decision; its cross-entropy is the 'loss'
    metric) and, in the intermediates, what the DeepME loss reads: the group probabilities, phi,
    and the gate's confidences (its softmax over the groups, uniform for 'equal'), which the
    consistency term compares. Frozen group networks (``freeze_groups``) run in eval mode without
    gradient.
    """

    groups: GroupNetworks
    num_classes: int
    gate: str = 'learned'  # learned | equal
    gate_input: str = 'all'  # all: every base network's features | first: base network 0's | shared
    gate_hidden: int = 256
    shared: nn.Module | None = None  # the flat model the gate reads with gate_input='shared'
    freeze_groups: bool = True
    freeze_shared: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, slot_classes: jax.Array, slot_mask: jax.Array, *,
                 train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        group_logits, out = run_groups(self.groups, x, train=train, frozen=self.freeze_groups)
        log_probs = jax.nn.log_softmax(mask_padded_slots(group_logits, slot_mask), axis=-1)  # [B, T, m_max]
        probs = jnp.exp(log_probs)
        batch, num_groups = probs.shape[:2]
        if self.shared is not None:
            shared = self.shared(x, train=train and not self.freeze_shared)[1]['features']
            features = frozen_features(shared) if self.freeze_shared else flat_features(shared)
        else:
            features = gate_features(out['features'], self.gate_input)
        if self.gate == 'equal':
            confidences = jnp.full((batch, num_groups), 1.0 / num_groups, jnp.float32)
            log_phi = jnp.full((batch, num_groups), -0.5 * jnp.log(num_groups), jnp.float32)
        else:
            glorot = nn.initializers.glorot_normal()
            # A trained network's features come at any scale; unnormalised, they saturate the
            # gate's softmax within a few steps (on digits: every image sent to one group for good).
            normalised = nn.LayerNorm(name='gate_norm')(features)
            hidden = nn.relu(layers.dense(self.gate_hidden, init=glorot, name='gate_hidden')(normalised))
            gate_logits = layers.dense(num_groups, init=glorot, name='gate')(hidden)
            confidences = jax.nn.softmax(gate_logits.astype(jnp.float32), axis=-1)
            log_phi = log_gate_weights(gate_logits)
        phi = jnp.exp(log_phi)
        mixture = scatter_to_classes(phi[..., None] * probs, slot_classes, slot_mask, self.num_classes)
        # log(F / sum F), sum F = sum_t phi_t: the mixture's normalised log-probabilities.
        logits = (log_scatter_to_classes(log_phi[..., None] + log_probs, slot_classes, slot_mask,
                                         self.num_classes)
                  - jax.nn.logsumexp(log_phi, axis=-1, keepdims=True))
        return logits, {'features': features, 'group_probs': probs, 'phi': phi, 'mixture': mixture,
                        'group_logits': group_logits, 'gate_confidences': confidences}


def group_networks(config: ml_collections.ConfigDict, layout: GroupLayout
                   ) -> GroupNetworks:
    """The stacked base networks over ``layout``: the config's base model, one per group."""
    base = registry.build_base(config.model.name, layout.num_outputs, **run_lib.model_overrides(config))
    return GroupNetworks(base, layout.num_groups, layout.m_max, split_classifier=False)


def gated_mixture(config: ml_collections.ConfigDict, layout: GroupLayout,
                  num_classes: int) -> GatedMixture:
    deepme = config.deepme
    shared = None
    if options.reads_shared_network(deepme):  # the flat model init_from holds, over all the classes
        shared = registry.build_base(config.model.name, num_classes, **run_lib.model_overrides(config))
    return GatedMixture(group_networks(config, layout), num_classes, gate=deepme.gate,
                        gate_input=deepme.gate_input, gate_hidden=deepme.gate_hidden,
                        freeze_groups=deepme.base_lr_mult == 0, shared=shared,
                        freeze_shared=deepme.shared_lr_mult == 0)


def even_layout(config: ml_collections.ConfigDict, num_classes: int) -> GroupLayout:
    """``num_groups`` disjoint groups of about C / T classes: the shapes ``experiments.describe``
    counts (SSC's groups differ in size and overlap; the counts scale with the largest)."""
    return group_layout(np.array_split(np.arange(num_classes), config.deepme.num_groups), num_classes)


def build_models(config: ml_collections.ConfigDict, num_classes: int) -> dict:
    """{name: (model, extra apply args)}: the stacked base networks and the gated mixture."""
    check_num_groups(config.deepme.num_groups, num_classes)
    layout = even_layout(config, num_classes)
    tables = layout_table_shapes(layout)
    return {'bases': (group_networks(config, layout), ()),
            'gate': (gated_mixture(config, layout, num_classes), tables)}


def check_num_groups(num_groups: int, num_classes: int) -> None:
    """T groups (at least 2, for the gate to choose) must fit the C classes."""
    validation.check_fits_classes('deepme.num_groups', num_groups, num_classes, symbol='T', low=2)

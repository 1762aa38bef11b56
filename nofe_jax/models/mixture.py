"""Task groups as stacked networks: which class each output slot of each group's network holds.

DMDE and DeepME train one network per task group, all with their parameters stacked on a
leading G axis. Groups may overlap (a class in several groups) and differ in size, so every
network gets ``m_max`` class slots (padded, masked) and, for DMDE, one more output after them
for "not in this group". The NofE's partition into specialties is the special case of disjoint
groups without that output (``ExpertLayout`` keeps its one slot per class).
"""
import dataclasses
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nofe_jax.models import layers

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


# The shared part w_0 of a split classifier (w_k = w_0 + v_k), stored beside its kernel.
SHARED_WEIGHT = 'w0'


def classifier_name(base_params: dict) -> str:
    """The classifier layer of a base model's params: the last layer of its head."""
    return list(base_params['head'])[-1]


def _store_shared_weight(variables: dict) -> dict:
    """At init: a zero w_0 beside the classifier kernel, whose columns are then the v_k."""
    if not variables.get('params'):  # flax also maps the (empty) variables of non-init calls
        return variables
    params = dict(variables['params'])
    name = classifier_name(params)
    layer = dict(params['head'][name])
    layer[SHARED_WEIGHT] = jnp.zeros(layer['kernel'].shape[:-1], layer['kernel'].dtype)
    params['head'] = {**params['head'], name: layer}
    return {**variables, 'params': params}


def _apply_shared_weight(variables: dict, num_class_slots: int) -> dict:
    """The kernel the base model sees: w_0 + v_k in its class columns, the rest (not in group) v."""
    if not variables.get('params'):  # during init, before the base model has created them
        return variables
    params = dict(variables['params'])
    name = classifier_name(params)
    layer = dict(params['head'][name])
    shared = layer.pop(SHARED_WEIGHT)
    layer['kernel'] = layer['kernel'].at[..., :num_class_slots].add(shared[..., None])
    params['head'] = {**params['head'], name: layer}
    return {**variables, 'params': params}


def class_weights(group_params: dict, slot_mask: jax.Array) -> jax.Array:
    """[G, d, m_max] class weight vectors w_k (= w_0 + v_k if split) of the stacked group networks'
    classifiers, padded slots zero (``group_params``: the params of ``GroupNetworks``)."""
    layer = group_params['base']['head'][classifier_name(group_params['base'])]
    num_groups, m_max = slot_mask.shape
    kernel = layer['kernel'][..., :m_max]
    if SHARED_WEIGHT in layer:
        kernel = kernel + layer[SHARED_WEIGHT][..., None]
    return kernel.reshape(num_groups, -1, m_max) * slot_mask[:, None, :]


class GroupNetworks(nn.Module):
    """One base network per task group, parameters stacked on a leading G axis, run as one module.

    ``base`` is an unbound base model (``registry.build_base``) with ``num_outputs`` = the layout's
    outputs; its variables live under ``base`` with shapes [G, ...]. With ``split_classifier`` its
    classifier's class columns are w_k = w_0 + v_k: the kernel holds the v_k (and the not-in-group
    column) and a separate parameter ``w0`` beside it the group's shared w_0 (DMDE's multi-task
    softmax), so w_0 can be read off the parameters.
    """

    base: nn.Module
    num_groups: int
    num_class_slots: int  # m_max: the classifier columns sharing w_0
    split_classifier: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(logits [B, G, outputs] in float32, intermediates with G after the batch axis)."""

        def run(base: nn.Module, x: jax.Array):
            return base(x, train=train)

        if self.split_classifier:
            run = nn.map_variables(
                run, 'params', init=True,
                trans_in_fn=functools.partial(_apply_shared_weight, num_class_slots=self.num_class_slots),
                trans_out_fn=_store_shared_weight)
        stacked = nn.vmap(run, variable_axes={'params': 0, 'batch_stats': 0},
                          split_rngs={'params': True, 'dropout': True}, in_axes=None, out_axes=1,
                          axis_size=self.num_groups)
        with layers.stacked_kernels():
            logits, out = stacked(self.base, x)
        return logits.astype(jnp.float32), out


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


def run_groups(groups: GroupNetworks, x: jax.Array, *, train: bool, frozen: bool):
    """The group networks' (logits, intermediates); frozen ones in eval mode, without gradient."""
    if frozen:
        return jax.lax.stop_gradient(groups(x, train=False))
    return groups(x, train=train)


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
        # i.e. from the stacking rule's own decision (spec/dmde.md leaves the init open).
        init = layers.xavier() if self.fusion == 'early' else layers.identity_filler
        logits = layers.dense(self.num_classes, init=init, name='fusion')(stacked)
        logits = logits.astype(jnp.float32)
        return logits, {'features': stacked, 'group_logits': group_logits, 'logits': logits}


def shared_class_pairs(layout: GroupLayout, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(int32 [P, 4] rows (group t, slot in t, group h, slot in h) for every class held by both
    groups t < h, bool [P] mask): what DeepME's consistency term compares. With no shared class,
    one masked dummy row (shapes stay static)."""
    member = layout.membership(num_classes)
    slot_of = layout.class_targets(num_classes)  # [C, G] slot, -1 outside
    rows = [(t, slot_of[c, t], h, slot_of[c, h])
            for c in np.flatnonzero(member.sum(axis=1) >= 2)
            for t in np.flatnonzero(member[c]) for h in np.flatnonzero(member[c]) if t < h]
    if not rows:
        return np.zeros((1, 4), np.int32), np.zeros(1, bool)
    return np.asarray(rows, np.int32), np.ones(len(rows), bool)


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


def log_scatter_to_classes(log_values: jax.Array, slot_classes: jax.Array, slot_mask: jax.Array,
                           num_classes: int) -> jax.Array:
    """[B, C]: log of ``scatter_to_classes(exp(log_values))``, without underflow (each class's
    terms shifted by their largest). Every class must be in a group (else its log is -inf)."""
    batch = log_values.shape[0]
    values = jnp.where(slot_mask, log_values, -jnp.inf).reshape(batch, -1)
    index = slot_classes.reshape(-1)
    peak = jnp.full((batch, num_classes), -jnp.inf, values.dtype).at[:, index].max(values)
    peak = jax.lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0.0))
    total = jnp.zeros((batch, num_classes), values.dtype).at[:, index].add(jnp.exp(values - peak[:, index]))
    return jnp.log(total) + peak


class GatedMixture(nn.Module):
    """DeepME's mixture: F(x) = sum_t phi_t(x) f_t(x), f_t the group networks' softmax scattered
    into the N classes (zero outside the group), phi the gate's weights (``gate_weights``) or,
    ``gate='equal'`` (the NoGate ablation), 1 / sqrt(T) each.

    The gate is an MLP on the first group network's features (``gate_input='first'``, the spec's
    default) or on all of theirs concatenated (``'all'``), layer-normalised, without gradient
    into the networks (spec/deepme.md: the frozen trunk features of a base network). Returns log(F / sum F) as the
    logits (the mixture's own decision; its cross-entropy is the 'loss' metric) and, in the
    intermediates, the group probabilities and phi the DeepME loss reads. Frozen group networks
    (``freeze_groups``) run in eval mode without gradient.
    """

    groups: GroupNetworks
    num_classes: int
    gate: str = 'learned'  # learned | equal
    gate_input: str = 'first'  # first: base network 0's features | all: every base network's
    gate_hidden: int = 256
    freeze_groups: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, slot_classes: jax.Array, slot_mask: jax.Array, *,
                 train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        group_logits, out = run_groups(self.groups, x, train=train, frozen=self.freeze_groups)
        log_probs = jax.nn.log_softmax(mask_padded_slots(group_logits, slot_mask), axis=-1)  # [B, T, m_max]
        probs = jnp.exp(log_probs)
        batch, num_groups = probs.shape[:2]
        features = out['features'][:, 0] if self.gate_input == 'first' else out['features']
        features = jax.lax.stop_gradient(features).reshape(batch, -1).astype(jnp.float32)
        if self.gate == 'equal':
            log_phi = jnp.full((batch, num_groups), -0.5 * jnp.log(num_groups), jnp.float32)
        else:
            glorot = nn.initializers.glorot_normal()
            # A trained network's features come at any scale; unnormalised, they saturate the
            # gate's softmax within a few steps (on digits: every image sent to one group for good).
            normalised = nn.LayerNorm(name='gate_norm')(features)
            hidden = nn.relu(layers.dense(self.gate_hidden, init=glorot, name='gate_hidden')(normalised))
            log_phi = log_gate_weights(layers.dense(num_groups, init=glorot, name='gate')(hidden))
        phi = jnp.exp(log_phi)
        mixture = scatter_to_classes(phi[..., None] * probs, slot_classes, slot_mask, self.num_classes)
        # log(F / sum F), sum F = sum_t phi_t: the mixture's normalised log-probabilities.
        logits = (log_scatter_to_classes(log_phi[..., None] + log_probs, slot_classes, slot_mask,
                                         self.num_classes)
                  - jax.nn.logsumexp(log_phi, axis=-1, keepdims=True))
        return logits, {'features': features, 'group_probs': probs, 'phi': phi, 'mixture': mixture,
                        'group_logits': group_logits}

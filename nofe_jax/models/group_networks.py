"""G stacked base networks over a group layout (``grouping.layout.GroupLayout``), run as one
module, and the slot operations every model over them shares: masking padded slots, scattering
slot values into the C classes, the split classifier w_k = w_0 + v_k and its class weights.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nofe_jax.models import layers

# A logit no softmax gives weight to, for padded slots (finite, so 0 * it stays 0).
MASKED_LOGIT = -1e9


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


def layout_table_shapes(layout) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
    """Shapes of a group layout's (slot_classes, slot_mask) apply arguments, for describing models
    without building their arrays."""
    return (jax.ShapeDtypeStruct(layout.slot_classes.shape, np.int32),
            jax.ShapeDtypeStruct(layout.slot_mask.shape, np.bool_))


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


def run_groups(groups: GroupNetworks, x: jax.Array, *, train: bool, frozen: bool):
    """The group networks' (logits, intermediates); frozen ones in eval mode, without gradient."""
    if frozen:
        return jax.lax.stop_gradient(groups(x, train=False))
    return groups(x, train=train)

"""Tasks: how a model's outputs meet the labels.

The steps and the loop know nothing of what a model's outputs mean; they ask the stage's task
(``Task``, below, says what a task provides). A new method brings a task (in its own
``methods/<name>/task.py``) and a model, and reuses both; the tasks here are the ones several
methods share: ``ClassificationTask`` (every flat softmax) and ``GroupTask`` (the stacked group
networks of DMDE and DeepME).

``grouping`` holds device arrays that may change between epochs without changing shapes
(a class -> specialty map, slot tables, loss weights), so changing them never recompiles.
"""
import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from nofe_jax.models import group_networks
from nofe_jax.training import losses

Metrics = dict[str, tuple[jax.Array, jax.Array]]
Grouping = dict[str, jax.Array]

# Evaluation entry: (predicted, true) target histograms [num_targets], for the health check.
PREDICTION_HISTOGRAMS = 'prediction_histograms'


class Task(Protocol):
    """What a stage's steps ask of its task, for a batch (all jax, traced inside the step)."""

    @property
    def num_targets(self) -> int:
        """Outputs of the softmax the loss trains (the health check's chance level is ln of this)."""

    @property
    def top1_label(self) -> str:
        """What this task's top-1 measures, e.g. 'top-1 (10-way)', for the summary."""

    def model_kwargs(self, grouping: Grouping) -> dict[str, Any]:
        """Extra model inputs (the NofE's class slots, the group tables)."""

    def targets(self, labels: jax.Array, grouping: Grouping) -> jax.Array:
        """What the outputs are trained on: class or specialty ids [B], or per group [B, G]."""

    def loss(self, logits: jax.Array, out: dict[str, jax.Array], targets: jax.Array, params: Any,
             grouping: Grouping) -> jax.Array:
        """The scalar objective: the data term and any regularisers."""

    def metrics(self, logits: jax.Array, out: dict[str, jax.Array], targets: jax.Array,
                labels: jax.Array, grouping: Grouping, mask: jax.Array) -> Metrics:
        """(sum, count) pairs, in training and evaluation; every task reports 'loss' (its mean
        cross-entropy, which the health check compares with ln(num_targets)) and 'top1'."""

    def evaluation_metrics(self, logits: jax.Array, out: dict[str, jax.Array], targets: jax.Array,
                           labels: jax.Array, grouping: Grouping, mask: jax.Array) -> Metrics:
        """Whole-split measures added at evaluation only (same arguments as ``metrics``)."""

    def predictions(self, logits: jax.Array, out: dict[str, jax.Array], grouping: Grouping,
                    names: Sequence[str]) -> dict[str, jax.Array]:
        """Named outputs for host-side updates ('top1', 'probabilities', 'features'), only those
        asked for."""


def classification_metrics(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> Metrics:
    """Loss, top-1 and top-5 as (sum, count) pairs."""
    return {
        'loss': losses.summed(losses.cross_entropy(logits, targets), mask),
        'top1': losses.summed(losses.topk_correct(logits, targets, 1), mask),
        'top5': losses.summed(losses.topk_correct(logits, targets, 5), mask),
    }


def _flat_features(logits: jax.Array, out: dict[str, jax.Array]) -> jax.Array:
    """[B, d]: the model's 'features' flattened; of a multi-view batch, their mean over the views."""
    features = out['features'].astype(jnp.float32)
    batch = logits.shape[0]
    return features.reshape(batch, features.shape[0] // batch, -1).mean(axis=1)


# What ``predictions`` can return, by name: [B] top-1 ids, [B, outputs] float32 softmax, and the
# model's named 'features' (the input of its classifier part) flattened to [B, d].
PREDICTORS = {
    'top1': lambda logits, out: jnp.argmax(logits, axis=-1).astype(jnp.int32),
    'probabilities': lambda logits, out: jax.nn.softmax(logits.astype(jnp.float32), axis=-1),
    'features': _flat_features,
}


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
    """Softmax classification over ``num_targets`` outputs.

    ``target_map`` names a grouping array mapping each class to its target
    (the generalist trains on ``grouping['class_to_specialty'][label]``);
    None trains on the labels themselves.
    """
    num_targets: int
    target_map: str | None = None
    target_name: str = ''  # what a target is when not a class, e.g. 'specialty' (for labels)

    @property
    def top1_label(self) -> str:
        """What this task's top-1 measures, e.g. 'top-1 (10-way)', 'specialty top-1 (5-way)'."""
        return f'{self.target_name} top-1 ({self.num_targets}-way)'.lstrip()

    def model_kwargs(self, grouping: Grouping) -> dict[str, Any]:
        del grouping
        return {}

    def targets(self, labels: jax.Array, grouping: Grouping) -> jax.Array:
        return labels if self.target_map is None else grouping[self.target_map][labels]

    def loss(self, logits, out, targets, params, grouping) -> jax.Array:
        del out, params, grouping
        return jnp.mean(losses.cross_entropy(logits, targets))

    def metrics(self, logits, out, targets, labels, grouping, mask) -> Metrics:
        del out, labels, grouping
        return classification_metrics(logits, targets, mask)

    def evaluation_metrics(self, logits, out, targets, labels, grouping, mask) -> Metrics:
        """Per-class (correct, count) vectors, so per-class average accuracy (the DeepME paper's
        measure) is exact over the split, and the histograms of predicted and true targets."""
        del out, labels, grouping
        predicted = jnp.argmax(logits, axis=-1)
        return {
            'per_class_top1': losses.per_class_sums(losses.topk_correct(logits, targets, 1),
                                                    targets, mask, self.num_targets),
            PREDICTION_HISTOGRAMS: (jnp.zeros(self.num_targets, jnp.float32).at[predicted].add(mask),
                                    jnp.zeros(self.num_targets, jnp.float32).at[targets].add(mask)),
        }

    def predictions(self, logits, out, grouping, names: Sequence[str]) -> dict[str, jax.Array]:
        del grouping
        return {name: PREDICTORS[name](logits, out) for name in names}


@dataclasses.dataclass(frozen=True)
class GroupTask:
    """G stacked group networks, each a softmax over its m_max class slots (DMDE stage 1: and a
    last not-in-group output; DeepME's base networks: without one), trained at once on per-group
    targets [B, G].

    Grouping arrays: ``class_targets`` [C, G] (the output each group's network is trained to
    give an image of class c: its slot, else the not-in-group output m_max, or -1 where the
    network has none: such images do not train it), ``slot_mask`` [G, m_max], ``laplacian``
    [G, m_max, m_max] (L = diag(S 1) - S of each group's visual similarity; recomputed between
    epochs, zero until then) and, with ``delta3``, ``semantic_laplacian`` (fixed). Each group's
    network has its own loss (DMDE Eq. 2-6, DeepME Eq. 1; docs/methods.md):
      mu * the weighted cross-entropy (not-in-group examples carry ``not_in_group_weight`` of
      the group's data term, its class examples the rest)
      + delta1 * tr(W W^T) + delta2 / 2 * tr(W L W^T) + delta3 / 2 * tr(W L_semantic W^T),
    and the stacked networks minimise the sum of these G losses, so each network's gradient is
    the one it would get trained alone (a mean over groups would train each at 1/G of the
    stage's rate, against the optimiser's full weight decay). The reported ``loss`` metric is
    the data term's mean over groups, comparable with ln(outputs) whatever G.
    """
    num_groups: int
    num_class_slots: int  # m_max
    not_in_group_weight: float
    mu: float = 1.0
    delta1: float = 0.0
    delta2: float = 0.0
    delta3: float = 0.0
    not_in_group: bool = True

    @property
    def num_targets(self) -> int:
        """Outputs of each group's softmax (the health check's chance level is ln of this)."""
        return self.num_class_slots + int(self.not_in_group)

    @property
    def top1_label(self) -> str:
        return f'group top-1 ({self.num_groups} networks, {self.num_targets}-way each)'

    def model_kwargs(self, grouping: Grouping) -> dict[str, Any]:
        del grouping
        return {}

    def targets(self, labels: jax.Array, grouping: Grouping) -> jax.Array:
        return grouping['class_targets'][labels]

    def _masked(self, logits: jax.Array, grouping: Grouping) -> jax.Array:
        return group_networks.mask_padded_slots(logits, grouping['slot_mask'])

    def _inside_outside(self, targets: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[B, G] weights of (image, group) pairs whose target is a class slot / not-in-group."""
        outside = (targets == self.num_class_slots) if self.not_in_group else jnp.zeros(targets.shape, bool)
        inside = (targets >= 0) & ~outside
        return inside * mask[:, None], outside * mask[:, None]

    def _cross_entropy(self, logits, targets, grouping) -> jax.Array:
        """[B, G], at slot 0 where the image has no target in a group (weighted 0 there)."""
        return losses.cross_entropy(self._masked(logits, grouping), jnp.maximum(targets, 0))

    def _group_data_terms(self, logits, targets, grouping, mask) -> jax.Array:
        """[G]: each group's not-in-group-weighted mean cross-entropy."""
        ce = self._cross_entropy(logits, targets, grouping)
        inside, outside = self._inside_outside(targets, mask)
        return ((1.0 - self.not_in_group_weight) * jnp.sum(ce * inside, 0)
                / jnp.maximum(jnp.sum(inside, 0), 1.0)
                + self.not_in_group_weight * jnp.sum(ce * outside, 0)
                / jnp.maximum(jnp.sum(outside, 0), 1.0))

    def _data_term(self, logits, targets, grouping, mask) -> jax.Array:
        """The groups' data terms averaged, a scalar (the reported loss)."""
        return jnp.mean(self._group_data_terms(logits, targets, grouping, mask))

    def loss(self, logits, out, targets, params, grouping) -> jax.Array:
        """The sum over groups of each network's own loss."""
        del out
        data = self._group_data_terms(logits, targets, grouping, jnp.ones(targets.shape[:1], jnp.float32))
        weights = group_networks.class_weights(params, grouping['slot_mask'])  # [G, d, m_max]
        per_group = (self.mu * data + self.delta1 * losses.trace_penalty(weights)
                     + 0.5 * self.delta2 * losses.laplacian_penalty(weights, grouping['laplacian']))
        if self.delta3:
            per_group += 0.5 * self.delta3 * losses.laplacian_penalty(weights, grouping['semantic_laplacian'])
        return jnp.sum(per_group)

    def metrics(self, logits, out, targets, labels, grouping, mask) -> Metrics:
        """loss: the data term; top1 over all (image, group) pairs with a target; in_group_top1:
        the right slot for images of the group's classes; not_in_group_top1: the not-in-group
        output for the rest."""
        del out, labels
        count = jnp.sum(mask)
        correct = losses.topk_correct(self._masked(logits, grouping), jnp.maximum(targets, 0), 1)
        inside, outside = self._inside_outside(targets, mask)
        metrics = {
            'loss': (self._data_term(logits, targets, grouping, mask) * count, count),
            'top1': (jnp.sum(correct * (inside + outside)), jnp.sum(inside + outside)),
            'in_group_top1': (jnp.sum(correct * inside), jnp.sum(inside)),
        }
        if self.not_in_group:
            metrics['not_in_group_top1'] = (jnp.sum(correct * outside), jnp.sum(outside))
        return metrics

    def evaluation_metrics(self, logits, out, targets, labels, grouping, mask) -> Metrics:
        """group_in_group_top1: per group (correct, count) [G], reported as the mean over groups."""
        del out, labels
        correct = losses.topk_correct(self._masked(logits, grouping), jnp.maximum(targets, 0), 1)
        inside, _ = self._inside_outside(targets, mask)
        return {'group_in_group_top1': (jnp.sum(correct * inside, 0), jnp.sum(inside, 0))}

    def predictions(self, logits, out, grouping, names: Sequence[str]) -> dict[str, jax.Array]:
        """Per group: 'top1' [B, G], 'probabilities' [B, G, outputs]; 'features' [B, G * d]
        (reshape to [B, G, d])."""
        return {name: PREDICTORS[name](self._masked(logits, grouping), out) for name in names}

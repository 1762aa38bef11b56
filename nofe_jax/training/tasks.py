"""Tasks: how a model's outputs meet the labels.

The steps and the loop know nothing of what a model's outputs mean; they ask the stage's task.
A new method brings a task (and a model) and reuses both. For a batch, a step calls:

  model_kwargs(grouping)        extra model inputs (the NofE's class slots)
  targets(labels, grouping)     what the outputs are trained on: class or specialty ids [B],
                                or per group [B, G] for methods with overlapping task groups
  loss(logits, out, targets, params, grouping)
                                the scalar objective: the data term and any regularisers
  metrics(logits, out, targets, labels, grouping, mask)
                                (sum, count) pairs, in training and evaluation; every task reports
                                'loss' (its mean cross-entropy, which the health check compares
                                with ln(num_targets)) and 'top1'
  evaluation_metrics(...)       same arguments; whole-split measures added at evaluation only
  predictions(logits, out, names)
                                named outputs for host-side updates ('top1', 'probabilities',
                                'features'), only those asked for

``grouping`` holds device arrays that may change between epochs without changing shapes
(a class -> specialty map, slot tables, loss weights), so changing them never recompiles.
"""
import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nofe_jax.training import losses

Metrics = dict[str, tuple[jax.Array, jax.Array]]
Grouping = dict[str, jax.Array]

# Evaluation entry: (predicted, true) target histograms [num_targets], for the health check.
PREDICTION_HISTOGRAMS = 'prediction_histograms'


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

    def predictions(self, logits, out, names: Sequence[str]) -> dict[str, jax.Array]:
        return {name: PREDICTORS[name](logits, out) for name in names}


@dataclasses.dataclass(frozen=True)
class ExpertTask(ClassificationTask):
    """The NofE's softmax over C gathered from the K branches; adds routing metrics.

    specialty_top1: the argmax's specialty is the true specialty ("routed
    right"); within_specialty_top1: top-1 among the examples routed right
    ("expert right"), so top1 = specialty_top1 * within_specialty_top1.
    """

    def model_kwargs(self, grouping):
        return {'class_slots': grouping['class_slots']}

    def metrics(self, logits, out, targets, labels, grouping, mask):
        class_to_specialty = grouping['class_to_specialty']
        predicted = jnp.argmax(logits, axis=-1)
        routed = (class_to_specialty[predicted] == class_to_specialty[labels]).astype(jnp.float32)
        correct = (predicted == labels).astype(jnp.float32)
        return {**super().metrics(logits, out, targets, labels, grouping, mask),
                'specialty_top1': (jnp.sum(routed * mask), jnp.sum(mask)),
                'within_specialty_top1': (jnp.sum(correct * mask), jnp.sum(routed * mask))}

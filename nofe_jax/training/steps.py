"""Pure train / eval / predict steps, jit-compiled once per stage.

A step is ``(state, batch, grouping) -> ...``: ``grouping`` is a dict of
device arrays that may change between epochs (class -> specialty map, slot
indices, loss weights) without changing shapes, so it never recompiles.
The step's randomness is ``fold_in(state.rng, state.step)``, which makes a
resumed run draw exactly what an uninterrupted one would.

A *task* says how a model meets the labels (see ``ClassificationTask``):
  - ``model_kwargs(grouping)``: extra model inputs;
  - ``targets(labels, grouping)``: the class ids the softmax is trained on;
  - ``metrics(logits, out, labels, grouping, mask)``: extra (sum, count) pairs.
"""
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from nofe_jax.training import losses
from nofe_jax.training.state import TrainState

Metrics = dict[str, tuple[jax.Array, jax.Array]]
Grouping = dict[str, jax.Array]

MUTABLE_COLLECTIONS = ('batch_stats',)
# Eval-step entry: (predicted, true) target histograms [num_targets], for the health check.
PREDICTION_HISTOGRAMS = 'prediction_histograms'


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

    def metrics(self, logits, out, labels, grouping, mask) -> Metrics:
        del logits, out, labels, grouping, mask
        return {}


def _mutable(model_state: dict) -> list[str]:
    return [c for c in MUTABLE_COLLECTIONS if c in model_state]


def forward(state: TrainState, params, batch: dict, grouping: Grouping, task, *,
            train: bool, rng: jax.Array | None = None):
    """Model outputs (logits, out) and the updated mutable collections."""
    variables = {'params': params, **state.model_state}
    mutable = (_mutable(state.model_state) if train else []) or False
    result = state.apply_fn(variables, batch['image'], train=train,
                            rngs={'dropout': rng} if rng is not None else None,
                            mutable=mutable, **task.model_kwargs(grouping))
    if mutable:
        (logits, out), new_state = result
    else:
        (logits, out), new_state = result, {}
    return logits, out, new_state


def classification_metrics(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> Metrics:
    """Loss, top-1 and top-5 as (sum, count) pairs."""
    return {
        'loss': losses.summed(losses.cross_entropy(logits, targets), mask),
        'top1': losses.summed(losses.topk_correct(logits, targets, 1), mask),
        'top5': losses.summed(losses.topk_correct(logits, targets, 5), mask),
    }


def make_train_step(task, loss_fn: Callable | None = None) -> Callable:
    """``train_step(state, batch, grouping) -> (state, metrics)`` for ``task``.

    ``loss_fn(logits, out, targets, params, grouping)`` replaces the mean
    cross-entropy where a method adds regularisers.
    """
    def train_step(state: TrainState, batch: dict, grouping: Grouping):
        rng = jax.random.fold_in(state.rng, state.step)
        targets = task.targets(batch['label'], grouping)

        def objective(params):
            logits, out, new_state = forward(state, params, batch, grouping, task,
                                             train=True, rng=rng)
            if loss_fn is None:
                loss = jnp.mean(losses.cross_entropy(logits, targets))
            else:
                loss = loss_fn(logits, out, targets, params, grouping)
            return loss, (logits, out, new_state)

        (loss, (logits, out, new_state)), grads = jax.value_and_grad(
            objective, has_aux=True)(state.params)
        new = state.apply_gradients(grads, new_state)
        mask = jnp.ones(targets.shape, jnp.float32)
        metrics = classification_metrics(logits, targets, mask)
        metrics['objective'] = (loss, jnp.ones((), jnp.float32))
        metrics.update(task.metrics(logits, out, batch['label'], grouping, mask))
        return new, metrics

    return train_step


def eval_logits(state: TrainState, batch: dict, grouping: Grouping, task):
    """Eval-mode (logits, out); multi-view batches [B, V, H, W, C] average the softmax over V."""
    images = batch['image']
    if images.ndim == 4:
        logits, out, _ = forward(state, state.params, batch, grouping, task, train=False)
        return logits, out
    b, views = images.shape[:2]
    flat = {'image': images.reshape((b * views,) + images.shape[2:])}
    logits, out, _ = forward(state, state.params, flat, grouping, task, train=False)
    probs = jax.nn.softmax(logits.astype(jnp.float32)).reshape(b, views, -1).mean(axis=1)
    return jnp.log(probs), out


def make_eval_step(task) -> Callable:
    """``eval_step(state, batch, grouping) -> metrics`` on a masked batch.

    Adds per-class (correct, count) vectors so per-class average accuracy
    (the DeepME paper's measure) is exact over the whole split, and the
    histograms of predicted and true targets under PREDICTION_HISTOGRAMS.
    """
    def eval_step(state: TrainState, batch: dict, grouping: Grouping) -> Metrics:
        logits, out = eval_logits(state, batch, grouping, task)
        mask = batch['mask'].astype(jnp.float32)
        targets = task.targets(batch['label'], grouping)
        metrics = classification_metrics(logits, targets, mask)
        metrics['per_class_top1'] = losses.per_class_sums(
            losses.topk_correct(logits, targets, 1), targets, mask, task.num_targets)
        predicted = jnp.argmax(logits, axis=-1)
        metrics[PREDICTION_HISTOGRAMS] = (
            jnp.zeros(task.num_targets, jnp.float32).at[predicted].add(mask),
            jnp.zeros(task.num_targets, jnp.float32).at[targets].add(mask))
        metrics.update(task.metrics(logits, out, batch['label'], grouping, mask))
        return metrics

    return eval_step


def make_predict_step(task) -> Callable:
    """``predict_step(state, batch, grouping) -> top-1 predictions [B]`` in eval mode."""
    def predict_step(state: TrainState, batch: dict, grouping: Grouping) -> jax.Array:
        logits, _ = eval_logits(state, batch, grouping, task)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    return predict_step

"""Pure train / eval / predict steps, jit-compiled once per stage.

A step is ``(state, batch, grouping) -> ...``; what the model's outputs mean (targets,
loss, metrics, predictions) is its task's business (``tasks.py``). The step's randomness is
``fold_in(state.rng, state.step)``, which makes a resumed run draw exactly what an
uninterrupted one would.
"""
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from nofe_jax.training.state import TrainState
from nofe_jax.training.tasks import Grouping, Metrics

MUTABLE_COLLECTIONS = ('batch_stats',)


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


def make_train_step(task) -> Callable:
    """``train_step(state, batch, grouping) -> (state, metrics)`` minimising ``task.loss``."""
    def train_step(state: TrainState, batch: dict, grouping: Grouping):
        rng = jax.random.fold_in(state.rng, state.step)
        targets = task.targets(batch['label'], grouping)

        def objective(params):
            logits, out, new_state = forward(state, params, batch, grouping, task,
                                             train=True, rng=rng)
            return task.loss(logits, out, targets, params, grouping), (logits, out, new_state)

        (loss, (logits, out, new_state)), grads = jax.value_and_grad(
            objective, has_aux=True)(state.params)
        new = state.apply_gradients(grads, new_state)
        mask = jnp.ones(batch['label'].shape, jnp.float32)
        metrics = task.metrics(logits, out, targets, batch['label'], grouping, mask)
        metrics['objective'] = (loss, jnp.ones((), jnp.float32))
        return new, metrics

    return train_step


def eval_logits(state: TrainState, batch: dict, grouping: Grouping, task):
    """Eval-mode (logits, out); multi-view batches [B, V, H, W, C] average the softmax over V
    (out then holds the intermediates of all B * V views)."""
    images = batch['image']
    if images.ndim == 4:
        logits, out, _ = forward(state, state.params, batch, grouping, task, train=False)
        return logits, out
    b, views = images.shape[:2]
    flat = {'image': images.reshape((b * views,) + images.shape[2:])}
    logits, out, _ = forward(state, state.params, flat, grouping, task, train=False)
    probs = jax.nn.softmax(logits.astype(jnp.float32))
    probs = probs.reshape((b, views) + probs.shape[1:]).mean(axis=1)
    return jnp.log(probs), out


def make_eval_step(task) -> Callable:
    """``eval_step(state, batch, grouping) -> metrics`` on a masked batch: the task's metrics and
    its evaluation-only ones (per-class accuracy, prediction histograms)."""
    def eval_step(state: TrainState, batch: dict, grouping: Grouping) -> Metrics:
        logits, out = eval_logits(state, batch, grouping, task)
        mask = batch['mask'].astype(jnp.float32)
        targets = task.targets(batch['label'], grouping)
        args = (logits, out, targets, batch['label'], grouping, mask)
        return {**task.metrics(*args), **task.evaluation_metrics(*args)}

    return eval_step


def make_predict_step(task, outputs: Sequence[str]) -> Callable:
    """``predict_step(state, batch, grouping) -> {name: [B, ...]}``: the task's named ``outputs``
    in eval mode (e.g. 'top1' for specialty counts, 'probabilities', 'features')."""
    outputs = tuple(outputs)

    def predict_step(state: TrainState, batch: dict, grouping: Grouping) -> dict[str, jax.Array]:
        logits, out = eval_logits(state, batch, grouping, task)
        return task.predictions(logits, out, grouping, outputs)

    return predict_step

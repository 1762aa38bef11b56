"""Optimisers, learning-rate schedules and per-layer lr/decay multipliers.

The Caffe release trains with momentum SGD where the learning rate sits
*inside* the momentum buffer and every parameter blob has its own lr and
weight-decay multiplier:  v <- mu v + lr lr_mult (g + wd decay_mult w);
w <- w - v.  ``caffe_sgd`` is exactly that; ``sgd`` and ``adamw`` are the
usual optax alternatives.
"""
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util

from nofe_jax import validation
from nofe_jax.training import config_checks
from nofe_jax.training.durations import to_steps


def param_path(path: tuple) -> str:
    """'/'-joined parameter path, e.g. 'trunk/conv1/bias' (what multiplier regexes see)."""
    return '/'.join(str(p) for p in path)


def multiplier_trees(params, rules: Sequence[Sequence]) -> tuple:
    """Per-parameter (lr_mult, decay_mult) trees from ``(regex, lr, decay)`` rules.

    The first rule whose regex matches (``re.search``) the parameter path wins;
    unmatched parameters get (1, 1), Caffe's default.
    """
    compiled = [(re.compile(r), float(lr), float(dc)) for r, lr, dc in rules]

    def lookup(path, _):
        name = param_path(path)
        for pattern, lr_mult, decay_mult in compiled:
            if pattern.search(name):
                return lr_mult, decay_mult
        return 1.0, 1.0

    flat = traverse_util.flatten_dict(params)
    pairs = {path: lookup(path, leaf) for path, leaf in flat.items()}
    lr_tree = traverse_util.unflatten_dict({p: v[0] for p, v in pairs.items()})
    decay_tree = traverse_util.unflatten_dict({p: v[1] for p, v in pairs.items()})
    return lr_tree, decay_tree


def learning_rate_schedule(config: ml_collections.ConfigDict, *, total_steps: int,
                           steps_per_epoch: int, batch_size: int) -> optax.Schedule:
    """The configured schedule; step boundaries given as durations are resolved here."""
    validation.raise_problems(config_checks.optim_config_problems(config))
    resolve = lambda d: to_steps(d, steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    warmup = resolve(config.warmup)
    if config.schedule == 'constant':
        main = optax.constant_schedule(config.lr)
    elif config.schedule == 'piecewise':
        # Caffe's hand restarts: lr, then boundary_lrs[i] from boundaries[i] on.
        rates = (config.lr, *config.boundary_lrs)
        main = optax.piecewise_constant_schedule(
            config.lr, {resolve(b) - warmup: v / prev
                        for b, v, prev in zip(config.boundaries, rates[1:], rates[:-1])})
    elif config.schedule == 'cosine':
        main = optax.cosine_decay_schedule(config.lr, max(total_steps - warmup, 1))
    elif config.schedule == 'exponential':
        main = optax.exponential_decay(config.lr, max(total_steps - warmup, 1),
                                       config.final_lr / config.lr)
    else:  # unreachable after config_problems
        raise AssertionError(config.schedule)
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, config.lr, warmup), main], [warmup])


def _scale_by_tree(scales) -> optax.GradientTransformation:
    """Multiplies each update by its parameter's fixed factor."""
    return optax.stateless(lambda updates, _: jax.tree.map(lambda u, s: u * s, updates, scales))


def _add_scaled_weights(weight_decay: float, factors) -> optax.GradientTransformation:
    """g + wd * decay_mult * w, Caffe's per-blob weight decay."""
    return optax.stateless(lambda updates, params: jax.tree.map(
        lambda g, w, f: g + weight_decay * f * w, updates, params, factors))


def last_layer_mask(params) -> Any:
    """A bool per parameter: True in a classifier, the last layer of a ``head`` (of every stacked
    base network's head too), which DeepME's warm-up trains alone."""
    def in_last_layer(path: tuple) -> bool:
        if 'head' not in path:
            return False
        depth = path.index('head') + 1
        head = params
        for name in path[:depth]:
            head = head[name]
        return len(path) > depth and path[depth] == list(head)[-1]  # the order classifier_name reads
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({path: in_last_layer(path) for path in flat})


class HoldState(NamedTuple):
    count: jax.Array  # steps taken


def _hold_all_but(trainable, steps: int) -> optax.GradientTransformation:
    """Zeroes the updates of every parameter not ``trainable`` (a bool tree) for the first
    ``steps`` steps; where it stands in a chain, the stages after it see zeros (no momentum
    builds up for the held parameters)."""
    def init(params):
        del params
        return HoldState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        held = state.count < steps
        updates = jax.tree.map(lambda u, keep: u if keep else jnp.where(held, jnp.zeros_like(u), u),
                               updates, trainable)
        return updates, HoldState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def create_optimizer(config: ml_collections.ConfigDict, params, schedule: optax.Schedule,
                     last_layer_steps: int = 0) -> optax.GradientTransformation:
    """The optimiser named by ``config.name`` with multipliers from ``config.multipliers``; for the
    first ``last_layer_steps`` steps (``config.last_layer_only`` resolved) it updates only the
    classifier (``last_layer_mask``): its gradient, weight decay and momentum alone."""
    validation.raise_problems(config_checks.optim_config_problems(config))
    lr_mult, decay_mult = multiplier_trees(params, config.multipliers)
    trainable = last_layer_mask(params)
    if last_layer_steps and not any(jax.tree.leaves(trainable)):
        raise validation.ConfigError('optim.last_layer_only needs a model with a head (a classifier to '
                                     'train alone); this stage has none.')
    hold = (_hold_all_but(trainable, last_layer_steps),) if last_layer_steps else ()
    if config.name == 'caffe_sgd':
        return optax.chain(
            _add_scaled_weights(config.weight_decay, decay_mult),
            *hold,
            _scale_by_tree(lr_mult),
            optax.scale_by_learning_rate(schedule),
            # Momentum after the lr scaling: the buffer holds lr-scaled steps,
            # so an lr drop does not rescale the stored momentum (Caffe).
            optax.trace(decay=config.momentum, nesterov=False),
        )
    if config.name == 'sgd':
        return optax.chain(
            _add_scaled_weights(config.weight_decay, decay_mult),
            *hold,
            optax.trace(decay=config.momentum, nesterov=config.nesterov),
            _scale_by_tree(lr_mult),
            optax.scale_by_learning_rate(schedule),
        )
    if config.name == 'adamw':
        return optax.chain(
            *hold,  # before Adam's moments, and again after the decoupled decay
            optax.scale_by_adam(),
            _add_scaled_weights(config.weight_decay, decay_mult),
            *hold,
            _scale_by_tree(lr_mult),
            optax.scale_by_learning_rate(schedule),
        )
    raise AssertionError(config.name)  # unreachable after config_problems

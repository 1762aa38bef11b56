"""The train state: everything a step needs and a checkpoint must hold."""
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """Parameters, non-trainable model variables, optimiser state, step and rng."""
    step: jax.Array
    params: Any
    model_state: Any  # other variable collections: 'batch_stats', 'frozen'
    opt_state: optax.OptState
    rng: jax.Array
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def apply_gradients(self, grads, new_model_state) -> 'TrainState':
        """One optimiser update; mutable collections replaced by their new values."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1,
                            params=optax.apply_updates(self.params, updates),
                            model_state={**self.model_state, **new_model_state},
                            opt_state=opt_state)


def split_variables(variables: dict) -> tuple[Any, dict]:
    """(params, the other collections) of a flax variables dict."""
    variables = dict(variables)
    params = variables.pop('params')
    return params, variables


def create_train_state(apply_fn: Callable, variables: dict, tx: optax.GradientTransformation,
                       rng: jax.Array) -> TrainState:
    """A step-0 TrainState from freshly initialised (or copied) variables."""
    params, model_state = split_variables(variables)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                      opt_state=tx.init(params), rng=rng, apply_fn=apply_fn, tx=tx)

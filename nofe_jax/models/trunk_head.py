"""The base-model pattern every architecture shares: a `trunk` (what the NofE reuses) and a `head`."""

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp


def option_names(cls: type[nn.Module]) -> set[str]:
    """Constructor fields of a module class, without flax's `parent` and `name`."""
    return {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}


def _options_for(model: nn.Module, cls: type[nn.Module]) -> dict[str, Any]:
    """The fields of `model` that `cls` also has, by name."""
    return {name: getattr(model, name) for name in option_names(cls) & option_names(type(model))}


class TrunkHeadModel(nn.Module):
    """Base model = `trunk_cls` (param subtree 'trunk') + `head_cls` (param subtree 'head').

    Subclasses set the two classes and declare the model's options as fields; each option goes to
    the trunk and/or the head with a field of the same name (`dtype` to both, `num_outputs` to the
    head). The trunk is thus exactly `trunk_cls(**its options)`, the module the NofE shares.
    """

    trunk_cls: ClassVar[type[nn.Module]]
    head_cls: ClassVar[type[nn.Module]]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(logits [B, num_outputs] in float32, named intermediates)."""
        features = self.trunk_cls(**_options_for(self, self.trunk_cls), name="trunk")(x, train=train)
        logits = self.head_cls(**_options_for(self, self.head_cls), name="head")(features, train=train)
        logits = logits.astype(jnp.float32)
        return logits, {"features": features, "logits": logits}

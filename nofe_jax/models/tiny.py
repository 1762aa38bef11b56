"""A tiny CNN for tests and the digits quickstart (any H x W x C input, e.g. 8x8x1 or 28x28x1)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nofe_jax.models import layers
from nofe_jax.models.trunk_head import TrunkHeadModel


def _conv3_relu(x: jax.Array, features: int, name: str, dtype: Any) -> jax.Array:
    """3x3 pad-1 conv (msra fan-out) followed by ReLU: every tiny conv."""
    return nn.relu(layers.conv(features, 3, padding=1, init=layers.msra_fan_out(), name=name, dtype=dtype)(x))


def _flat_fc(x: jax.Array, num_outputs: int, dtype: Any) -> jax.Array:
    """ip1 (xavier) on the flattened map: the flat head, and every expert's last layer."""
    return layers.dense(num_outputs, init=layers.xavier(), name="ip1", dtype=dtype)(layers.flatten(x))


class TinyCNNTrunk(nn.Module):
    """conv1 3x3 16 + ReLU, conv2 3x3 32 + ReLU, MAX pool 2/2: [B, H, W, C] -> [B, H/2, W/2, 32]."""

    dtype: Any = jnp.float32
    width: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Trunk features of NHWC images."""
        del train
        x = _conv3_relu(x.astype(self.dtype), self.width, "conv1", self.dtype)
        x = _conv3_relu(x, 2 * self.width, "conv2", self.dtype)
        return layers.pool2d(x, "max", 2, 2, caffe=False)


class TinyCNNHead(nn.Module):
    """ip1: flattened features -> logits."""

    num_outputs: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, num_outputs]."""
        del train
        return _flat_fc(features, self.num_outputs, self.dtype)


class TinyCNN(TrunkHeadModel):
    """Tiny CNN: two 3x3 convs, a max pool and one FC (about 10k parameters on 8x8x1 digits)."""

    trunk_cls = TinyCNNTrunk
    head_cls = TinyCNNHead

    num_outputs: int
    dtype: Any = jnp.float32
    width: int = 16


class TinyCNNBranch(nn.Module):
    """Tiny expert: conv1 3x3 16 + ReLU, then the base head's FC on the flattened map.

    Like every release branch it replicates the base model above the cut (here the
    flat FC head) with one extra conv in front; it keeps the spatial layout the
    flat head classifies from (a global pool here left the experts near chance).
    """

    num_outputs: int
    dtype: Any = jnp.float32
    branch_width: int = 16  # its conv's channels (named apart from the trunk's `width`: overrides go by name)

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Expert logits [B, num_outputs] from trunk features."""
        del train
        x = _conv3_relu(features.astype(self.dtype), self.branch_width, "conv1", self.dtype)
        return _flat_fc(x, self.num_outputs, self.dtype)

"""A tiny CNN for tests and the digits quickstart (any H x W x C input, e.g. 8x8x1 or 28x28x1)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nofe_jax.models import layers


class TinyCNNTrunk(nn.Module):
    """conv1 3x3 16 + ReLU, conv2 3x3 32 + ReLU, MAX pool 2/2: [B, H, W, C] -> [B, H/2, W/2, 32]."""

    dtype: Any = jnp.float32
    width: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Trunk features of NHWC images."""
        del train
        x = x.astype(self.dtype)
        x = nn.relu(layers.conv(self.width, 3, padding=1, init=layers.msra_fan_out(), name="conv1",
                                dtype=self.dtype)(x))
        x = nn.relu(layers.conv(2 * self.width, 3, padding=1, init=layers.msra_fan_out(), name="conv2",
                                dtype=self.dtype)(x))
        return layers.pool2d(x, "max", 2, 2, caffe=False)


class TinyCNNHead(nn.Module):
    """ip1: flattened features -> logits."""

    num_outputs: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, num_outputs]."""
        del train
        return layers.dense(self.num_outputs, init=layers.xavier(), name="ip1", dtype=self.dtype)(
            layers.flatten(features)
        )


class TinyCNN(nn.Module):
    """Tiny CNN: two 3x3 convs, a max pool and one FC (about 10k parameters on 8x8x1 digits)."""

    num_outputs: int
    dtype: Any = jnp.float32
    width: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(logits [B, num_outputs], named intermediates)."""
        features = TinyCNNTrunk(self.dtype, self.width, name="trunk")(x, train=train)
        logits = TinyCNNHead(self.num_outputs, self.dtype, name="head")(features, train=train)
        logits = logits.astype(jnp.float32)
        return logits, {"features": features, "logits": logits}


class TinyCNNBranch(nn.Module):
    """Tiny expert: conv1 3x3 16 + ReLU, global AVE pool, ip1."""

    num_outputs: int
    dtype: Any = jnp.float32
    width: int = 16

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Expert logits [B, num_outputs] from trunk features."""
        del train
        x = nn.relu(layers.conv(self.width, 3, padding=1, init=layers.msra_fan_out(), name="conv1",
                                dtype=self.dtype)(features.astype(self.dtype)))
        x = layers.global_ave_pool(x)
        return layers.dense(self.num_outputs, init=layers.xavier(), name="ip1", dtype=self.dtype)(x)

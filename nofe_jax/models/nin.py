"""The release's Network-in-Network for CIFAR-100 (26x26 crops)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nofe_jax.models import layers
from nofe_jax.models.trunk_head import TrunkHeadModel

_INIT = layers.gaussian(0.05)  # every NIN weight is N(0, 0.05^2), biases 0


def _conv_relu(x: jax.Array, features: int, kernel: int, padding: int, name: str, dtype: Any) -> jax.Array:
    """Conv (NIN init) followed by ReLU."""
    return nn.relu(layers.conv(features, kernel, padding=padding, init=_INIT, name=name, dtype=dtype)(x))


def _conv3_cccp(x: jax.Array, features: int, conv_name: str, cccp_name: str, dtype: Any) -> jax.Array:
    """3x3 conv + 1x1 cccp (ReLU each): the last trunk block, each extra layer and the expert's start."""
    x = _conv_relu(x, features, 3, 1, conv_name, dtype)
    return _conv_relu(x, features, 1, 0, cccp_name, dtype)


def _classifier(x: jax.Array, num_outputs: int, dtype: Any) -> jax.Array:
    """cccp6 1x1 num_outputs + ReLU, then global AVE pool: the logits are >= 0 as in the release."""
    return layers.global_ave_pool(_conv_relu(x, num_outputs, 1, 0, "cccp6", dtype))


class NINC100Trunk(nn.Module):
    """conv1..cccp5 + ReLU (includes conv3 and cccp5): [B, 26, 26, 3] -> [B, 6, 6, 192].

    pool2 is 'ave' in the release's generalist and 'max' in its NofE.
    Table 4 baselines (defaults keep the release's network): `width_multiplier` scales every conv's
    channels; `extra_layers` appends that many expert-style (conv 3x3 192, cccp 1x1 192) pairs
    (extra{i}_conv, extra{i}_cccp), so one makes the base model as deep as the NofE.
    """

    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    pool2: str = "ave"
    dropout_rate: float = 0.5
    width_multiplier: float = 1.0
    extra_layers: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Trunk features of NHWC images."""
        x, dtype = x.astype(self.dtype), self.dtype
        width = lambda features: layers.scaled_width(features, self.width_multiplier)  # noqa: E731
        x = _conv_relu(x, width(192), 5, 2, "conv1", dtype)
        x = _conv_relu(x, width(160), 1, 0, "cccp1", dtype)
        x = _conv_relu(x, width(96), 1, 0, "cccp2", dtype)
        x = layers.pool2d(x, "max", 3, 2, caffe=self.caffe_pooling)
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="drop3")(x)
        x = _conv_relu(x, width(192), 5, 2, "conv2", dtype)
        x = _conv_relu(x, width(192), 1, 0, "cccp3", dtype)
        x = _conv_relu(x, width(192), 1, 0, "cccp4", dtype)
        x = layers.pool2d(x, self.pool2, 3, 2, caffe=self.caffe_pooling)
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="drop6")(x)
        x = _conv3_cccp(x, width(192), "conv3", "cccp5", dtype)
        for i in range(1, self.extra_layers + 1):
            x = _conv3_cccp(x, width(192), f"extra{i}_conv", f"extra{i}_cccp", dtype)
        return x


class NINC100Head(nn.Module):
    """cccp6 1x1 num_outputs + ReLU, then global AVE pool (pool3); the logits are >= 0 as in the release."""

    num_outputs: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, num_outputs]."""
        del train
        return _classifier(features.astype(self.dtype), self.num_outputs, self.dtype)


class NINC100(TrunkHeadModel):
    """The release's NIN-C100 generalist/base network, 26x26 input; width/depth options as in the trunk."""

    trunk_cls = NINC100Trunk
    head_cls = NINC100Head

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    pool2: str = "ave"
    dropout_rate: float = 0.5
    width_multiplier: float = 1.0
    extra_layers: int = 0


class NINC100Branch(nn.Module):
    """NIN-C100 expert: conv3 3x3 192, cccp5 1x1 192, cccp6 1x1 num_outputs (ReLU each), global AVE pool."""

    num_outputs: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Expert logits [B, num_outputs] from trunk features [B, 6, 6, 192]."""
        del train
        x = _conv3_cccp(features.astype(self.dtype), 192, "conv3", "cccp5", self.dtype)
        return _classifier(x, self.num_outputs, self.dtype)

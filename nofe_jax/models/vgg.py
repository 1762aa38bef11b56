"""VGG family: the release's custom CIFAR-100 "VGG11" and standard ImageNet VGG16 (used by DeepME)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nofe_jax.models import layers
from nofe_jax.models.trunk_head import TrunkHeadModel

# (stage width, convs per stage) of each conv stack; every stage ends with MAX pool 2/2.
_VGG11_C100_STAGES = ((64, 2), (128, 2), (256, 4))
_VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def _conv3_relu(x: jax.Array, features: int, name: str, dtype: Any) -> jax.Array:
    """3x3 pad-1 conv (xavier) followed by ReLU: every VGG conv."""
    return nn.relu(layers.conv(features, 3, padding=1, init=layers.xavier(), name=name, dtype=dtype)(x))


def _conv_stages(x: jax.Array, stages: tuple[tuple[int, int], ...], caffe: bool, dtype: Any) -> jax.Array:
    """3x3 pad-1 conv-ReLU stages named convS_I, each followed by MAX pool 2/2."""
    for stage, (width, depth) in enumerate(stages, start=1):
        for i in range(1, depth + 1):
            x = _conv3_relu(x, width, f"conv{stage}_{i}", dtype)
        x = layers.pool2d(x, "max", 2, 2, caffe=caffe)
    return x


def _classifier(x: jax.Array, hidden: int, num_outputs: int, names: tuple[str, str, str], dropout_rate: float,
                train: bool, dtype: Any) -> jax.Array:
    """Two FC-ReLU-dropout layers of `hidden` units, then a final FC; xavier weights, zero biases."""
    return layers.fc_relu_dropout_stack(x, (hidden, hidden), num_outputs, names, init=layers.xavier(),
                                        out_init=layers.xavier(), dropout_rate=dropout_rate, train=train,
                                        dtype=dtype)


class VGG11C100Trunk(nn.Module):
    """The release's 8 conv layers + pool3: [B, 32, 32, 3] -> [B, 4, 4, 256].

    Table 4 baselines (defaults keep the release's network): `width_multiplier` scales every conv's
    channels; `extra_layers` appends that many expert-style conv 3x3x256 + ReLU layers (conv4_1,
    conv4_2, ...) after pool3, without a pool (the expert branch has two, so two make the base as
    deep as the NofE).
    """

    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    width_multiplier: float = 1.0
    extra_layers: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Trunk features of NHWC images."""
        del train
        stages = tuple((layers.scaled_width(w, self.width_multiplier), d) for w, d in _VGG11_C100_STAGES)
        x = _conv_stages(x.astype(self.dtype), stages, self.caffe_pooling, self.dtype)
        extra_width = layers.scaled_width(256, self.width_multiplier)
        for i in range(1, self.extra_layers + 1):
            x = _conv3_relu(x, extra_width, f"conv4_{i}", self.dtype)
        return x


class VGG11C100Head(nn.Module):
    """fc1 1024, fc2 1024 (ReLU + dropout each; both x width_multiplier), fc3."""

    num_outputs: int
    dtype: Any = jnp.float32
    dropout_rate: float = 0.5
    width_multiplier: float = 1.0

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, num_outputs]."""
        hidden = layers.scaled_width(1024, self.width_multiplier)
        return _classifier(features, hidden, self.num_outputs, ("fc1", "fc2", "fc3"), self.dropout_rate, train,
                           self.dtype)


class VGG11C100(TrunkHeadModel):
    """The release's custom CIFAR-100 VGG11 (64,64 / 128,128 / 256x4, FC1024, FC1024), 32x32 input.

    `width_multiplier` scales the convs and the hidden FCs; `extra_layers` as in VGG11C100Trunk.
    """

    trunk_cls = VGG11C100Trunk
    head_cls = VGG11C100Head

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    dropout_rate: float = 0.5
    width_multiplier: float = 1.0
    extra_layers: int = 0


class VGG11C100Branch(nn.Module):
    """VGG11-C100 expert: conv1, conv2 3x3x256, MAX pool 2/2, fc1 512, fc2 512 (ReLU + dropout), fc3."""

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Expert logits [B, num_outputs] from trunk features [B, 4, 4, 256]."""
        x = features.astype(self.dtype)
        for name in ("conv1", "conv2"):
            x = _conv3_relu(x, 256, name, self.dtype)
        x = layers.pool2d(x, "max", 2, 2, caffe=self.caffe_pooling)
        return _classifier(x, 512, self.num_outputs, ("fc1", "fc2", "fc3"), self.dropout_rate, train, self.dtype)


class VGG16Trunk(nn.Module):
    """VGG16 conv1_1..pool5: [B, 224, 224, 3] -> [B, 7, 7, 512]."""

    dtype: Any = jnp.float32
    caffe_pooling: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Trunk features of NHWC images."""
        del train
        return _conv_stages(x.astype(self.dtype), _VGG16_STAGES, self.caffe_pooling, self.dtype)


class VGG16Head(nn.Module):
    """VGG16 fc6 4096, fc7 4096 (ReLU + dropout each), fc8."""

    num_outputs: int
    dtype: Any = jnp.float32
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, num_outputs]."""
        return _classifier(features, 4096, self.num_outputs, ("fc6", "fc7", "fc8"), self.dropout_rate, train,
                           self.dtype)


class VGG16(TrunkHeadModel):
    """Standard ImageNet VGG16 (configuration D), 224x224 input."""

    trunk_cls = VGG16Trunk
    head_cls = VGG16Head

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    dropout_rate: float = 0.5

"""AlexNet family: the release's CIFAR-100 AlexNet (cifar10_full) and Quick (cifar10_quick), and BVLC ImageNet AlexNet.

Each model = `trunk` (the conv stack the Network of Experts shares) + `head`; each has an expert
`Branch` that the NofE stacks on top of the trunk. Layer names are the release's Caffe names.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nofe_jax.models import layers
from nofe_jax.models.trunk_head import TrunkHeadModel

# LRN of cifar10_full (norm1, norm2 and the NofE's norm3).
_C100_LRN = dict(size=3, alpha=5e-5, beta=0.75)
# LRN of BVLC AlexNet.
_IMAGENET_LRN = dict(size=5, alpha=1e-4, beta=0.75)


def alexnet_c100_norm3(features: jax.Array) -> jax.Array:
    """The release's parameter-free LRN `norm3` between the AlexNet-C100 trunk and its expert branches."""
    return layers.lrn_within_channel(features, **_C100_LRN)


# Fillers of the experts' fresh conv4 (`nofe.branch_init`): the release's N(0, 0.01^2) shrinks
# the trunk features' RMS about 3.5x (0.01 * sqrt(5 * 5 * 64) = 0.4 before the ReLU), so a
# branch spends its first epochs growing them against ip1's strong decay; Caffe's msra (He)
# filler keeps their scale (not in the release).
BRANCH_INITS = {"release": layers.gaussian(0.01), "msra": layers.msra_fan_out()}


def _conv5_relu(x: jax.Array, features: int, name: str, dtype: Any, init: str = "release") -> jax.Array:
    """5x5 pad-2 conv with N(0, 0.01^2) weights (or another `BRANCH_INITS` filler), then ReLU (every C100
    conv after conv1)."""
    return nn.relu(layers.conv(features, 5, padding=2, init=BRANCH_INITS[init], name=name, dtype=dtype)(x))


def _expert_conv4(features: jax.Array, caffe: bool, dtype: Any, init: str) -> jax.Array:
    """The C100 experts' conv4 5x5x64 + ReLU and AVE pool 3/2 on trunk features [B, 4, 4, 64]."""
    x = _conv5_relu(features.astype(dtype), 64, "conv4", dtype, init)
    return layers.pool2d(x, "ave", 3, 2, caffe=caffe)


def _c100_classifier(x: jax.Array, num_outputs: int, dtype: Any) -> jax.Array:
    """AlexNet-C100's ip1 (N(0, 0.01^2)) on flattened x."""
    return layers.dense(num_outputs, init=layers.gaussian(0.01), name="ip1", dtype=dtype)(layers.flatten(x))


def _quick_classifier(x: jax.Array, hidden: int, num_outputs: int, dtype: Any) -> jax.Array:
    """AlexNet-Quick's ip1 of `hidden` units (no ReLU) and ip2 (both N(0, 0.1^2)) on flattened x."""
    x = layers.dense(hidden, init=layers.gaussian(0.1), name="ip1", dtype=dtype)(layers.flatten(x))
    return layers.dense(num_outputs, init=layers.gaussian(0.1), name="ip2", dtype=dtype)(x)


def _bvlc_classifier(x: jax.Array, hidden: int, num_outputs: int, dropout_rate: float, train: bool,
                     dtype: Any) -> jax.Array:
    """BVLC fc6, fc7 of `hidden` (ReLU + dropout; N(0, 0.005^2), bias 0.1) and fc8 (N(0, 0.01^2))."""
    return layers.fc_relu_dropout_stack(
        x, (hidden, hidden), num_outputs, ("fc6", "fc7", "fc8"), init=layers.gaussian(0.005),
        bias_init=layers.constant(0.1), out_init=layers.gaussian(0.01), dropout_rate=dropout_rate,
        train=train, dtype=dtype)


class AlexNetC100Trunk(nn.Module):
    """conv1..pool3 of AlexNet-C100: [B, 32, 32, 3] -> [B, 4, 4, 64].

    Table 4 baselines (defaults keep the release's network): `width_multiplier` scales every conv's
    channels; `extra_layers` appends that many expert-style conv 5x5x64 + ReLU layers (conv4,
    conv5, ...) after pool3, behind the NofE's LRN norm3 when `lrn`, so the base model is as deep
    as the NofE (no extra pooling: the head keeps reading [B, 4, 4, 64]).
    """

    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    lrn: bool = True
    width_multiplier: float = 1.0
    extra_layers: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Trunk features of NHWC images."""
        del train
        x = x.astype(self.dtype)
        caffe, dtype = self.caffe_pooling, self.dtype
        width = lambda features: layers.scaled_width(features, self.width_multiplier)  # noqa: E731
        x = layers.conv(width(32), 5, padding=2, init=layers.gaussian(1e-4), name="conv1", dtype=dtype)(x)
        x = nn.relu(layers.pool2d(x, "max", 3, 2, caffe=caffe))  # relu1 follows pool1
        if self.lrn:
            x = layers.lrn_within_channel(x, **_C100_LRN)
        x = _conv5_relu(x, width(32), "conv2", dtype)
        x = layers.pool2d(x, "ave", 3, 2, caffe=caffe)
        if self.lrn:
            x = layers.lrn_within_channel(x, **_C100_LRN)
        x = _conv5_relu(x, width(64), "conv3", dtype)
        x = layers.pool2d(x, "ave", 3, 2, caffe=caffe)
        if self.extra_layers and self.lrn:
            x = alexnet_c100_norm3(x)
        for i in range(self.extra_layers):
            x = _conv5_relu(x, width(64), f"conv{4 + i}", dtype)
        return x


class AlexNetC100Head(nn.Module):
    """ip1 of AlexNet-C100: flattened trunk features -> logits."""

    num_outputs: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, num_outputs]."""
        del train
        return _c100_classifier(features, self.num_outputs, self.dtype)


class AlexNetC100(TrunkHeadModel):
    """AlexNet-C100 (Caffe cifar10_full layout), 32x32 input; width/depth options as in the trunk."""

    trunk_cls = AlexNetC100Trunk
    head_cls = AlexNetC100Head

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    width_multiplier: float = 1.0
    extra_layers: int = 0


class AlexNetC100Branch(nn.Module):
    """AlexNet-C100 expert: conv4 5x5x64, ReLU, AVE pool 3/2, ip1."""

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    branch_init: str = "release"  # conv4's filler, a BRANCH_INITS key

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Expert logits [B, num_outputs] from trunk features [B, 4, 4, 64]."""
        del train
        x = _expert_conv4(features, self.caffe_pooling, self.dtype, self.branch_init)
        return _c100_classifier(x, self.num_outputs, self.dtype)


class AlexNetQuickC100Trunk(AlexNetC100Trunk):
    """conv1..pool3 of AlexNet-Quick-C100 (cifar10_quick: no LRN): [B, 32, 32, 3] -> [B, 4, 4, 64].

    `width_multiplier` / `extra_layers` as in AlexNetC100Trunk (no norm3 before the extra layers).
    """

    lrn: bool = False


class AlexNetQuickC100Head(nn.Module):
    """ip1 (64 x width_multiplier, no ReLU) and ip2 of AlexNet-Quick-C100."""

    num_outputs: int
    dtype: Any = jnp.float32
    width_multiplier: float = 1.0

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, num_outputs]."""
        del train
        hidden = layers.scaled_width(64, self.width_multiplier)
        return _quick_classifier(features, hidden, self.num_outputs, self.dtype)


class AlexNetQuickC100(TrunkHeadModel):
    """AlexNet-Quick-C100 (Caffe cifar10_quick layout), 32x32 input; width/depth options as in the trunk."""

    trunk_cls = AlexNetQuickC100Trunk
    head_cls = AlexNetQuickC100Head

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    width_multiplier: float = 1.0  # also scales the hidden ip1
    extra_layers: int = 0


class AlexNetQuickC100Branch(nn.Module):
    """AlexNet-Quick-C100 expert: conv4 5x5x64, ReLU, AVE pool 3/2, ip1 64 (no ReLU), ip2."""

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    branch_init: str = "release"  # conv4's filler, a BRANCH_INITS key

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Expert logits [B, num_outputs] from trunk features [B, 4, 4, 64]."""
        del train
        x = _expert_conv4(features, self.caffe_pooling, self.dtype, self.branch_init)
        return _quick_classifier(x, 64, self.num_outputs, self.dtype)


class AlexNetTrunk(nn.Module):
    """BVLC AlexNet conv1..pool5 (groups 2 on conv2/4/5): [B, 227, 227, 3] -> [B, 6, 6, 256]."""

    dtype: Any = jnp.float32
    caffe_pooling: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Trunk features of NHWC images."""
        del train
        x = x.astype(self.dtype)
        caffe, dtype = self.caffe_pooling, self.dtype
        g01, b01 = layers.gaussian(0.01), layers.constant(0.1)
        x = nn.relu(layers.conv(96, 11, stride=4, init=g01, name="conv1", dtype=dtype)(x))
        x = layers.pool2d(layers.lrn_across_channels(x, **_IMAGENET_LRN), "max", 3, 2, caffe=caffe)
        x = nn.relu(layers.conv(256, 5, padding=2, groups=2, init=g01, bias_init=b01, name="conv2", dtype=dtype)(x))
        x = layers.pool2d(layers.lrn_across_channels(x, **_IMAGENET_LRN), "max", 3, 2, caffe=caffe)
        x = nn.relu(layers.conv(384, 3, padding=1, init=g01, name="conv3", dtype=dtype)(x))
        x = nn.relu(layers.conv(384, 3, padding=1, groups=2, init=g01, bias_init=b01, name="conv4", dtype=dtype)(x))
        x = nn.relu(layers.conv(256, 3, padding=1, groups=2, init=g01, bias_init=b01, name="conv5", dtype=dtype)(x))
        return layers.pool2d(x, "max", 3, 2, caffe=caffe)


class AlexNetHead(nn.Module):
    """BVLC AlexNet fc6 4096, fc7 4096 (ReLU + dropout each), fc8."""

    num_outputs: int
    dtype: Any = jnp.float32
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, num_outputs]."""
        return _bvlc_classifier(features, 4096, self.num_outputs, self.dropout_rate, train, self.dtype)


class AlexNet(TrunkHeadModel):
    """BVLC ImageNet AlexNet (groups, cross-channel LRN), 227x227 input."""

    trunk_cls = AlexNetTrunk
    head_cls = AlexNetHead

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    dropout_rate: float = 0.5


class AlexNetBranch(nn.Module):
    """ImageNet AlexNet expert: conv6 3x3x256 group 2, ReLU, MAX pool 3/2, fc6 1024, fc7 1024, fc8."""

    num_outputs: int
    dtype: Any = jnp.float32
    caffe_pooling: bool = True
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Expert logits [B, num_outputs] from trunk features [B, 6, 6, 256]."""
        x = features.astype(self.dtype)
        x = nn.relu(layers.conv(256, 3, padding=1, groups=2, init=layers.gaussian(0.01),
                                bias_init=layers.constant(0.1), name="conv6", dtype=self.dtype)(x))
        x = layers.pool2d(x, "max", 3, 2, caffe=self.caffe_pooling)
        return _bvlc_classifier(x, 1024, self.num_outputs, self.dropout_rate, train, self.dtype)

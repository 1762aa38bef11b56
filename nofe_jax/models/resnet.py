"""The release's "ResNet56" for CIFAR-100: 4x wide (64/128/256), 28x28 crops, frozen identity projections."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nofe_jax.models import layers
from nofe_jax.models.trunk_head import TrunkHeadModel


def _pool_fc(x: jax.Array, num_outputs: int, name: str, dtype: Any) -> jax.Array:
    """Global AVE pool, then an FC with N(0, 0.01^2) weights: the head's and each expert's classifier."""
    return layers.dense(num_outputs, init=layers.gaussian(0.01), name=name, dtype=dtype)(layers.global_ave_pool(x))


class ResNet56C100Trunk(nn.Module):
    """conv_0 + all residual blocks: [B, 28, 28, 3] -> [B, 7, 7, widths[-1]].

    Caffe numbers the block convs globally (conv_1 .. conv_54, BN likewise); the first block of
    each later stage has stride 2 and a frozen identity 1x1 projection (proj_19, proj_37).
    Table 4 baselines (defaults keep the release's network): `width_multiplier` scales `widths`;
    `extra_layers` appends that many expert-style residual blocks to the last stage (numbered on:
    conv_55/conv_56, ...), so one makes the base model as deep as the NofE.
    """

    dtype: Any = jnp.float32
    widths: tuple[int, ...] = (64, 128, 256)
    blocks_per_stage: int = 9
    width_multiplier: float = 1.0
    extra_layers: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Trunk features of NHWC images."""
        widths = [layers.scaled_width(w, self.width_multiplier) for w in self.widths]
        x = x.astype(self.dtype)
        x = layers.conv(widths[0], 3, padding=1, use_bias=False, init=layers.msra_fan_out(),
                        name="conv_0", dtype=self.dtype)(x)
        x = nn.relu(layers.batch_norm(name="bn_0", train=train, dtype=self.dtype)(x))
        for stage, width in enumerate(widths):
            extra = self.extra_layers if stage == len(widths) - 1 else 0
            for i in range(self.blocks_per_stage + extra):
                index = 2 * (stage * self.blocks_per_stage + i) + 1
                downsample = stage > 0 and i == 0
                x = layers.basic_block(
                    x,
                    width,
                    conv_names=(f"conv_{index}", f"conv_{index + 1}"),
                    bn_names=(f"bn_{index}", f"bn_{index + 1}"),
                    train=train,
                    stride=2 if downsample else 1,
                    proj_name=f"proj_{index}" if downsample else None,
                    dtype=self.dtype,
                )
        return x


class ResNet56C100Head(nn.Module):
    """pool_55 (global AVE) + fc_55."""

    num_outputs: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, num_outputs]."""
        del train
        return _pool_fc(features.astype(self.dtype), self.num_outputs, "fc_55", self.dtype)


class ResNet56C100(TrunkHeadModel):
    """The release's wide ResNet56 (BatchNorm; stats in 'batch_stats', projections in 'frozen'), 28x28 input.

    `width_multiplier` / `extra_layers` as in ResNet56C100Trunk.
    """

    trunk_cls = ResNet56C100Trunk
    head_cls = ResNet56C100Head

    num_outputs: int
    dtype: Any = jnp.float32
    widths: tuple[int, ...] = (64, 128, 256)
    blocks_per_stage: int = 9
    width_multiplier: float = 1.0
    extra_layers: int = 0


class ResNet56C100Branch(nn.Module):
    """ResNet56-C100 expert: one basic block (identity shortcut) + global AVE pool + fc."""

    num_outputs: int
    dtype: Any = jnp.float32
    features: int = 256

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
        """Expert logits [B, num_outputs] from trunk features [B, 7, 7, features]."""
        x = layers.basic_block(features.astype(self.dtype), self.features, conv_names=("conv1", "conv2"),
                               bn_names=("bn1", "bn2"), train=train, dtype=self.dtype)
        return _pool_fc(x, self.num_outputs, "fc", self.dtype)

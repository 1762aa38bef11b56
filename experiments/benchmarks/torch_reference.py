"""A PyTorch implementation of the release AlexNet-C100 and its NofE, timed beside the JAX one by `train_speed`.

The same layers and parameter counts as `nofe_jax.models.alexnet` (cifar10_full: ceil-mode pools
whose edge AVE windows divide by their in-bounds cells, Caffe's WITHIN_CHANNEL LRN, the release's
Gaussian fillers), written as a PyTorch user would: NCHW, eager mode, `torch.optim.SGD`. The K
experts are fused: they all read the same trunk features, so their conv4s are one convolution
with K x 64 output channels (a probe here took about 15% less time than a groups=K convolution
over K copies of the features, forward and backward), and their ip1s one batched matmul over K.

Only imported when torch is installed (`pip install -e ".[torch]"`, not part of CI).
"""
import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_LRN = dict(size=3, alpha=5e-5, beta=0.75)  # norm1, norm2 and the NofE's norm3
_FEATURES = (64, 4, 4)  # trunk output [C, H, W]
_EXPERT_CHANNELS = 64  # each expert's conv4


def use_all_cores() -> dict:
    """Sets torch's intra-op threads to the machine's cores, as XLA:CPU uses them all.

    Returns {'torch_version', 'torch_threads'} for the report."""
    torch.set_num_threads(os.cpu_count())
    return {'torch_version': torch.__version__, 'torch_threads': torch.get_num_threads()}


def lrn_within_channel(x: torch.Tensor, size: int, alpha: float, beta: float) -> torch.Tensor:
    """Caffe LRN WITHIN_CHANNEL: x * (1 + alpha / size^2 * sum of x^2 over a zero-padded size x size window)^-beta."""
    mean_squares = F.avg_pool2d(x * x, size, stride=1, padding=(size - 1) // 2, count_include_pad=True)
    return x * (1 + alpha * mean_squares) ** -beta


def caffe_pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Caffe's 3x3 stride-2 pool: ceil mode, and (no padding) edge AVE windows divided by their in-bounds cells."""
    pool = F.max_pool2d if kind == 'max' else F.avg_pool2d
    return pool(x, 3, 2, ceil_mode=True)


def _conv5(in_channels: int, out_channels: int, std: float) -> nn.Conv2d:
    """A 5x5 pad-2 conv with N(0, std^2) weights and zero biases (the release's gaussian filler)."""
    conv = nn.Conv2d(in_channels, out_channels, 5, padding=2)
    nn.init.normal_(conv.weight, std=std)
    nn.init.zeros_(conv.bias)
    return conv


class AlexNetC100Trunk(nn.Module):
    """conv1..pool3: [B, 3, 32, 32] -> [B, 64, 4, 4]."""

    def __init__(self):
        super().__init__()
        self.conv1 = _conv5(3, 32, 1e-4)
        self.conv2 = _conv5(32, 32, 0.01)
        self.conv3 = _conv5(32, 64, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = lrn_within_channel(F.relu(caffe_pool(self.conv1(x), 'max')), **_LRN)  # relu1 follows pool1
        x = lrn_within_channel(caffe_pool(F.relu(self.conv2(x)), 'ave'), **_LRN)
        return caffe_pool(F.relu(self.conv3(x)), 'ave')


class AlexNetC100(nn.Module):
    """The flat model: trunk + ip1 over C classes."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.trunk = AlexNetC100Trunk()
        self.ip1 = nn.Linear(int(np.prod(_FEATURES)), num_classes)
        nn.init.normal_(self.ip1.weight, std=0.01)
        nn.init.zeros_(self.ip1.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ip1(self.trunk(x).flatten(1))


class FusedExperts(nn.Module):
    """K AlexNet-C100 experts (conv4 5x5x64, ReLU, AVE pool 3/2, ip1 to c_max) as one conv and one batched matmul."""

    def __init__(self, num_experts: int, c_max: int):
        super().__init__()
        self.num_experts = num_experts
        self.conv4 = _conv5(_FEATURES[0], num_experts * _EXPERT_CHANNELS, 0.01)
        pooled = _EXPERT_CHANNELS * 2 * 2  # conv4 keeps 4x4; the ceil-mode pool makes it 2x2
        self.ip1_weight = nn.Parameter(torch.randn(num_experts, pooled, c_max) * 0.01)
        self.ip1_bias = nn.Parameter(torch.zeros(num_experts, c_max))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Branch logits [B, K, c_max] of trunk features [B, 64, 4, 4]."""
        x = caffe_pool(F.relu(self.conv4(features)), 'ave')  # [B, K * 64, 2, 2], expert-major channels
        x = x.reshape(x.shape[0], self.num_experts, -1)  # [B, K, 256]
        return torch.einsum('bki,kio->bko', x, self.ip1_weight) + self.ip1_bias


class AlexNetC100NofE(nn.Module):
    """Trunk, norm3, the fused experts, and the gather of their logits into class order by `class_slots`."""

    def __init__(self, class_slots: np.ndarray, num_experts: int, c_max: int):
        super().__init__()
        self.trunk = AlexNetC100Trunk()
        self.experts = FusedExperts(num_experts, c_max)
        self.register_buffer('class_slots', torch.as_tensor(class_slots, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch_logits = self.experts(lrn_within_channel(self.trunk(x), **_LRN))
        return branch_logits.flatten(1).index_select(1, self.class_slots)  # [B, C]


def build_models(class_slots: np.ndarray, num_experts: int, c_max: int) -> dict[str, nn.Module]:
    """{'base': flat AlexNet-C100, 'nofe': its NofE} over the classes that `class_slots` places."""
    torch.manual_seed(0)
    return {'base': AlexNetC100(len(class_slots)), 'nofe': AlexNetC100NofE(class_slots, num_experts, c_max)}


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of `model` (buffers such as class_slots are not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_train_step(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                    learning_rate: float = 1e-3) -> Callable[[], float]:
    """A call that runs one SGD step (momentum 0.9, as train_speed's optax.sgd) of `model` on the fixed
    batch and returns the loss before it; the NHWC `images` go in as torch's NCHW."""
    inputs = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    targets = torch.from_numpy(labels.astype(np.int64))
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)

    def step() -> float:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step

"""PODNet's CIFAR ResNet-32 (the official code's ``rebuffi`` network, after iCaRL's CIFAR-100 net).

It differs from the ResNet-32 of He et al. (cil/models/resnet_cifar.py) in four ways, each of
which changes what PODNet distils and how it trains:

* no ReLU after a block's residual addition, anywhere: ``y = x + BN(conv(ReLU(BN(conv(x)))))``
  (the only ReLUs are the stem's and the one inside each block);
* the second BatchNorm of every block starts with weight 0, so every block starts as the identity;
* four stages: 5 blocks of 16 channels, 5 of 32 (the first halves the resolution), 4 of 64 (the
  first halves it again), then one more block of 64 channels: 15 blocks, 31 convolutions;
* a down-sampling block's shortcut takes every other pixel and appends zero channels after them.

``stage_maps`` are the four stages' outputs (the last block of each, no activation): the maps
POD-spatial distils. The embedding is the average pool of the last stage, without ReLU, as the
official classifier sees it (``classifier_no_act``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cil.models.backbone import Backbone


class _StridedZeroPad(nn.Module):
    """Shortcut of a down-sampling block: every other pixel, then as many zero channels appended."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        return torch.cat([x, torch.zeros_like(x)], dim=1)


class PODNetBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the shortcut, no activation after the addition."""

    def __init__(self, in_channels: int, downsample: bool = False):
        super().__init__()
        out_channels = 2 * in_channels if downsample else in_channels
        self.conv_a = nn.Conv2d(in_channels, out_channels, 3, 2 if downsample else 1, 1, bias=False)
        self.bn_a = nn.BatchNorm2d(out_channels)
        self.conv_b = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn_b = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = _StridedZeroPad() if downsample else nn.Identity()
        nn.init.zeros_(self.bn_b.weight)  # the block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn_b(self.conv_b(F.relu(self.bn_a(self.conv_a(x)))))
        return self.shortcut(x) + y


class PODNetResNet32(Backbone):
    """The official PODNet CIFAR backbone (n = 5, 16 base channels); see the module docstring."""

    def __init__(self, n: int = 5, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.ModuleList(
            [
                nn.Sequential(*[PODNetBlock(width) for _ in range(n)]),
                nn.Sequential(PODNetBlock(width, downsample=True), *[PODNetBlock(2 * width) for _ in range(n - 1)]),
                nn.Sequential(PODNetBlock(2 * width, downsample=True), *[PODNetBlock(4 * width) for _ in range(n - 2)]),
                nn.Sequential(PODNetBlock(4 * width)),
            ]
        )
        self.out_dim = 4 * width
        for m in self.modules():  # BatchNorms keep PyTorch's (1, 0), but for each block's last (0, 0)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

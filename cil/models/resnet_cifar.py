"""ResNets for 32x32 inputs (He et al. 2016, Sec. 4.2): three stages of 2n 3x3 layers.

ResNet-32 (n = 5, widths 16/32/64, 64-d embedding) is the backbone of every CIFAR-100 result in
Jodelet et al. (Sec. 4.1.3), as in iCaRL, LUCIR and PODNet. Shortcuts that change shape use option A
of He et al. (strided identity, zero-padded channels, no parameters); option B (1x1 conv + BN)
is available. ``last_relu=False`` drops the final ReLU, as LUCIR and PODNet do so that the
embedding can take negative values before cosine normalisation.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cil.models.backbone import Backbone


class _ShortcutA(nn.Module):
    """Parameter-free shortcut: take every other pixel, pad the new channels with zeros."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str, relu: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = relu
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = _ShortcutA(in_channels, out_channels)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(out) if self.relu else out


class CifarResNet(Backbone):
    """ResNet-(6n+2) for 32x32 images; ``stage_maps`` are the outputs of the three stages."""

    def __init__(
        self, depth: int = 32, widths: tuple[int, int, int] = (16, 32, 64), shortcut: str = "A", last_relu: bool = True
    ):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("depth must be 6n + 2")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages, in_ch = [], widths[0]
        for s, width in enumerate(widths):
            blocks = []
            for b in range(n):
                last = s == len(widths) - 1 and b == n - 1
                blocks.append(
                    BasicBlock(in_ch, width, 2 if (b == 0 and s > 0) else 1, shortcut, relu=last_relu or not last)
                )
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_dim = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

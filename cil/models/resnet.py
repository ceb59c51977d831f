"""ResNet-18 for ImageNet-sized inputs (He et al. 2016), as used by Jodelet et al. for ImageNet and
ImageNet-Subset (Sec. 4.1.3); torchvision's implementation, randomly initialised, without its
classifier, exposing the four stage outputs."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from cil.models.backbone import Backbone


class ResNet18(Backbone):
    def __init__(self, last_relu: bool = True):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        last_stage: Any = self.stages[-1]
        self.last_relu = last_relu
        if not last_relu:
            last_stage[-1] = _WithoutFinalReLU(last_stage[-1])
        self.out_dim = 512


class _WithoutFinalReLU(nn.Module):
    """A torchvision BasicBlock that returns its pre-activation sum (no final ReLU)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block: Any = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        identity = x if b.downsample is None else b.downsample(x)
        return b.bn2(b.conv2(b.relu(b.bn1(b.conv1(x))))) + identity

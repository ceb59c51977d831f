"""The backbone interface: an embedding plus the feature maps of every stage."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class BackboneOutput(NamedTuple):
    features: torch.Tensor
    """Pooled embedding [B, out_dim]."""
    stage_maps: list[torch.Tensor]
    """Output of every residual stage [B, C_s, H_s, W_s] (PODNet distils these)."""


class Backbone(nn.Module):
    """A stem followed by residual stages; subclasses build ``stem``, ``stages`` and ``out_dim``."""

    out_dim: int
    stem: nn.Module
    stages: nn.ModuleList

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        maps = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return BackboneOutput(features=F.adaptive_avg_pool2d(x, 1).flatten(1), stage_maps=maps)

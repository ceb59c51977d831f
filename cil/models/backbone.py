"""The backbone interface: an embedding plus the feature maps of every stage."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn


class BackboneOutput(NamedTuple):
    features: torch.Tensor
    """Pooled embedding [B, out_dim]."""
    stage_maps: list[torch.Tensor]
    """Output of every residual stage [B, C_s, H_s, W_s] (PODNet distils these)."""


class Backbone(nn.Module):
    out_dim: int

    def forward(self, x: torch.Tensor) -> BackboneOutput:  # pragma: no cover - interface
        raise NotImplementedError

"""The network a strategy trains: a backbone and an incremental head."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from cil.models.backbone import Backbone
from cil.models.heads import IncrementalHead


class NetOutput(NamedTuple):
    logits: torch.Tensor
    """[B, n_seen_classes]: the scores every loss and the evaluation start from."""
    features: torch.Tensor
    """[B, d]: the pooled embedding."""
    stage_maps: list[torch.Tensor]
    """Per-stage feature maps (for spatial distillation)."""
    scale: torch.Tensor | None = None
    """The learned scale of a cosine head (logits = scale * similarities); None for a linear head.
    Carried in the output so that every loss is a function of the output alone (Meta BSCE
    evaluates the losses on a functional copy of the model)."""


class IncrementalNet(nn.Module):
    def __init__(self, backbone: Backbone, head: IncrementalHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def n_classes(self) -> int:
        return self.head.n_classes

    def forward(self, x: torch.Tensor) -> NetOutput:
        out = self.backbone(x)
        return NetOutput(self.head(out.features), out.features, out.stage_maps, getattr(self.head, "scale", None))

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
        """Backbone (under the caller's autocast, if any), then the head in fp32.

        The embedding is returned in fp32 as well: cosine heads and the losses on embeddings
        (LUCIR's less-forget constraint, POD-flat) need more than bf16's three significant digits.
        """
        out = self.backbone(x)
        features = out.features.float()
        with torch.autocast(device_type=features.device.type, enabled=False):
            logits = self.head(features)
        return NetOutput(logits, features, out.stage_maps, getattr(self.head, "scale", None))

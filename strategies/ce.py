"""Standard softmax cross-entropy, the classification loss L_c of IL-Baseline (Jodelet et al., Eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil.plugin import ClassificationLoss, ComponentConfig, Engine, register


@dataclass
class CEConfig(ComponentConfig):
    name: str = "ce"


@register("loss", "ce", CEConfig)
class CrossEntropy(ClassificationLoss[CEConfig]):
    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets)

    def sample_losses(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, reduction="none")

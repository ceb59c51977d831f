"""Standard softmax cross-entropy, the classification loss L_c of IL-Baseline (Jodelet et al., Eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from cil.config import ComponentConfig
from cil.plugin import ClassificationLoss
from cil.registry import register


@dataclass
class CEConfig(ComponentConfig):
    name: str = "ce"


@register("loss", "ce", CEConfig)
class CrossEntropy(ClassificationLoss):
    def classification_loss(self, strategy, logits, targets):
        return F.cross_entropy(logits, targets)

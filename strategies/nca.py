"""The NCA loss of PODNet's Local Similarity Classifier (Douillard et al. 2020; Movshovitz-Attias
et al. 2017), on the class similarities y_hat (logits divided by the head's learned scale eta).

``variant: official-code`` (default) reproduces the official implementation: it subtracts the
margin from every similarity (a constant shift that its max-subtraction for stability then
cancels, so the margin has no effect), keeps exp(0) = 1 in place of the ground-truth term of
the denominator, and has no hinge.

``variant: paper``, the paper's definition: the margin delta is subtracted from the
ground-truth similarity only, the ground truth is excluded from the denominator, and the loss is
hinged at zero:

    L = [ -log( exp(eta (y_hat_y - delta)) / sum_{i != y} exp(eta y_hat_i) ) ]_+

With the learned, unconstrained eta of the LSC head this formula has a degenerate minimum: at
the start dL/d eta ~ delta > 0, so eta is pushed through 0, and for eta < 0 the margin becomes a
reward (eta (y_hat_y - delta) = eta y_hat_y + |eta| delta): collapsing all similarities to one
value makes the hinged loss 0. Measured on synthetic data (ResNet-8): eta 1 -> -0.7 after one
epoch and -6.3 after four, training loss 0, test accuracy near chance. It is kept for study with that warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F

from cil.plugin import ClassificationLoss, ComponentConfig, Engine, UserError, ranged, register


def nca_loss(
    similarities: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor | float, margin: float, hinge: bool = True
) -> torch.Tensor:
    """The paper's NCA loss with margin on the ground truth, positive excluded from the denominator."""
    positive = F.one_hot(targets, similarities.shape[1]).bool()
    numerator = scale * (similarities.gather(1, targets.unsqueeze(1)).squeeze(1) - margin)
    denominator = torch.logsumexp((scale * similarities).masked_fill(positive, float("-inf")), dim=1)
    losses = denominator - numerator
    return (losses.clamp_min(0.0) if hinge else losses).mean()


def nca_loss_official_code(
    similarities: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor | float, margin: float
) -> torch.Tensor:
    """The official implementation's computation (see the module docstring)."""
    s = scale * (similarities - margin)
    s = s - s.max(dim=1, keepdim=True).values
    positive = F.one_hot(targets, similarities.shape[1]).bool()
    numerator = s.gather(1, targets.unsqueeze(1)).squeeze(1)
    denominator = torch.log(torch.exp(s.masked_fill(positive, 0.0)).sum(dim=1))
    return (denominator - numerator).mean()


@dataclass
class NCAConfig(ComponentConfig):
    name: str = "nca"
    margin: float = ranged(0.6, ge=0)
    """delta (PODNet: 0.6)."""
    hinge: bool = True
    variant: Literal["paper", "official-code"] = "official-code"


@register("loss", "nca", NCAConfig)
class NCALoss(ClassificationLoss[NCAConfig]):
    def before_step(self, engine: Engine) -> None:
        if not hasattr(engine.model.head, "scale"):
            raise UserError("the nca loss needs a head with a learned scale (model.head: lsc or cosine)")

    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scale = cast(torch.Tensor, engine.model.head.scale)  # the lsc and cosine heads' learned scale
        similarities = logits / scale
        if self.config.variant == "official-code":
            return nca_loss_official_code(similarities, targets, scale, self.config.margin)
        return nca_loss(similarities, targets, scale, self.config.margin, self.config.hinge)

"""Balanced Softmax Cross-Entropy for incremental learning (Jodelet et al., Sec. 3.2-3.3).

The Balanced Softmax (Eq. 3) weighs every class's exponentiated logit by lambda_i:

    q_k(x) = lambda_k exp(z_k) / sum_j lambda_j exp(z_j),   lambda_i = n_i,

n_i being the number of samples of class i in the current training set (new data + memory).
The loss is the cross-entropy on q (Eq. 4), i.e. the ordinary cross-entropy on the adjusted
logits z + log(lambda). Eq. 5 multiplies the old classes' counts by alpha (alpha = 1 is Eq. 3).
Training only: evaluation uses the raw logits. A class with lambda_i = 0 (an old class without
exemplars, Sec. 3.4) is masked out of the softmax instead of taking log(0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil.plugin import ClassificationLoss, ComponentConfig, Engine, ranged, register


def balanced_softmax_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Mean cross-entropy of the Balanced Softmax (Eq. 3-4) with weights lambda = ``class_weights``.

    Classes with weight 0 get probability 0 (masked), never log(0); ``class_weights`` may carry a
    gradient (Meta BSCE learns alpha through it).
    """
    positive = class_weights > 0
    log_weights = torch.where(
        positive,
        class_weights.clamp_min(torch.finfo(class_weights.dtype).tiny).log(),
        torch.full_like(class_weights, float("-inf")),
    )
    return F.cross_entropy(logits + log_weights, targets, reduction=reduction)


def old_class_weighted_counts(counts: torch.Tensor, n_old: int, alpha: torch.Tensor | float) -> torch.Tensor:
    """lambda of Eq. 5: alpha * n_i for the old classes (i < n_old), n_i for the new ones."""
    return torch.cat([alpha * counts[:n_old], counts[n_old:]])


@dataclass
class BSCEConfig(ComponentConfig):
    name: str = "bsce"
    alpha: float = ranged(1.0, gt=0)
    """Weight of the old classes' counts (Eq. 5); 1.0 is the plain Balanced Softmax of Eq. 3."""


@register("loss", "bsce", BSCEConfig)
class BalancedSoftmaxCE(ClassificationLoss[BSCEConfig]):
    def __init__(self, config: BSCEConfig):
        super().__init__(config)
        self._weights: tuple[object, torch.Tensor] | None = None

    def class_weights(self, engine: Engine) -> torch.Tensor:
        """lambda of Eq. 5 for the current training set, counted once per training set."""
        if self._weights is None or self._weights[0] is not engine.train_set:
            counts = engine.train_class_counts
            self._weights = (engine.train_set, old_class_weighted_counts(counts, engine.n_old, self.config.alpha))
        return self._weights[1]

    def before_epoch(self, engine: Engine) -> None:
        self.class_weights(engine)  # counted before the first batch, not in it

    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return balanced_softmax_cross_entropy(logits, targets, self.class_weights(engine))

    def sample_losses(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return balanced_softmax_cross_entropy(logits, targets, self.class_weights(engine), reduction="none")

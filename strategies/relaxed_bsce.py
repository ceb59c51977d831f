"""Relaxed Balanced Softmax CE for incremental learning without memory (Jodelet et al., Sec. 3.4, Eq. 6).

Without exemplars, every old class has n_i = 0, so the Balanced Softmax of Eq. 3 drops the old
classes from the softmax and learns the new ones as if they were alone: stability without
plasticity (Jodelet et al., Fig. 3b). Eq. 6 gives the old classes a small positive weight instead:

    lambda_i = epsilon  for an old class (i < N_{t-1}),    lambda_i = n_i  for a new class.

epsilon = 0 is the Balanced Softmax (old classes masked out, never log(0)); epsilon = n_i for
every class is the standard softmax CE. The paper sets epsilon to 0.2% of the number of training
images per class (1 for CIFAR-100's 500, 2.6 for ImageNet-Subset's 1300). Here ``epsilon`` gives
it in images; when it is unset, ``epsilon_fraction`` times the mean number of training images of
the step's new classes (so the default follows ``--limit-per-class``). Training only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from cil.strategies.bsce import balanced_softmax_cross_entropy

from cil.plugin import ClassificationLoss, ComponentConfig, Engine, ranged, register


def relaxed_class_weights(counts: torch.Tensor, n_old: int, epsilon: float) -> torch.Tensor:
    """lambda of Eq. 6: ``epsilon`` for the old classes (i < n_old), n_i for the new ones."""
    return torch.cat([torch.full_like(counts[:n_old], float(epsilon)), counts[n_old:]])


def default_epsilon(counts: torch.Tensor, n_old: int, fraction: float) -> float:
    """``fraction`` of the mean training images per new class (0.2% of 500 = 1 on CIFAR-100)."""
    new = counts[n_old:]
    return fraction * float(new[new > 0].double().mean()) if bool((new > 0).any()) else 0.0


@dataclass
class RelaxedBSCEConfig(ComponentConfig):
    name: str = "relaxed-bsce"
    epsilon: float | None = ranged(None, ge=0, note="(images)")
    """lambda of every old class, in images (Eq. 6); unset: ``epsilon_fraction`` of images per class."""
    epsilon_fraction: float = ranged(0.002, ge=0)
    """epsilon as a fraction of the mean number of training images per new class (paper: 0.2%)."""


@register("loss", "relaxed-bsce", RelaxedBSCEConfig)
class RelaxedBalancedSoftmaxCE(ClassificationLoss[RelaxedBSCEConfig]):
    def __init__(self, config: RelaxedBSCEConfig):
        super().__init__(config)
        self._weights: tuple[object, torch.Tensor] | None = None
        self.epsilon: float | None = None

    def epsilon_for(self, counts: torch.Tensor, n_old: int) -> float:
        if self.config.epsilon is not None:
            return float(self.config.epsilon)
        return default_epsilon(counts, n_old, self.config.epsilon_fraction)

    def class_weights(self, engine: Engine) -> torch.Tensor:
        """lambda of Eq. 6 for the current training set, computed once per training set."""
        if self._weights is None or self._weights[0] is not engine.train_set:
            counts = engine.train_class_counts
            self.epsilon = self.epsilon_for(counts, engine.n_old)
            self._weights = (engine.train_set, relaxed_class_weights(counts, engine.n_old, self.epsilon))
            if engine.n_old > 0:
                engine.step_record["epsilon"] = round(self.epsilon, 6)
        return self._weights[1]

    def before_epoch(self, engine: Engine) -> None:
        self.class_weights(engine)  # counted before the first batch, not in it

    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return balanced_softmax_cross_entropy(logits, targets, self.class_weights(engine))

    def sample_losses(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return balanced_softmax_cross_entropy(logits, targets, self.class_weights(engine), reduction="none")

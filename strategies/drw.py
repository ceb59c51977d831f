"""Deferred re-weighting (DRW, Cao et al. 2019, *Learning imbalanced datasets with label-distribution-aware
margin loss*, Sec. 3.3 and Algorithm 1), as a plugin for any loss that is a mean of per-sample values.

The first part of every step's epochs trains with the plain loss; from epoch ``int(start * E)`` on (LDAM-DRW's
code: epoch 160 of 200, start = 0.8; Ye et al.'s MFW "after training 80% of epochs") the classification loss
becomes the class-weighted mean

    L_c = sum_i w_{y_i} l_i / sum_i w_{y_i},    w_c = (1 - beta) / (1 - beta^{n_c}),  scaled so sum_c w_c = C

with n_c the class's samples in the step's training set and beta = 0.9999: the "effective number" weights of Cui
et al. 2019, as LDAM-DRW's ``cifar_train.py`` computes them (``per_cls_weights``) and hands them to
``cross_entropy(weight=...)``, whose mean divides by the batch's summed weights. Training only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cil.plugin import CilPlugin, ComponentConfig, Engine, IncompatibleConfigError, RunConfig, ranged, register


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """w_c = (1 - beta) / (1 - beta^{n_c}) normalised to sum to the number of classes with samples (0 for the
    others), as LDAM-DRW's ``per_cls_weights``."""
    counts = counts.double()
    present = counts > 0
    weights = torch.where(present, (1 - beta) / (1 - beta**counts).clamp_min(1e-300), torch.zeros_like(counts))
    return (weights / weights.sum() * present.sum()).float()


def reweighting_epoch(start: float, epochs: int) -> int:
    """The first (0-based) epoch of a step that trains with the weights: ``int(start * epochs)``."""
    return int(start * epochs)


@dataclass
class DRWConfig(ComponentConfig):
    name: str = "drw"
    start: float = ranged(0.8, ge=0, le=1)
    """Fraction of each step's epochs trained without weights (LDAM-DRW: 160 of 200)."""
    beta: float = ranged(0.9999, ge=0, lt=1)
    """Of the effective number (1 - beta^n) / (1 - beta) (LDAM-DRW: 0.9999)."""

    def validate_with(self, run: RunConfig, prefix: str) -> None:
        from cil import registry
        from cil.plugin import ClassificationLoss

        loss = registry.component("loss", run.loss.name).factory
        if getattr(loss, "sample_losses", None) is ClassificationLoss.sample_losses:
            raise IncompatibleConfigError(
                f"{prefix} drw weighs each sample of the classification loss, which the loss '{run.loss.name}' does "
                "not give per sample: use it with ce, bsce, meta-bsce, relaxed-bsce or loss-rescaling"
            )


@register("plugin", "drw", DRWConfig)
class DeferredReweighting(CilPlugin[DRWConfig]):
    def __init__(self, config: DRWConfig):
        super().__init__(config)
        self.weights: torch.Tensor | None = None

    def before_epoch(self, engine: Engine) -> None:
        if engine.epoch >= reweighting_epoch(self.config.start, engine.train_epochs):
            self.weights = effective_number_weights(engine.train_class_counts, self.config.beta).to(engine.device)
        else:
            self.weights = None

    def loss_class_weights(self, engine: Engine) -> torch.Tensor | None:
        return self.weights

    def after_training(self, engine: Engine) -> None:
        engine.step_record["drw_from_epoch"] = reweighting_epoch(self.config.start, engine.train_epochs)
        self.weights = None

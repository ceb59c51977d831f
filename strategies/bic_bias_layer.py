"""BiC's bias correction layer (Wu et al., "Large Scale Incremental Learning", CVPR 2019, Sec. 4, Eq. 4-5), a
post-hoc bias correction for any method.

The validation set (``validation: pool``, the default, as the official code and FACIL): before any
training, ``validation_fraction`` of the memory's exemplars per class (BiC: 10%, 2 of 20; with a fixed
budget, of the largest quota, the first incremental step's; rounded down, at least 1) are withheld from every
class when it arrives (``engine.withhold``): never trained on, never chosen as exemplars. At step t, the first
v_t = floor(validation_fraction * exemplars per old class) pooled images of every seen class form a small
class-balanced validation set. The pool is kept beside the memory: the official code counts it in its
budget (it trains on the quota minus v_t exemplars per old class), cil trains on the whole quota.
``validation: exemplars`` (cil's earlier reading) instead holds v_t random images of every seen class out of
the step's training set, exemplars that stage 1 of earlier steps has fitted. After the
step's training (stage 1), a two-parameter linear model on the logits of the step's new classes,

    q_k = z_k                 for an old class k < N_{t-1}
    q_k = alpha z_k + beta    for a new class k >= N_{t-1}                         (Eq. 4)

is learned on the validation set (stage 2) with the rest of the network frozen and in evaluation mode:
softmax cross-entropy of q (Eq. 5) plus ``beta_decay`` * beta^2 / 2 (the official code's L2 term on
beta), SGD with momentum 0.9, ``epochs`` epochs at ``lr`` divided by 10 at ``milestones`` (the
official ImageNet code: 200 epochs, 0.1, /10 at 60, 120, 160, 180), without augmentation (``augment``, as
the official code). It goes through the engine's ``train_on``.

As in the official code (wuyuebupt/LargeScaleIncrementalLearning), the correction learned at step t
is applied to step t's classes only: to the evaluation scores after step t, and to the previous
model's logits when step t+1 distils from it ("the classifier after correction is used for the
distilling loss in the next incremental training"). Re-implementations that keep applying every
step's layer to its classes (FACIL, PyCIL) differ there. The step's record holds ``bic_alpha``,
``bic_beta``, ``bic_validation_per_class``, ``bic_validation_origin`` and ``bic_pool_per_class``; results
also hold the accuracy before the correction (``classifier_accuracy``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from cil.plugin import (
    CilPlugin,
    ComponentConfig,
    Engine,
    IncompatibleConfigError,
    NetOutput,
    RunConfig,
    TrainingSet,
    TrainingStage,
    UserError,
    milestones_field,
    ranged,
    register,
)


def bias_corrected(logits: torch.Tensor, n_old: int, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Eq. 4: the logits of the classes from ``n_old`` on scaled by alpha and shifted by beta, the others kept."""
    return torch.cat([logits[:, :n_old], alpha * logits[:, n_old:] + beta], dim=1)


def bias_stage_loss(
    logits: torch.Tensor, targets: torch.Tensor, n_old: int, alpha: torch.Tensor, beta: torch.Tensor, beta_decay: float
) -> torch.Tensor:
    """Stage 2's objective: Eq. 5's cross-entropy of the corrected logits plus beta_decay * beta^2 / 2."""
    return F.cross_entropy(bias_corrected(logits, n_old, alpha, beta), targets) + beta_decay * beta.pow(2).sum() / 2


@dataclass
class BiasLayerConfig(ComponentConfig):
    name: str = "bic-bias-layer"
    validation_fraction: float = ranged(0.1, gt=0, lt=1)
    """Validation images per class as a fraction of the exemplars per old class (BiC: 10%, rounded down, at
    least 1)."""
    validation: Literal["pool", "exemplars"] = "pool"
    """Where the validation images come from: a pool split off every class before it is trained on (the
    official code, FACIL), or the step's exemplars and new data (held out of its training set)."""
    augment: bool = False
    """Stage 2 on augmented validation images (the official code: no augmentation)."""
    epochs: int = ranged(200, ge=1, le=100_000)
    """Epochs of stage 2 (the official code: 200)."""
    lr: float = ranged(0.1, gt=0)
    milestones: list[int] = milestones_field(lambda: [60, 120, 160, 180])
    """Epochs at which stage 2's learning rate is divided by 10 (the official code's)."""
    beta_decay: float = ranged(0.1, ge=0)
    """Weight of the L2 term on beta (the official code's 0.1)."""

    def validate_with(self, run: RunConfig, prefix: str) -> None:
        if not run.memory.enabled:
            raise IncompatibleConfigError(
                f"{prefix} bic-bias-layer learns its correction on a validation set sized by the exemplars per "
                "class: use a memory (--memory N or --memory-budget M)"
            )
        if self.validation == "exemplars" and run.memory.budget is None and run.memory.per_class < 2:
            raise IncompatibleConfigError(
                f"{prefix} validation exemplars holds images out of {run.memory.per_class} exemplar per class, "
                "leaving none to train on: use --memory 2 or more, or validation pool"
            )


@register("plugin", "bic-bias-layer", BiasLayerConfig)
class BiasCorrectionLayer(CilPlugin[BiasLayerConfig]):
    posthoc_correction = "bic-bias-layer"

    def __init__(self, config: BiasLayerConfig):
        super().__init__(config)
        self.alphas: dict[int, float] = {}
        """alpha and beta of the layer learned at every incremental step."""
        self.betas: dict[int, float] = {}
        self.validation_set: TrainingSet | None = None
        self.pool = TrainingSet.empty()
        """``validation: pool``: the images withheld from every class so far, in the order they were drawn."""
        self._teacher_layer: tuple[torch.Tensor, torch.Tensor] | None = None
        """Step t-1's alpha and beta on the device during step t (read by every batch's distillation)."""

    def state_dict(self) -> dict:
        return {
            "alpha": {str(k): v for k, v in self.alphas.items()},
            "beta": {str(k): v for k, v in self.betas.items()},
            "pool": {"indices": self.pool.indices.tolist(), "labels": self.pool.labels.tolist()},
        }

    def load_state_dict(self, state: dict, engine: Engine) -> None:
        self.alphas = {int(k): float(v) for k, v in state["alpha"].items()}
        self.betas = {int(k): float(v) for k, v in state["beta"].items()}
        pool = state.get("pool", {"indices": [], "labels": []})
        self.pool = TrainingSet(torch.tensor(pool["indices"], dtype=torch.long), torch.tensor(pool["labels"]).long())

    def share(self, exemplars_per_class: int) -> int:
        """Validation images per class for a memory of ``exemplars_per_class``: the fraction, rounded down (as the
        official code), at least 1."""
        return max(1, math.floor(self.config.validation_fraction * exemplars_per_class))

    def pool_per_class(self, engine: Engine) -> int:
        """Images withheld from every class: the share of the largest quota (the first incremental step's)."""
        return self.share(engine.memory_per_class(len(engine.step_classes[0])))

    def validation_per_class(self, engine: Engine) -> int:
        old_counts = engine.train_class_counts[: engine.n_old]
        smallest = int(old_counts.min()) if len(old_counts) else 0
        if smallest < 2 and self.config.validation == "exemplars":
            raise UserError(
                "bic-bias-layer needs at least 2 exemplars of every old class (one to train on, one to hold out): "
                "use a larger memory"
            )
        return self.share(smallest)

    def pooled_validation(self, engine: Engine) -> TrainingSet:
        """The first v_t pooled images of every seen class."""
        per_class = min(self.validation_per_class(engine), self.pool_per_class(engine))
        rank = torch.zeros(len(self.pool), dtype=torch.long)
        for label in self.pool.labels.unique():
            positions = (self.pool.labels == label).nonzero().flatten()
            rank[positions] = torch.arange(len(positions))
        return self.pool.subset((rank < per_class) & (self.pool.labels < engine.n_seen))

    def before_step(self, engine: Engine) -> None:
        if self.config.validation == "pool":
            self.pool = self.pool + engine.withhold(self.pool_per_class(engine))
            self.validation_set = self.pooled_validation(engine) if engine.n_old > 0 else None
        else:
            self.validation_set = engine.hold_out(self.validation_per_class(engine)) if engine.n_old > 0 else None
        previous = engine.step - 1
        self._teacher_layer = None
        if previous in self.alphas:
            self._teacher_layer = (
                torch.tensor(self.alphas[previous], device=engine.device),
                torch.tensor(self.betas[previous], device=engine.device),
            )

    def after_training(self, engine: Engine) -> None:
        if self.validation_set is None:
            return
        cfg, n_old = self.config, engine.n_old
        alpha = torch.ones((), device=engine.device, requires_grad=True)
        beta = torch.zeros((), device=engine.device, requires_grad=True)

        def loss(output: NetOutput, targets: torch.Tensor, teacher: NetOutput | None) -> dict[str, torch.Tensor]:
            return {"bias_layer": bias_stage_loss(output.logits.float(), targets, n_old, alpha, beta, cfg.beta_decay)}

        stage = TrainingStage(
            "bic-bias-layer",
            self.validation_set,
            [alpha, beta],
            epochs=cfg.epochs,
            lr=cfg.lr,
            milestones=list(cfg.milestones),
            momentum=0.9,
            weight_decay=0.0,
            augment=cfg.augment,
            loss=loss,
        )
        losses = engine.train_on(stage)
        self.alphas[engine.step], self.betas[engine.step] = float(alpha.detach()), float(beta.detach())
        engine.step_record.update(
            {
                "bic_alpha": round(self.alphas[engine.step], 6),
                "bic_beta": round(self.betas[engine.step], 6),
                "bic_validation_per_class": len(self.validation_set) // engine.n_seen,
                "bic_validation_origin": cfg.validation,
                "bic_pool_per_class": self.pool_per_class(engine) if cfg.validation == "pool" else 0,
                "bic_final_epoch_loss": losses.get("bias_layer", 0.0),
            }
        )

    def adjust_scores(self, engine: Engine, scores: torch.Tensor) -> torch.Tensor:
        """The evaluation after step t through step t's layer."""
        if engine.step not in self.alphas:
            return scores
        alpha, beta = (torch.tensor(v[engine.step], dtype=scores.dtype) for v in (self.alphas, self.betas))
        return bias_corrected(scores, engine.n_old, alpha, beta)

    def adjust_previous_output(self, engine: Engine, output: NetOutput) -> NetOutput:
        """The previous model (of step t-1) through step t-1's layer, on step t-1's classes."""
        if self._teacher_layer is None:
            return output
        n_before = sum(len(c) for c in engine.step_classes[: engine.step - 1])
        alpha, beta = self._teacher_layer
        return output._replace(logits=bias_corrected(output.logits, n_before, alpha, beta))

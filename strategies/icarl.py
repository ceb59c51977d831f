"""iCaRL's representation learning (Rebuffi et al., CVPR 2017, Alg. 3): sigmoid binary cross-entropy over every
seen class, each output a binary classifier, with targets

    t_k(x) = sigmoid(z_hat_k(x))   for an old class k < N_{t-1}   (the previous model's output: distillation)
    t_k(x) = [y = k]               for a new class k >= N_{t-1}   (one-hot: classification)

    L = 1 / (B N) sum_b sum_{k < N_t} BCE(z_k(x_b), t_k(x_b)),    BCE(z, t) = -[t log s(z) + (1 - t) log(1 - s(z))]

on every training sample, exemplars included (an exemplar's own old class is distilled, not one-hot).
The sum splits into the new classes' part, the classification loss ``icarl-bce`` (at the base step,
where every class is new, plain multi-label BCE), and the old classes' part, the method ``icarl``'s
``distillation`` term; both divide by B N, so together they are Alg. 3's loss exactly.

N is ``average_over``: ``all`` (default) the scenario's classes, as the original code (Theano and
TensorFlow), whose network has all 100 (1000) outputs from the start and averages the BCE over all of
them; ``seen`` the N_t seen classes, which scales the seen outputs' gradients by N / N_t (2x at a
B50 base step, 10x at ImageNet's first step of 100). What remains different: the original's unseen outputs
also take part (their targets are 0, so they push the shared features and their own, later-used weights
toward negative logits); cil's head grows, and an unseen class's weights start from their initialisation.
iCaRL classifies by the nearest mean of exemplars (``plugins: [nme]``) chosen by herding; the classifier's
own accuracy is recorded beside it (``classifier_accuracy``, iCaRL's "hybrid1").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from cil.plugin import (
    CilPlugin,
    ClassificationLoss,
    ComponentConfig,
    Engine,
    IncompatibleConfigError,
    NetOutput,
    RunConfig,
    register,
)


def binary_cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sum over the elements of BCE(z, t), computed from the logits (stable)."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="sum")


def icarl_classification(
    logits: torch.Tensor, targets: torch.Tensor, n_old: int, n_outputs: int | None = None
) -> torch.Tensor:
    """The new classes' part of Alg. 3's loss: one-hot BCE over their outputs, divided by B N (N = ``n_outputs``,
    default the N_t columns of ``logits``)."""
    one_hot = F.one_hot(targets, logits.shape[1])[:, n_old:]
    n = logits.shape[1] if n_outputs is None else n_outputs
    return binary_cross_entropy_sum(logits[:, n_old:], one_hot) / (len(logits) * n)


def icarl_distillation(
    logits: torch.Tensor, teacher_logits: torch.Tensor, n_outputs: int | None = None
) -> torch.Tensor:
    """The old classes' part of Alg. 3's loss: BCE of their outputs against the previous model's sigmoid
    outputs, divided by B N (``logits`` over all N_t seen classes, ``teacher_logits`` over the old ones; N =
    ``n_outputs``, default N_t)."""
    n_old = teacher_logits.shape[1]
    n = logits.shape[1] if n_outputs is None else n_outputs
    return binary_cross_entropy_sum(logits[:, :n_old], torch.sigmoid(teacher_logits.float())) / (len(logits) * n)


AverageOver = Literal["all", "seen"]


def averaged_outputs(engine: Engine, average_over: AverageOver) -> int:
    """N of the loss's mean: the scenario's classes (the original code) or the N_t seen ones."""
    return engine.n_classes_total if average_over == "all" else engine.n_seen


@dataclass
class ICaRLLossConfig(ComponentConfig):
    name: str = "icarl-bce"
    average_over: AverageOver = "all"
    """The BCE's mean over all the scenario's outputs (iCaRL's code) or over the seen classes' only."""


@register("loss", "icarl-bce", ICaRLLossConfig)
class ICaRLClassification(ClassificationLoss[ICaRLLossConfig]):
    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n = averaged_outputs(engine, self.config.average_over)
        return icarl_classification(logits, targets, engine.n_old, n)


@dataclass
class ICaRLConfig(ComponentConfig):
    name: str = "icarl"
    average_over: AverageOver = "all"
    """As the loss's ``average_over`` (the two parts of Alg. 3's loss share one mean)."""

    def validate_with(self, run: RunConfig, prefix: str) -> None:
        other = getattr(run.loss, "average_over", self.average_over)
        if run.loss.name == "icarl-bce" and other != self.average_over:
            raise IncompatibleConfigError(
                f"{prefix} average_over {self.average_over} and loss.average_over {other} split one loss (Alg. 3) "
                "into parts with different means: set both to the same value"
            )


@register("method", "icarl", ICaRLConfig)
class ICaRL(CilPlugin[ICaRLConfig]):
    def loss_terms(self, engine: Engine, output: NetOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if engine.n_old == 0:
            return {}
        n = averaged_outputs(engine, self.config.average_over)
        return {"distillation": icarl_distillation(output.logits, engine.previous_output().logits, n)}

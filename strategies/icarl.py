"""iCaRL's representation learning (Rebuffi et al., CVPR 2017, Alg. 3): sigmoid binary cross-entropy over every
seen class, each output a binary classifier, with targets

    t_k(x) = sigmoid(z_hat_k(x))   for an old class k < N_{t-1}   (the previous model's output: distillation)
    t_k(x) = [y = k]               for a new class k >= N_{t-1}   (one-hot: classification)

    L = 1 / (B N_t) sum_b sum_k BCE(z_k(x_b), t_k(x_b)),    BCE(z, t) = -[t log s(z) + (1 - t) log(1 - s(z))]

on every training sample, exemplars included (an exemplar's own old class is distilled, not one-hot).
The sum splits into the new classes' part, the classification loss ``icarl-bce`` (at the base step,
where every class is new, plain multi-label BCE), and the old classes' part, the method ``icarl``'s
``distillation`` term; both divide by B N_t, so together they are Alg. 3's loss exactly.

The original code's network has all 100 outputs from the start and averages over all of them (unseen
classes pushed toward 0); cil's head grows with the classes, so the mean runs over the N_t seen ones,
which scales the gradient of the seen classes' outputs by 100 / N_t. iCaRL classifies by the nearest
mean of exemplars (``plugins: [nme]``) chosen by herding; the classifier's own accuracy is recorded
beside it (``classifier_accuracy``, iCaRL's "hybrid1").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil.plugin import CilPlugin, ClassificationLoss, ComponentConfig, Engine, NetOutput, register


def binary_cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sum over the elements of BCE(z, t), computed from the logits (stable)."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="sum")


def icarl_classification(logits: torch.Tensor, targets: torch.Tensor, n_old: int) -> torch.Tensor:
    """The new classes' part of Alg. 3's loss: one-hot BCE over their outputs, divided by B N_t."""
    one_hot = F.one_hot(targets, logits.shape[1])[:, n_old:]
    return binary_cross_entropy_sum(logits[:, n_old:], one_hot) / logits.numel()


def icarl_distillation(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The old classes' part of Alg. 3's loss: BCE of their outputs against the previous model's sigmoid
    outputs, divided by B N_t (``logits`` over all N_t seen classes, ``teacher_logits`` over the old ones)."""
    n_old = teacher_logits.shape[1]
    return binary_cross_entropy_sum(logits[:, :n_old], torch.sigmoid(teacher_logits.float())) / logits.numel()


@dataclass
class ICaRLLossConfig(ComponentConfig):
    name: str = "icarl-bce"


@register("loss", "icarl-bce", ICaRLLossConfig)
class ICaRLClassification(ClassificationLoss):
    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return icarl_classification(logits, targets, engine.n_old)


@dataclass
class ICaRLConfig(ComponentConfig):
    name: str = "icarl"


@register("method", "icarl", ICaRLConfig)
class ICaRL(CilPlugin):
    def loss_terms(self, engine: Engine, output: NetOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if engine.n_old == 0:
            return {}
        return {"distillation": icarl_distillation(output.logits, engine.previous_output().logits)}

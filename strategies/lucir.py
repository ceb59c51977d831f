"""LUCIR: Learning a Unified Classifier Incrementally via Rebalancing (Hou et al., CVPR 2019).

Components, with values from the paper and the official code:

* cosine normalisation: logits sigma * cos(w_i, f) with a learnable sigma starting at 1
  (``model.head: cosine``); new classes' weights are imprinted from their normalised mean
  embedding; old classes' weights are frozen during incremental steps (learning rate 0 in the
  official CIFAR code);
* less-forget constraint: L_lf = 1 - cos(f_prev(x), f(x)) on the embeddings of every sample,
  weighted by lambda = lambda_base * sqrt(N_old / N_new) (adaptive, as the official code);
* inter-class separation: on samples of old classes only, max(0, m - cos_gt + cos_k) for each of
  the top-K new-class cosines (before sigma), averaged over the (sample, k) pairs as the official
  code's MarginRankingLoss does (the paper sums over k), K = 2, m = 0.5, weight 1.

The classification loss is the engine's ``loss``: CE on sigma * cos for ``lucir``, Balanced
Softmax CE on the same logits for ``lucir-bsce`` (Jodelet et al., Sec. 4.2.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from cil.strategies.cosine_head_method import CosineHeadMethod, embedding_distillation_loss

from cil.models.heads import CosineHead
from cil.plugin import ComponentConfig, Engine, NetOutput, ranged, register


def adaptive_lambda(lambda_base: float, n_old: int, n_new: int) -> float:
    """lambda_base * sqrt(N_old / N_new), the adaptive weight of the less-forget constraint."""
    return lambda_base * math.sqrt(n_old / n_new)


def margin_ranking_loss(
    cosines: torch.Tensor, targets: torch.Tensor, n_old: int, top_k: int, margin: float
) -> torch.Tensor:
    """Inter-class separation on samples of old classes (targets < n_old): ground truth vs top-K new classes.

    The mean of max(0, m - cos_gt + cos_k) over the (old sample, k) pairs, computed for every
    sample and masked, so that no shape depends on the batch's labels (no host synchronisation).
    """
    if cosines.shape[1] == n_old:
        return cosines.sum() * 0.0
    old = (targets < n_old).to(cosines.dtype)  # [B]
    k = min(top_k, cosines.shape[1] - n_old)
    gt = cosines.gather(1, targets.unsqueeze(1))  # [B, 1]
    hard = cosines[:, n_old:].topk(k, dim=1).values  # [B, K]
    pairs = (margin - gt + hard).clamp_min(0.0)
    return (pairs.sum(dim=1) * old).sum() / (old.sum() * k).clamp_min(1.0)


@dataclass
class LUCIRConfig(ComponentConfig):
    name: str = "lucir"
    lambda_base: float = ranged(5.0, ge=0)
    """Less-forget weight (official code: 5 on CIFAR-100, 10 on ImageNet)."""
    adaptive_lambda: bool = True
    """lambda = lambda_base * sqrt(N_old / N_new); False keeps lambda_base."""
    margin: float = ranged(0.5, ge=0)
    """m of the margin ranking loss."""
    top_k: int = ranged(2, ge=1, le=1000)
    """K hardest new classes in the margin ranking loss."""
    margin_weight: float = ranged(1.0, ge=0)
    freeze_old_weights: bool = True
    imprint: bool = True


@register("method", "lucir", LUCIRConfig)
class LUCIR(CosineHeadMethod[LUCIRConfig]):
    head_type, head_name = CosineHead, "cosine"

    def __init__(self, config: LUCIRConfig):
        super().__init__(config)
        self.lam = 0.0

    def start_incremental_step(self, engine: Engine, n_new: int) -> None:
        cfg = self.config
        self.lam = adaptive_lambda(cfg.lambda_base, engine.n_old, n_new) if cfg.adaptive_lambda else cfg.lambda_base
        engine.step_record["lucir_lambda"] = self.lam

    def loss_terms(self, engine: Engine, output: NetOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if engine.n_old == 0:
            return {}
        previous = engine.previous_output()
        assert output.scale is not None, "the cosine head has a learned scale"
        cosines = output.logits / output.scale
        return {
            "less_forget": self.lam * embedding_distillation_loss(output.features, previous.features),
            "margin_ranking": self.config.margin_weight
            * margin_ranking_loss(cosines, targets, engine.n_old, self.config.top_k, self.config.margin),
        }

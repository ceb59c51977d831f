"""Gradient-Aware Logit Adjustment (Zhang et al., GALA), as a plugin for any classification loss.

Zhang et al. (GALA) give the idea (two margins from accumulated gradients, plus post-hoc re-balancing);
the details below are cil's and are stated here and in docs/strategies.md.

Statistics. Over the current step's training batches, ``G[y, k]`` accumulates |dL_c/dz'_k| of
the samples of class y (the gradient of the classification loss alone, read from the adjusted
logits during the real backward pass). theta_k = G[k, k] is what classifier k received from its
own class (positive gradients); phi_{y,k} = G[y, k], k != y, what it received from class y
(negative gradients). Both are divided by their mean (theta over classes, phi over the
off-diagonal entries), so the margins do not drift as sums grow. Statistics restart at every
incremental step (new classes, new imbalance).

Adjusted logits, training only, after ``warmup_batches`` batches of pure accumulation:

    z'_k = z_k + lambda1 * log(theta_k + eps) - lambda2 * log(phi_{y,k} + eps) * [k != y]

Prediction re-balancing (``rebalance: true``, evaluation only): the softmax probabilities of all
test images of a step, each column (class) divided by its L1 norm to the power tau.

The authors' code subtracts one negative-gradient margin per sample from all its logits (which
the softmax cancels) and accumulates over the whole training; docs/strategies.md lists the
differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from cil.plugin import CilPlugin, ComponentConfig, Engine, ranged, register


def gala_adjustment(
    stats: torch.Tensor,
    targets: torch.Tensor,
    lambda_positive: float,
    lambda_negative: float,
    eps: float,
    normalize: bool = True,
) -> torch.Tensor:
    """The additive margins [B, C] of each sample's logits from the accumulated |gradients| G [C, C] (per-pair
    negative margins; theta and phi divided by their means unless not ``normalize``)."""
    n = stats.shape[0]
    theta = stats.diagonal()
    phi = stats
    if normalize:
        off_diagonal_mean = (stats.sum() - theta.sum()) / max(1, n * n - n)
        theta = theta / theta.mean().clamp_min(1e-12)
        phi = stats / off_diagonal_mean.clamp_min(1e-12) if n > 1 else stats
    adjustment = lambda_positive * torch.log(theta + eps).expand(len(targets), n).clone()
    negative = lambda_negative * torch.log(phi[targets] + eps)
    negative[torch.arange(len(targets), device=targets.device), targets] = 0.0
    return adjustment - negative


def gala_adjustment_official(
    accumulated: torch.Tensor, targets: torch.Tensor, lambda_positive: float, lambda_negative: float, eps: float
) -> torch.Tensor:
    """The authors' margins [B, C] (lt-project ``DotProductClassifier.forward``): lambda1 log(theta_k + eps) on
    every logit k, minus lambda2 log(Phi_y + eps) on all logits of a sample of class y, theta_k = A[k, k] and
    Phi_y = sum_{k != y} A[y, k] of the accumulated statistics A (un-normalised)."""
    theta = accumulated.diagonal()
    phi = accumulated.sum(dim=1) - theta
    positive = lambda_positive * torch.log(theta + eps)
    negative = lambda_negative * torch.log(phi[targets] + eps)
    return positive.unsqueeze(0) - negative.unsqueeze(1)


def rebalance_predictions(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """Softmax probabilities with each class column divided by (its L1 norm) ** tau."""
    probabilities = scores.softmax(dim=1)
    return probabilities / probabilities.sum(dim=0, keepdim=True).clamp_min(1e-12).pow(tau)


@dataclass
class GALAConfig(ComponentConfig):
    name: str = "gala"
    lambda_positive: float = ranged(1.0, ge=0)
    """lambda1, weight of the positive-gradient margin log(theta_k); 0 switches it off."""
    lambda_negative: float = ranged(1.0, ge=0)
    """lambda2, weight of the negative-gradient margin log(phi_{y,k}); 0 switches it off."""
    eps: float = ranged(1e-3, gt=0)
    warmup_batches: int = ranged(20, ge=0)
    """Batches of each step that only accumulate statistics (no adjustment yet)."""
    rebalance: bool = False
    """Post-hoc prediction re-balancing at evaluation."""
    tau: float = ranged(1.0, ge=0)
    statistics: Literal["sum", "cumulative"] = "sum"
    """sum: G is the plain sum of the step's |gradients|; cumulative: the authors' running total, re-added after
    every batch (A_t = A_{t-1} + S_t, S_t the sum so far: early batches weigh more, run_networks.py collect_grad)."""
    negative_margin: Literal["per-pair", "per-sample"] = "per-pair"
    """per-pair: -lambda2 log(phi_{y,k}) on each non-target logit k (cil's reading of the paper); per-sample: the
    authors' code, -lambda2 log(sum_{k != y} phi_{y,k}) on all of a sample's logits (which a softmax cancels)."""
    normalize: bool = True
    """Divide theta and phi by their means (cil's, so that the per-pair margin does not drift with the number of
    batches); the authors' code uses the raw statistics."""


@register("plugin", "gala", GALAConfig)
class GALA(CilPlugin[GALAConfig]):
    data_parallel = False  # gradient statistics accumulated per process: not summed across ranks yet

    def __init__(self, config: GALAConfig):
        super().__init__(config)
        self.stats = torch.zeros(0, 0)
        self.accumulated = torch.zeros(0, 0)
        """The authors' statistics A (``statistics: cumulative``): the running sums S added up after every batch."""
        self.batches = 0
        if config.rebalance:
            self.evaluation_name = "gala-rebalanced"

    def before_step(self, engine: Engine) -> None:
        self.stats = torch.zeros(engine.n_seen, engine.n_seen, device=engine.device)
        self.accumulated = torch.zeros_like(self.stats)
        self.batches = 0

    def margins(self, targets: torch.Tensor) -> torch.Tensor:
        """The additive margins [B, C] of this mini-batch's logits from the statistics so far."""
        cfg = self.config
        stats = self.accumulated if cfg.statistics == "cumulative" else self.stats
        if cfg.negative_margin == "per-sample" and not cfg.normalize:
            return gala_adjustment_official(stats, targets, cfg.lambda_positive, cfg.lambda_negative, cfg.eps)
        if cfg.negative_margin == "per-sample":
            scaled = stats / stats.mean().clamp_min(1e-12)
            return gala_adjustment_official(scaled, targets, cfg.lambda_positive, cfg.lambda_negative, cfg.eps)
        return gala_adjustment(stats, targets, cfg.lambda_positive, cfg.lambda_negative, cfg.eps, cfg.normalize)

    def adjust_logits(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor, record: bool) -> torch.Tensor:
        cfg = self.config
        if self.batches >= cfg.warmup_batches:
            margins = self.margins(targets)
            if cfg.negative_margin == "per-pair":  # no statistics yet (warmup 0): no adjustment (decided on the
                margins = torch.where(self.stats.sum() > 0, margins, torch.zeros_like(margins))  # device, no read)
            adjusted = logits + margins  # the authors' code adds log(0 + eps) terms from the first batch on
        else:
            adjusted = logits + 0.0  # a tensor of its own, read by the hook below
        if record and adjusted.requires_grad:
            adjusted.register_hook(lambda grad: self._accumulate(grad, targets))
        return adjusted

    def _accumulate(self, grad: torch.Tensor, targets: torch.Tensor) -> None:
        self.stats.index_add_(0, targets, grad.detach().abs().to(self.stats.dtype))
        if self.config.statistics == "cumulative":
            self.accumulated += self.stats

    def after_batch(self, engine: Engine) -> None:
        self.batches += 1

    def adjust_scores(self, engine: Engine, scores: torch.Tensor) -> torch.Tensor:
        return rebalance_predictions(scores, self.config.tau) if self.config.rebalance else scores

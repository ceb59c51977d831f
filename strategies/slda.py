"""Streaming linear discriminant analysis on frozen base-step features (Hayes and Kanan, CVPR-W 2020).

SLDA keeps a running mean mu_c per class and one covariance Sigma shared by all classes, and
classifies with the linear discriminant of Gaussian classes with that shared covariance:

    Lambda = [(1 - eps) Sigma + eps I]^-1       (shrinkage eps = 1e-4)
    score_c(z) = w_c . z + b_c,   w_c = Lambda mu_c,   b_c = -1/2 mu_c . Lambda mu_c

Here the statistics are updated one mini-batch at a time with the exact merge of counts, means
and within-class scatter (Chan et al.'s parallel update), so Sigma is the pooled within-class
covariance of everything seen, independent of the order of the stream. (Hayes and Kanan update
Sigma sample by sample with the deviation from the class mean at that moment, an approximation
of the same quantity.) Features are the raw (unnormalised) embeddings, as in their paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from cil.strategies.frozen_features import FrozenFeatureClassifier

from cil.plugin import ComponentConfig, ConfigError, Engine, ranged, register


class StreamingLDA:
    """Running class counts, means and pooled within-class scatter; linear discriminant scores."""

    def __init__(self, dim: int, shrinkage: float = 1e-4, device: torch.device | str = "cpu"):
        self.shrinkage = shrinkage
        self.counts = torch.zeros(0, dtype=torch.float64, device=device)
        self.means = torch.zeros(0, dim, dtype=torch.float64, device=device)
        self.scatter = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> None:
        """Merge a batch of (features, labels) into the statistics."""
        z, labels = features.double(), labels.to(features.device)
        if n_classes > len(self.counts):
            grow = n_classes - len(self.counts)
            self.counts = torch.cat([self.counts, self.counts.new_zeros(grow)])
            self.means = torch.cat([self.means, self.means.new_zeros(grow, self.means.shape[1])])
        for c in labels.unique().tolist():
            zc = z[labels == c]
            m, mean_b = len(zc), zc.mean(0)
            centred = zc - mean_b
            n = self.counts[c]
            delta = mean_b - self.means[c]
            self.scatter += centred.t() @ centred + (n * m / (n + m)) * torch.outer(delta, delta)
            self.means[c] += delta * (m / (n + m))
            self.counts[c] = n + m

    @property
    def covariance(self) -> torch.Tensor:
        return self.scatter / self.counts.sum().clamp_min(1)

    def discriminant(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(w [n_classes, d], b [n_classes]) of the linear discriminant, float64."""
        dim = self.scatter.shape[0]
        eye = torch.eye(dim, dtype=torch.float64, device=self.scatter.device)
        precision = torch.linalg.inv((1 - self.shrinkage) * self.covariance + self.shrinkage * eye)
        weights = self.means @ precision
        return weights, -0.5 * (weights * self.means).sum(1)


@dataclass
class SLDAConfig(ComponentConfig):
    name: str = "slda"
    shrinkage: float = ranged(1e-4, ge=0, le=1)
    """eps of Lambda = [(1 - eps) Sigma + eps I]^-1 (Hayes and Kanan: 1e-4)."""

    def validate(self, prefix: str) -> None:
        if not 0 <= self.shrinkage <= 1:
            raise ConfigError(f"invalid value for '{prefix}.shrinkage': must be in [0, 1]")


@register("method", "slda", SLDAConfig)
class SLDA(FrozenFeatureClassifier[SLDAConfig]):
    evaluation_name = "slda"

    def __init__(self, config: SLDAConfig):
        super().__init__(config)
        self.lda: StreamingLDA | None = None
        self.weights = self.bias = torch.zeros(0)

    def state_dict(self) -> dict:
        if self.lda is None:
            return {}
        return {"counts": self.lda.counts, "means": self.lda.means, "scatter": self.lda.scatter}

    def load_state_dict(self, state: dict, engine: Engine) -> None:
        if state:
            self.lda = StreamingLDA(state["means"].shape[1], self.config.shrinkage, engine.device)
            self.lda.counts, self.lda.means, self.lda.scatter = (
                state[k].to(engine.device) for k in ("counts", "means", "scatter")
            )
            self.weights, self.bias = self.lda.discriminant()

    def learn(self, features: torch.Tensor, labels: torch.Tensor, n_seen: int) -> None:
        if self.lda is None:
            self.lda = StreamingLDA(features.shape[1], self.config.shrinkage, features.device)
        for start in range(0, len(features), 256):
            self.lda.update(features[start : start + 256], labels[start : start + 256], n_seen)
        self.weights, self.bias = self.lda.discriminant()

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_seen]: w_c . z + b_c."""
        return (features.double() @ self.weights.t() + self.bias).float()

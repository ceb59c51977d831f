"""Nearest class mean on frozen base-step features (the NCM baseline of Jodelet et al., Table 3).

Each class mean is the average of the L2-normalised embeddings of *all* training images of the
class (not exemplars), computed once when the class is learned; a test image goes to the class
whose mean is nearest (Euclidean) to its normalised embedding. Scores are negative squared
distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from cil.strategies.frozen_features import FrozenFeatureClassifier

from cil.plugin import ComponentConfig, Engine, register


def normalised_class_means(features: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """[len(classes), d]: mean of the normalised features of every listed class."""
    unit = F.normalize(features, dim=1)
    return torch.stack([unit[labels == c].mean(0) for c in classes])


@dataclass
class NCMConfig(ComponentConfig):
    name: str = "ncm"


@register("method", "ncm", NCMConfig)
class NearestClassMean(FrozenFeatureClassifier[NCMConfig]):
    evaluation_name = "ncm"

    def __init__(self, config: NCMConfig):
        super().__init__(config)
        self.means: torch.Tensor | None = None

    def state_dict(self) -> dict:
        return {"means": self.means}

    def load_state_dict(self, state: dict, engine: Engine) -> None:
        self.means = None if state["means"] is None else state["means"].to(engine.device)

    def learn(self, features: torch.Tensor, labels: torch.Tensor, n_seen: int) -> None:
        known = 0 if self.means is None else len(self.means)
        new = normalised_class_means(features, labels, list(range(known, n_seen)))
        self.means = new if self.means is None else torch.cat([self.means, new])

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        assert self.means is not None, "class means are learned after the base step"
        return -torch.cdist(F.normalize(features, dim=1), self.means).pow(2)

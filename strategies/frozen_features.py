"""Classifiers on a feature extractor trained on the base step only, then frozen (NCM, SLDA).

The base step trains the network as usual (the engine's loss and schedule). From the first
incremental step on, nothing is trained (``train_epochs = 0``: weights and BatchNorm statistics
stay as they were); the subclass only updates its class statistics with the features of each
step's training images (evaluation transform, all images of the new classes, no exemplars) and
replaces the network's logits by its own scores at evaluation (``evaluation_scores``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from cil.plugin import CilPlugin, ConfigT, Engine, NetOutput


class FrozenFeatureClassifier(CilPlugin[ConfigT], ABC):
    """Subclasses implement ``learn(features, labels, n_seen)`` and ``scores(features)``."""

    evaluation_name = "frozen-features"

    def before_step(self, engine: Engine) -> None:
        if engine.step > 0:
            engine.train_epochs = 0
            engine.step_record["trained_epochs"] = 0

    def after_training(self, engine: Engine) -> None:
        data = engine.experience_data
        features = engine.extract_features(data.indices)
        self.learn(features, data.labels.to(features.device), engine.n_seen)

    def evaluation_scores(self, engine: Engine, output: NetOutput) -> torch.Tensor:
        return self.scores(output.features.float())

    @abstractmethod
    def learn(self, features: torch.Tensor, labels: torch.Tensor, n_seen: int) -> None:
        """Update the classifier with the step's training features and labels (``n_seen`` classes so far)."""

    @abstractmethod
    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_seen] of evaluation features."""

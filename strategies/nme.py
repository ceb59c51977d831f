"""Nearest-mean-of-exemplars classification (iCaRL, Rebuffi et al. 2017, Alg. 1).

After each step's memory update, every seen class's mean is the normalised average of the
L2-normalised embeddings of its exemplars and of their mirror images (evaluation transform); a
test image is assigned to the class whose mean is nearest to its normalised embedding (the
scores are cosine similarities, so argmax = nearest mean). Requires a memory. The run's
results.json says ``"eval": "nme"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil.plugin import (
    CilPlugin,
    ComponentConfig,
    Engine,
    IncompatibleConfigError,
    NetOutput,
    RunConfig,
    UserError,
    register,
)


def class_means(features: torch.Tensor, flipped: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """[n_classes, d]: normalised means of normalised features (and their mirror images') per class."""
    both = torch.cat([F.normalize(features, dim=1), F.normalize(flipped, dim=1)])
    both_labels = torch.cat([labels, labels]).to(both.device)
    sums = torch.zeros(n_classes, both.shape[1], device=both.device).index_add_(0, both_labels, both)
    return F.normalize(sums, dim=1)


@dataclass
class NMEConfig(ComponentConfig):
    name: str = "nme"

    def validate_with(self, run: RunConfig, prefix: str) -> None:
        if not run.memory.enabled:
            raise IncompatibleConfigError(
                f"{prefix} nme classifies by the means of the exemplars: use a memory (--memory N or --memory-budget M)"
            )


@register("plugin", "nme", NMEConfig)
class NearestMeanOfExemplars(CilPlugin[NMEConfig]):
    evaluation_name = "nme"
    posthoc_correction = "nme"

    def __init__(self, config: NMEConfig):
        super().__init__(config)
        self.means: torch.Tensor | None = None

    def after_training(self, engine: Engine) -> None:
        memory = engine.memory_set
        if len(memory) == 0:
            raise UserError("nme evaluation needs exemplars: use a memory (--memory N > 0)")
        features = engine.extract_features(memory.indices)
        flipped = engine.extract_features(memory.indices, flip=True)
        self.means = class_means(features, flipped, memory.labels, engine.n_seen)

    def evaluation_scores(self, engine: Engine, output: NetOutput) -> torch.Tensor:
        assert self.means is not None, "class means are computed after every step's training"
        return F.normalize(output.features.float(), dim=1) @ self.means.t()

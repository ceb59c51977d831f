"""PODNet: Pooled Outputs Distillation for small-tasks incremental learning (Douillard et al., ECCV 2020).

Components, with values from the paper and the official code's CIFAR-100 options:

* POD-spatial: for the output h of every residual stage, square the activations, sum along the
  width and along the height, concatenate both poolings, L2-normalise, and take the Euclidean
  (Frobenius) distance between the previous and the current model; mean over the batch, then
  over the stages. Weight 3 (ImageNet: 8).
* POD-flat: on the final embedding, 1 - cos(h_prev, h) averaged over the batch (the official
  code's cosine-embedding loss). Weight 1 (ImageNet: 10).
* Both weights are multiplied by sqrt(N_seen / N_new) (the code's "scheduled_factor").
* Local Similarity Classifier (``model.head: lsc``, 10 proxies per class, learnable scale); new
  classes' proxies are imprinted with k-means centres of their embeddings; old classes' proxies
  are frozen during incremental steps (``groupwise_factors: old_weights: 0``).

The classification loss is the engine's ``loss``: NCA (strategies/nca.py) for ``podnet``,
Balanced Softmax CE on the same logits for ``podnet-bsce`` (Jodelet et al., Sec. 4.2.1). Balanced
finetuning of the classifier is a separate plugin (strategies/balanced_finetuning.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from cil.strategies.cosine_head_method import CosineHeadMethod, embedding_distillation_loss

from cil.models.heads import LocalSimilarityHead
from cil.plugin import ComponentConfig, Engine, NetOutput, ranged, register


def pooled_spatial(h: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C*(H+W)]: squared activations summed along width and along height."""
    h = h.float().pow(2)  # fp32 whatever the autocast precision of the maps
    return torch.cat([h.sum(dim=3).flatten(1), h.sum(dim=2).flatten(1)], dim=1)


def pod_spatial_loss(maps: list[torch.Tensor], previous_maps: list[torch.Tensor]) -> torch.Tensor:
    """POD-spatial: mean over stages of the batch-mean distance of normalised width/height poolings."""
    losses = []
    for h, h_prev in zip(maps, previous_maps):
        a = F.normalize(pooled_spatial(h), dim=1)
        b = F.normalize(pooled_spatial(h_prev.detach()), dim=1)
        losses.append((a - b).norm(dim=1).mean())
    return torch.stack(losses).mean()


def scheduled_factor(n_seen: int, n_new: int) -> float:
    """sqrt(N_seen / N_new), the factor applied to both distillation weights."""
    return math.sqrt(n_seen / n_new)


@dataclass
class PODNetConfig(ComponentConfig):
    name: str = "podnet"
    spatial_factor: float = ranged(3.0, ge=0)
    """Weight of POD-spatial (official code: 3 on CIFAR-100, 8 on ImageNet)."""
    flat_factor: float = ranged(1.0, ge=0)
    """Weight of POD-flat (official code: 1 on CIFAR-100, 10 on ImageNet)."""
    adaptive: bool = True
    """Multiply both weights by sqrt(N_seen / N_new)."""
    freeze_old_weights: bool = True
    imprint: bool = True


@register("method", "podnet", PODNetConfig)
class PODNet(CosineHeadMethod[PODNetConfig]):
    head_type, head_name = LocalSimilarityHead, "lsc"

    def __init__(self, config: PODNetConfig):
        super().__init__(config)
        self.factor = 1.0

    def start_incremental_step(self, engine: Engine, n_new: int) -> None:
        self.factor = scheduled_factor(engine.n_seen, n_new) if self.config.adaptive else 1.0
        engine.step_record["pod_factor"] = self.factor

    def imprint_options(self, engine: Engine) -> dict:
        return {"seed": engine.step}  # k-means seeding

    def loss_terms(self, engine: Engine, output: NetOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if engine.n_old == 0:
            return {}
        previous = engine.previous_output()
        return {
            "pod_spatial": self.config.spatial_factor
            * self.factor
            * pod_spatial_loss(output.stage_maps, previous.stage_maps),
            "pod_flat": self.config.flat_factor
            * self.factor
            * embedding_distillation_loss(output.features, previous.features),
        }

"""Weight Aligning (Zhao et al., "Maintaining Discrimination and Fairness in Class Incremental Learning",
CVPR 2020, Sec. 3.3, Eq. 8-10), a post-hoc bias correction for any method with a linear head.

After every incremental step's training, the new classes' weight vectors of the fully connected
classifier are rescaled so that their mean norm equals the old classes' mean norm:

    gamma = mean_{i old} ||w_i|| / mean_{j new} ||w_j||,      w_j <- gamma w_j  for every new class j

(the biases are left as they are, as PyCIL's implementation does). The norms of the new classes'
weights grow larger than the old ones' when trained on many more samples; equal mean norms remove
that bias from the logits. With ``clip_weights`` (WA's weight clipping, Sec. 3.4), every weight of the
classifier is clipped at 0 after each optimisation step: the embedding is non-negative (after a
ReLU), so a non-negative classifier keeps the norms comparable. The rescaled weights are the model's
from then on: the next step trains from them and distils from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cil.plugin import CilPlugin, ComponentConfig, Engine, IncompatibleConfigError, register, require_head


def aligning_factor(old_weights: torch.Tensor, new_weights: torch.Tensor) -> torch.Tensor:
    """gamma of Eq. 9: the old classes' mean weight norm over the new classes' ([classes, d] each)."""
    return old_weights.norm(dim=1).mean() / new_weights.norm(dim=1).mean()


@dataclass
class WeightAligningConfig(ComponentConfig):
    name: str = "weight-aligning"
    clip_weights: bool = True
    """Clip the classifier's weights at 0 after every optimisation step (WA's weight clipping)."""

    def validate_with(self, run, prefix: str) -> None:
        if run.model.head != "linear":
            raise IncompatibleConfigError(
                f"{prefix} weight-aligning rescales the weight vectors of a linear classifier; model.head "
                f"{run.model.head} normalises them (its logits do not depend on their norms): use model.head=linear"
            )


@register("plugin", "weight-aligning", WeightAligningConfig)
class WeightAligning(CilPlugin):
    posthoc_correction = "weight-aligning"

    def before_step(self, engine: Engine) -> None:
        from cil.models.heads import LinearHead

        require_head(engine, LinearHead, "weight-aligning", "linear")

    def after_batch(self, engine: Engine) -> None:
        if self.config.clip_weights:
            with torch.no_grad():
                for group in engine.model.head.groups:
                    group.weight.clamp_(min=0)

    def after_training(self, engine: Engine) -> None:
        if engine.n_old == 0:
            return
        *old, new = engine.model.head.groups
        with torch.no_grad():
            gamma = aligning_factor(torch.cat([g.weight for g in old]), new.weight)
            new.weight.mul_(gamma)
        engine.step_record["wa_gamma"] = round(float(gamma), 6)

"""Weight Aligning (Zhao et al., "Maintaining Discrimination and Fairness in Class Incremental Learning",
CVPR 2020, Sec. 3.3, Eq. 8-10), a post-hoc bias correction for any method with a linear head.

After every incremental step's training, the new classes' weight vectors of the fully connected
classifier are rescaled so that their mean norm equals the old classes' mean norm:

    gamma = mean_{i old} ||w_i|| / mean_{j new} ||w_j||,      w_j <- gamma w_j  for every new class j

(the biases are left as they are, as PyCIL's implementation does; the WA authors' classifier has none,
``model.head_bias: false`` in ``wa``). The norm is ``norm`` (the authors' code: L1; PyCIL: L2), and with
``max_gamma`` (the authors' code: 1) gamma never exceeds it: the correction only shrinks the new classes'
weights, it never enlarges them when the new classes happen to have the smaller norms. The norms of the new
classes' weights grow larger than the old ones' when trained on many more samples; equal mean norms remove
that bias from the logits. With ``clip_weights`` (WA's weight clipping, Sec. 3.4), every weight of the
classifier is clipped at 0 after each optimisation step: the embedding is non-negative (after a
ReLU), so a non-negative classifier keeps the norms comparable. The rescaled weights are the model's
from then on: the next step trains from them and distils from them. Each step records ``wa_gamma`` (applied),
``wa_ratio`` (before the clamp) and ``wa_norm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from cil.plugin import (
    CilPlugin,
    ComponentConfig,
    Engine,
    IncompatibleConfigError,
    RunConfig,
    ranged,
    register,
    require_head,
)


def aligning_factor(old_weights: torch.Tensor, new_weights: torch.Tensor, p: int = 2) -> torch.Tensor:
    """gamma of Eq. 9: the old classes' mean weight L_p norm over the new classes' ([classes, d] each)."""
    return old_weights.norm(p=p, dim=1).mean() / new_weights.norm(p=p, dim=1).mean()


@dataclass
class WeightAligningConfig(ComponentConfig):
    name: str = "weight-aligning"
    clip_weights: bool = True
    """Clip the classifier's weights at 0 after every optimisation step (WA's weight clipping)."""
    norm: Literal["l1", "l2"] = "l1"
    """The weight vectors' norm in Eq. 9: L1 as the WA authors' code, L2 as PyCIL."""
    max_gamma: float | None = ranged(1.0, gt=0)
    """gamma clamped at this value (the authors' code: 1, only shrinking the new weights); null: unclamped (PyCIL)."""

    def validate_with(self, run: RunConfig, prefix: str) -> None:
        if run.model.head != "linear":
            raise IncompatibleConfigError(
                f"{prefix} weight-aligning rescales the weight vectors of a linear classifier; model.head "
                f"{run.model.head} normalises them (its logits do not depend on their norms): add it to a strategy "
                "with a linear head (il-baseline, bic, eeil, ss-il, icarl, il-baseline-bsce)"
            )


@register("plugin", "weight-aligning", WeightAligningConfig)
class WeightAligning(CilPlugin[WeightAligningConfig]):
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
        cfg = self.config
        with torch.no_grad():
            ratio = aligning_factor(torch.cat([g.weight for g in old]), new.weight, 1 if cfg.norm == "l1" else 2)
            gamma = ratio if cfg.max_gamma is None else ratio.clamp(max=cfg.max_gamma)
            new.weight.mul_(gamma)
        engine.step_record.update(
            {"wa_gamma": round(float(gamma), 6), "wa_ratio": round(float(ratio), 6), "wa_norm": cfg.norm}
        )

"""IL-Baseline (Wu et al. 2019, as defined in Jodelet et al., Sec. 3.1).

L = rho * L_d + (1 - rho) * L_c                                             (Eq. 1)
rho = N_{t-1} / N_t

L_d(x) = sum_{k <= N_{t-1}} -p_hat_k(x) log p_k(x) * T^2                  (Eq. 2)

with p_hat and p the temperature-T softmaxes over the old classes' logits of the previous step's
(frozen) model and of the current model. L_c is whatever classification loss the engine uses
(cross-entropy, Balanced Softmax CE, ...). At the base step rho = 0: L = L_c.

The T^2 factor (Hinton et al. 2015) keeps the distillation's gradient scale independent of T; the
code of BiC (Wu et al. 2019) and WA (Zhao et al. 2020), which use the same loss with T = 2, leaves it
out (``squared_temperature: false`` in their strategy files).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil.plugin import CilPlugin, ComponentConfig, Engine, NetOutput, ranged, register


def distillation_loss(
    logits_old: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, squared_temperature: bool = True
) -> torch.Tensor:
    """Eq. 2, averaged over the batch: soft cross-entropy over the old classes, times T^2 (unless not
    ``squared_temperature``)."""
    log_p = F.log_softmax(logits_old / temperature, dim=1)
    p_hat = F.softmax(teacher_logits / temperature, dim=1)
    loss = -(p_hat * log_p).sum(dim=1).mean()
    return loss * temperature**2 if squared_temperature else loss


def adaptive_rho(n_old: int, n_seen: int) -> float:
    """rho = N_{t-1} / N_t (Eq. 1)."""
    return n_old / n_seen


@dataclass
class ILBaselineConfig(ComponentConfig):
    name: str = "il-baseline"
    temperature: float = ranged(2.0, gt=0)
    """T of Eq. 2 (Jodelet et al., Sec. 4.1.3)."""
    rho: float | None = ranged(None, ge=0, lt=1)
    """Fixed distillation weight instead of the adaptive N_{t-1}/N_t (None: adaptive, as the paper)."""
    squared_temperature: bool = True
    """Multiply L_d by T^2 (Eq. 2); BiC's and WA's code do not."""
    kd_weight: float | None = ranged(None, gt=0)
    """L = L_c + kd_weight * L_d instead of Eq. 1's convex combination (None: Eq. 1). Hou et al.'s iCaRL
    (LUCIR's code, ``class_incremental_cifar100.py``): 0.25, with T = 2 and T^2."""


@register("method", "il-baseline", ILBaselineConfig)
class ILBaseline(CilPlugin[ILBaselineConfig]):
    def __init__(self, config: ILBaselineConfig):
        super().__init__(config)
        self.rho = 0.0

    def before_step(self, engine: Engine) -> None:
        cfg = self.config
        if engine.n_old == 0:
            self.rho = 0.0
        elif cfg.kd_weight is not None:
            self.rho = cfg.kd_weight
        else:
            self.rho = cfg.rho if cfg.rho is not None else adaptive_rho(engine.n_old, engine.n_seen)
        engine.classification_weight = 1.0 if cfg.kd_weight is not None else 1.0 - self.rho
        engine.step_record["rho"] = self.rho

    def loss_terms(self, engine: Engine, output: NetOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if engine.n_old == 0 or self.rho == 0.0:
            return {}
        teacher = engine.previous_output().logits
        return {
            "distillation": self.rho
            * distillation_loss(
                output.logits[:, : engine.n_old], teacher, self.config.temperature, self.config.squared_temperature
            )
        }

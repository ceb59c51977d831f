"""Task-wise knowledge distillation: EEIL's cross-distilled loss (Castro et al., ECCV 2018, Eq. 1-2) and
SS-IL's task-wise KD (Ahn et al., ICCV 2021, Eq. 5).

The logits of every earlier step's classes are distilled separately, each group with its own
temperature-T softmax, from the previous step's frozen model, on every training sample (new data and
exemplars):

    L = L_c + sum_{s < t} T^2 KL( softmax(z_hat_s / T) || softmax(z_s / T) ),     z_s = logits of step s's classes

averaged over the batch (``batchmean``), as SS-IL's official code computes it for both methods
(hongjoon0805/SS-IL-Official, trainer/ssil.py and trainer/eeil.py). Unlike IL-Baseline's distillation
over all old classes at once (Jodelet et al., Eq. 2), a softmax per step does not let the newest old
step's classes dominate the others'. The classification loss is the strategy's own: CE over all
seen classes for ``eeil``, SS-IL's separated softmax for ``ss-il``. No weighting: L_c and the
distillation are summed (EEIL's lambda = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil.plugin import CilPlugin, ComponentConfig, Engine, NetOutput, ranged, register


def task_wise_distillation(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    step_classes: list[list[int]],
    temperature: float,
    squared_temperature: bool = True,
) -> torch.Tensor:
    """Sum over the steps in ``step_classes`` of the batch-mean KL divergence between the teacher's and the
    model's temperature softmaxes over that step's classes (each step's labels a contiguous range)."""
    total = logits.new_zeros(())
    for classes in step_classes:
        start, end = classes[0], classes[-1] + 1
        target = F.softmax(teacher_logits[:, start:end] / temperature, dim=1)
        log_p = F.log_softmax(logits[:, start:end] / temperature, dim=1)
        total = total + F.kl_div(log_p, target, reduction="batchmean")
    return total * temperature**2 if squared_temperature else total


@dataclass
class TaskWiseKDConfig(ComponentConfig):
    name: str = "task-wise-kd"
    temperature: float = ranged(2.0, gt=0)
    """T (EEIL and SS-IL: 2)."""
    weight: float = ranged(1.0, ge=0)
    """Factor of the distillation (EEIL's lambda: 1)."""
    squared_temperature: bool = True
    """Multiply by T^2, as SS-IL's code does for both methods."""

    def check_steps(self, step_sizes: list[int], prefix: str) -> list[str]:
        single = [step for step, size in enumerate(step_sizes[:-1]) if size == 1]
        if not single:
            return []
        return [
            f"{prefix} task-wise-kd: step{'s' if len(single) > 1 else ''} {', '.join(map(str, single))} "
            f"learn{'' if len(single) > 1 else 's'} one class; a softmax over one logit is constant, so "
            f"{'their' if len(single) > 1 else 'its'} distillation is 0 and only the classification loss keeps "
            "that class (docs/strategies.md)"
        ]


@register("method", "task-wise-kd", TaskWiseKDConfig)
class TaskWiseDistillation(CilPlugin[TaskWiseKDConfig]):
    def loss_terms(self, engine: Engine, output: NetOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if engine.n_old == 0:
            return {}
        cfg = self.config
        old_steps = engine.step_classes[: engine.step]
        teacher = engine.previous_output().logits
        kd = task_wise_distillation(output.logits, teacher, old_steps, cfg.temperature, cfg.squared_temperature)
        return {"task_distillation": cfg.weight * kd}

"""Learning-rate factors per epoch for the schedules torch has no single scheduler for: a linear warm-up in
front of a step or cosine schedule (LDAM-DRW's CIFAR schedule: 5 warm-up epochs, then x0.01 at epochs 160 and
180). Plain step and cosine schedules use torch's own schedulers (cil/training/engine.py)."""

from __future__ import annotations

import math
from bisect import bisect_right


def warmed_up_factor(schedule: str, milestones: list[int], gamma: float, warmup: int, epochs: int, epoch: int) -> float:
    """The factor of the base learning rate at (0-based) ``epoch`` of ``epochs``: (epoch + 1) / warmup during the
    warm-up (LDAM-DRW's ``adjust_learning_rate``), then the schedule's own factor at that epoch (``multistep``:
    gamma ** (milestones passed), ``cosine``: 0.5 (1 + cos(pi epoch / epochs)), ``constant``: 1)."""
    if epoch < warmup:
        return (epoch + 1) / warmup
    if schedule == "multistep":
        return gamma ** bisect_right(milestones, epoch)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    return 1.0

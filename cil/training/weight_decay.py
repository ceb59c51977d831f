"""Which parameters decay: ``optim.weight_decay_on: weights`` keeps biases and normalisation parameters out of the
weight decay, as iCaRL's Lasagne code does (it regularises the layers' weight matrices and kernels only)."""

from __future__ import annotations

from typing import Any


def without_decay_on_biases_and_norms(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each optimizer parameter group split in two: its weight matrices and convolution kernels (more than one
    dimension) with the group's weight decay, its vectors (biases, BatchNorm's scale and shift, a learned logit
    scale) with none. Every other key of a group (its learning rate) is kept by both halves."""
    split: list[dict[str, Any]] = []
    for group in groups:
        params = list(group["params"])
        decayed = [p for p in params if p.ndim > 1]
        kept = [p for p in params if p.ndim <= 1]
        if decayed:
            split.append({**group, "params": decayed})
        if kept:
            split.append({**group, "params": kept, "weight_decay": 0.0})
    return split

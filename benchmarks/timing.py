"""Wall-clock timing shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time

import torch


def timed(fn, repeat: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` (after one warm-up call), synchronising CUDA around the loop."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat

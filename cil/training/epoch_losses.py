"""Per-epoch sums of the named loss terms, kept on the device so that training never waits for them.

Reading a device tensor's value from the host (``float(loss)``, ``.item()``) makes the host wait
until the GPU has finished everything queued before it; once per mini-batch that serialises the
host's work with the GPU's. The sums are therefore float64 tensors on the device, added to without
reading them, and read once per epoch (or every few batches while a progress bar is shown).
float64 keeps them exactly equal to summing the per-batch values as Python floats.
"""

from __future__ import annotations

import torch


class EpochLosses:
    """Running sums of named scalar loss terms over the mini-batches of one epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.batches = 0

    def add(self, parts: dict[str, torch.Tensor]) -> None:
        """Add one mini-batch's terms (no host synchronisation)."""
        for name, value in parts.items():
            value = value.detach().to(torch.float64)
            if name in self.sums:
                self.sums[name] += value
            else:
                self.sums[name] = value.clone()
        self.batches += 1

    def means(self) -> dict[str, float]:
        """Mean of every term over the batches so far (one host synchronisation)."""
        if not self.sums:
            return {}
        values = torch.stack([v.reshape(()) for v in self.sums.values()]).tolist()
        return {name: value / max(1, self.batches) for name, value in zip(self.sums, values)}

    def total_mean(self) -> float:
        """Mean of the sum of all terms (one host synchronisation)."""
        return sum(self.means().values())

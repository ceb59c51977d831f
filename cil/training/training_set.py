"""What a step trains on: positions in the training image store and their remapped labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TrainingSet:
    """Indices into the training image store and the remapped label of each."""

    indices: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def empty(cls) -> "TrainingSet":
        return cls(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.indices)

    def __add__(self, other: "TrainingSet") -> "TrainingSet":
        return TrainingSet(torch.cat([self.indices, other.indices]), torch.cat([self.labels, other.labels]))

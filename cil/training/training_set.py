"""What a step trains on: positions in the training image store and their remapped labels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from cil.errors import UserError


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """Indices into the training image store and the remapped label of each (compared by identity)."""

    indices: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def empty(cls) -> TrainingSet:
        return cls(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.indices)

    def __add__(self, other: TrainingSet) -> TrainingSet:
        return TrainingSet(torch.cat([self.indices, other.indices]), torch.cat([self.labels, other.labels]))

    def subset(self, positions: torch.Tensor) -> TrainingSet:
        """The samples at ``positions`` (a boolean mask or indices), in that order."""
        return TrainingSet(self.indices[positions], self.labels[positions])

    def copy(self) -> TrainingSet:
        """A copy whose tensors share nothing with this one's."""
        return TrainingSet(self.indices.clone(), self.labels.clone())


def balanced_split(
    training_set: TrainingSet, classes: int | Iterable[int], per_class: int, generator: torch.Generator
) -> tuple[TrainingSet, TrainingSet]:
    """(rest, held out): ``per_class`` random samples of every class in ``classes`` (an int n: 0..n-1) are held
    out; at least one sample of each must stay."""
    chosen = []
    for c in range(classes) if isinstance(classes, int) else classes:
        positions = (training_set.labels == c).nonzero().flatten()
        if len(positions) <= per_class:
            raise UserError(
                f"cannot hold out {per_class} training samples of class {c}: it has {len(positions)}, "
                "and at least one more must stay to train on (a larger memory or fewer held out)"
            )
        chosen.append(positions[torch.randperm(len(positions), generator=generator)[:per_class]])
    held_out = torch.zeros(len(training_set), dtype=torch.bool)
    if chosen:
        held_out[torch.cat(chosen)] = True
    return training_set.subset(~held_out), training_set.subset(held_out)

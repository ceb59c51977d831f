"""Rehearsal memory: exemplar selection (herding, random) and per-class storage.

Exemplars are stored as indices into the training image store, ranked by selection order, so a
fixed budget shrinks a class by keeping a prefix of its ranking (iCaRL's ReduceExemplarSet) and a
checkpoint can save the memory as plain integers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cil.config import MemoryConfig
from cil.training.training_set import TrainingSet


def herding_selection(features: torch.Tensor, m: int) -> torch.Tensor:
    """iCaRL herding (Rebuffi et al. 2017, Alg. 4; Welling 2009): positions of up to ``m`` samples.

    Features are L2-normalised; the k-th exemplar is the sample that brings the mean of the k
    chosen ones closest to the class mean: argmin_i || mu - (sum_{j<k} f_j + f_i) / k ||.
    A sample is chosen at most once. The result is ranked: any prefix is a herding selection.
    """
    n = features.shape[0]
    m = min(m, n)
    if m <= 0:
        return torch.empty(0, dtype=torch.long)
    f = F.normalize(features.double(), dim=1)
    mu = f.mean(dim=0)
    running = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool)
    chosen = []
    for k in range(1, m + 1):
        dist = (mu - (running + f) / k).pow(2).sum(dim=1)
        dist[taken] = float("inf")
        i = int(torch.argmin(dist))
        chosen.append(i)
        taken[i] = True
        running += f[i]
    return torch.tensor(chosen, dtype=torch.long)


def random_selection(n: int, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Positions of ``min(m, n)`` samples drawn uniformly without replacement."""
    return torch.randperm(n, generator=generator)[: max(0, min(m, n))]


class RehearsalMemory:
    """Exemplars of every seen class: growing (``per_class`` each) or a fixed total ``budget``."""

    def __init__(self, per_class: int = 20, budget: int | None = None):
        self.per_class = per_class
        self.budget = budget
        self.exemplars: dict[int, torch.Tensor] = {}
        """label -> store indices, ranked by selection order."""

    def quota(self, n_classes: int) -> int:
        """Exemplars per class once ``n_classes`` classes are stored (budget split evenly, floored)."""
        if self.budget is None:
            return self.per_class
        return self.budget // max(1, n_classes)

    def add_class(self, label: int, ranked_indices: torch.Tensor, quota: int) -> None:
        self.exemplars[int(label)] = ranked_indices[:quota].clone().long().cpu()

    def shrink(self, quota: int) -> None:
        """Keep the first ``quota`` exemplars of every class (a prefix of its ranking)."""
        self.exemplars = {c: idx[:quota] for c, idx in self.exemplars.items()}

    def __len__(self) -> int:
        return sum(len(v) for v in self.exemplars.values())

    def sizes(self) -> dict[int, int]:
        return {c: len(v) for c, v in sorted(self.exemplars.items())}

    def indices_and_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.exemplars:
            return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
        labels = sorted(self.exemplars)
        idx = torch.cat([self.exemplars[c] for c in labels])
        lab = torch.cat([torch.full((len(self.exemplars[c]),), c, dtype=torch.long) for c in labels])
        return idx, lab

    def state_dict(self) -> dict:
        return {
            "per_class": self.per_class,
            "budget": self.budget,
            "exemplars": {c: v.tolist() for c, v in self.exemplars.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.per_class, self.budget = state["per_class"], state["budget"]
        self.exemplars = {int(c): torch.tensor(v, dtype=torch.long) for c, v in state["exemplars"].items()}


# ------------------------------------------------------------------------------------------------
# The memory of a run, updated by the engine
# ------------------------------------------------------------------------------------------------


class Rehearsal:
    """A run's exemplars: what the engine adds to each step's training data, and their selection.

    The engine (cil/training/engine.py) owns one and calls ``update`` after every step's training, before any
    plugin's ``after_training_exp``: the per-class quota is recomputed (fixed budget: budget // N_t),
    old classes are shrunk to a prefix of their ranking, and each new class gets its exemplars chosen
    among its training images, by herding on features computed with the evaluation transform in
    evaluation mode (iCaRL), or at random.
    """

    def __init__(self, config: MemoryConfig, seed: int):
        self.config = config
        self.memory = RehearsalMemory(config.per_class, config.budget)
        self.generator = torch.Generator().manual_seed(seed + 2)
        self._exemplars = TrainingSet.empty()

    def exemplars(self) -> TrainingSet:
        """Every stored exemplar (the same object until the next ``update`` or ``load_state_dict``)."""
        return self._exemplars

    def state_dict(self) -> dict:
        return {"memory": self.memory.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
        self.generator.set_state(state["generator"])
        self._exemplars = TrainingSet(*self.memory.indices_and_labels())

    def update(
        self,
        experience_data: TrainingSet,
        new_classes: list[int],
        n_seen: int,
        extract_features: Callable[[torch.Tensor], torch.Tensor],
    ) -> dict:
        """Select the new classes' exemplars among ``experience_data`` after a step; returns what to record."""
        quota = self.memory.quota(n_seen)
        self.memory.shrink(quota)
        new = experience_data
        if quota > 0:
            features = extract_features(new.indices).cpu() if self.config.selection == "herding" else None
            for label in new_classes:
                rows = torch.nonzero(new.labels == label).flatten()
                if features is not None:  # herding
                    ranked = herding_selection(features[rows], quota)
                else:
                    ranked = random_selection(len(rows), quota, self.generator)
                self.memory.add_class(label, new.indices[rows[ranked]], quota)
        self._exemplars = TrainingSet(*self.memory.indices_and_labels())
        return {"memory_size": len(self.memory), "memory_per_class": quota}

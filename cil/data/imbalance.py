"""Which training images an imbalanced run keeps (the profile's counts: cil/config/imbalance.py).

n_max is the largest per-class count of the training set (after ``--limit-per-class``); a class keeps the
first ``n_c`` of its images in a seeded shuffle, ``numpy.random.RandomState(seed)`` shuffling each class's
indices in turn, classes by ascending id: exactly LDAM-DRW's and Long-Tailed-CIL's ``gen_imbalanced_data``
with ``np.random.seed(0)`` (``data.imbalance_seed``, default 0). A class with fewer images than its target
keeps all of them. Test sets stay as they are (balanced).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from cil.config.imbalance import ImbalanceProfile


def available_counts(targets: np.ndarray, n_classes: int) -> list[int]:
    """Training images of every class id."""
    return np.bincount(np.asarray(targets, dtype=np.int64), minlength=n_classes).tolist()


def kept_indices(targets: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """Sorted indices of the images kept: for every class id in ascending order, its indices shuffled by one
    ``RandomState(seed)`` and the first ``counts[c]`` taken (LDAM-DRW's ``gen_imbalanced_data``)."""
    targets = np.asarray(targets, dtype=np.int64)
    rng = np.random.RandomState(seed)
    kept = []
    for class_id in np.unique(targets):
        indices = np.where(targets == class_id)[0]
        rng.shuffle(indices)
        kept.append(indices[: counts[class_id]])
    return np.sort(np.concatenate(kept)) if kept else np.empty(0, dtype=np.int64)


def indices_digest(indices: np.ndarray) -> str:
    """sha256 of the kept indices as int64, recorded in results.json (the same set gives the same digest)."""
    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()


@dataclass(frozen=True)
class ImbalancedSplit:
    """What a run keeps of its training set and why (recorded in results.json as ``imbalance``)."""

    profile: ImbalanceProfile
    seed: int
    counts: list[int]
    """Images kept per class id."""
    indices: np.ndarray

    def record(self, order: list[int]) -> dict:
        by_label = [self.counts[class_id] for class_id in order]
        return {
            "profile": str(self.profile),
            "seed": self.seed,
            "factor_realised": round(max(by_label) / min(by_label), 4),
            "n_train": int(sum(by_label)),
            "kept_sha256": indices_digest(self.indices),
        }


def imbalanced_split(
    profile: ImbalanceProfile, targets: np.ndarray, n_classes: int, order: list[int], seed: int
) -> ImbalancedSplit:
    """The kept images of a training set with original class ids ``targets``."""
    counts = profile.class_counts(available_counts(targets, n_classes), order)
    return ImbalancedSplit(profile, seed, counts, kept_indices(targets, counts, seed))

"""Scenario names -> class order, per-step classes and Avalanche train/test streams.

Grammar: ``DATASET-bBASE-STEPS``.

* ``BASE > 0``: a base step with BASE classes, then STEPS incremental steps sharing the remaining
  classes equally (``cifar100-b50-5``: 50, then 5 x 10). ``BASE`` equal to the number of classes
  with ``STEPS = 0`` is joint training on everything (an upper bound).
* ``BASE = 0``: STEPS equal steps and no large base step (``imagenet-b0-10``: 10 x 100).

The class order is ``numpy.random.RandomState(seed).permutation(n_classes)`` (seed 1993 by
default, as LUCIR's code and Jodelet et al.; for CIFAR-100 it starts 68, 56, 78). The official PODNet
code uses this order for ImageNet-100 but iCaRL's three fixed CIFAR-100 orders (87, 0, 52, ...);
comparisons with Jodelet et al. use seed 1993. Labels are remapped so that class ``order[i]`` becomes ``i``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from cil.errors import UserError, did_you_mean

NAME_PATTERN = re.compile(r"^(?P<dataset>[a-z0-9][a-z0-9_-]*?)-b(?P<base>\d+)-(?P<steps>\d+)$")
GRAMMAR = "DATASET-bBASE-STEPS, e.g. cifar100-b50-5, imagenet-b0-10, synthetic-b50-10"


@dataclass(frozen=True)
class ScenarioName:
    dataset: str
    base: int
    steps: int

    @classmethod
    def parse(cls, name: str, datasets: list[str]) -> ScenarioName:
        m = NAME_PATTERN.match(name)
        if not m:
            raise UserError(f"invalid scenario name '{name}': expected {GRAMMAR}")
        dataset = m["dataset"]
        if dataset not in datasets:
            raise UserError(f"unknown dataset '{dataset}' in scenario '{name}'{did_you_mean(dataset, datasets)}")
        return cls(dataset, int(m["base"]), int(m["steps"]))

    def __str__(self) -> str:
        return f"{self.dataset}-b{self.base}-{self.steps}"


def class_order(n_classes: int, seed: int) -> list[int]:
    """The iCaRL/LUCIR/PODNet class order: a numpy RandomState permutation."""
    return np.random.RandomState(seed).permutation(n_classes).tolist()


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def step_sizes(name: ScenarioName, n_classes: int) -> list[int]:
    """Number of new classes at each step; rejects impossible splits with a clear message."""
    base, steps = name.base, name.steps
    if base > n_classes:
        raise UserError(f"scenario '{name}': base step of {base} classes but {name.dataset} has {n_classes}")
    if base == 0:
        if steps < 1:
            raise UserError(f"scenario '{name}': b0 needs at least one step")
        if n_classes % steps:
            raise UserError(
                f"scenario '{name}': {n_classes} classes do not split into {steps} equal steps; "
                f"valid step counts: {_divisors(n_classes)}"
            )
        return [n_classes // steps] * steps
    rest = n_classes - base
    if steps == 0:
        if rest:
            raise UserError(
                f"scenario '{name}': 0 incremental steps leave {rest} classes unused; "
                f"use b{n_classes}-0 for joint training"
            )
        return [base]
    if rest == 0:
        raise UserError(f"scenario '{name}': the base step holds all {n_classes} classes; use -0 steps")
    if rest % steps:
        raise UserError(
            f"scenario '{name}': the {rest} classes after the base step do not split into {steps} "
            f"equal steps; valid step counts: {_divisors(rest)}"
        )
    return [base] + [rest // steps] * steps


@dataclass(frozen=True)
class ScenarioPlan:
    """What a scenario is, without any images: class order and each step's classes."""

    name: ScenarioName
    n_classes: int
    order: list[int]
    """order[i] is the original class id that becomes label i."""
    step_classes: list[list[int]]
    """Remapped labels learned at each step (step 0 is the base step)."""

    @classmethod
    def make(cls, name: ScenarioName, n_classes: int, seed: int) -> ScenarioPlan:
        sizes = step_sizes(name, n_classes)
        bounds = np.cumsum([0] + sizes)
        steps = [list(range(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:])]
        return cls(name, n_classes, class_order(n_classes, seed), steps)

    @property
    def n_steps(self) -> int:
        return len(self.step_classes)

    def n_seen(self, step: int) -> int:
        return sum(len(c) for c in self.step_classes[: step + 1])

    def step_samples(self, step: int, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(store indices, labels) of the samples of ``step``'s classes, ``targets`` holding every sample's
        original class id.

        Each class's samples come in store order, the classes in the order Avalanche's ``nc_benchmark``
        gives them (iterating a Python set of their original ids, built in class order), so that a step
        trains on exactly the samples, in the order, of the experience Avalanche builds for it
        (``build_streams``; a test checks that they agree).
        """
        targets = np.asarray(targets)
        originals = set(self.order[label] for label in self.step_classes[step])
        parts = [np.flatnonzero(targets == original) for original in originals]
        indices = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        inverse = np.empty(self.n_classes, dtype=np.int64)
        inverse[self.order] = np.arange(self.n_classes)
        return indices.astype(np.int64), inverse[targets[indices]]

    def to_dict(self, class_names: list[str] | None = None) -> dict:
        out: dict[str, Any] = {
            "scenario": str(self.name),
            "n_classes": self.n_classes,
            "class_order": self.order,
            "steps": [
                {"step": t, "labels": labels, "classes": [self.order[i] for i in labels]}
                for t, labels in enumerate(self.step_classes)
            ],
        }
        if class_names:
            for step in out["steps"]:
                step["class_names"] = [class_names[c] for c in step["classes"]]
        return out


def build_streams(plan: ScenarioPlan, train_targets: np.ndarray, test_targets: np.ndarray):
    """Avalanche 0.6 class-incremental train/test streams over sample indices.

    Each sample of the Avalanche datasets is ``(index into the image store, remapped label)``:
    the images themselves stay in tensor stores (see cil/data/base.py) so training can gather and
    augment whole batches at once. ``nc_benchmark`` is given the numpy class order explicitly
    (its own ``seed`` would shuffle with torch) and remaps labels so that order[i] becomes i.
    """
    import torch.utils.data
    from avalanche.benchmarks import nc_benchmark

    class IndexDataset(torch.utils.data.Dataset):
        def __init__(self, targets: np.ndarray):
            self.targets = [int(t) for t in targets]

        def __len__(self) -> int:
            return len(self.targets)

        def __getitem__(self, i: int):
            return i, self.targets[i]

    sizes = [len(c) for c in plan.step_classes]
    per_exp = {0: sizes[0]} if plan.name.base > 0 else None
    benchmark = nc_benchmark(
        train_dataset=IndexDataset(train_targets),
        test_dataset=IndexDataset(test_targets),
        n_experiences=len(sizes),
        task_labels=False,
        fixed_class_order=plan.order,
        per_exp_classes=per_exp,
        class_ids_from_zero_from_first_exp=True,
    )
    for t, exp in enumerate(benchmark.train_stream):
        if sorted(exp.classes_in_this_experience) != plan.step_classes[t]:  # pragma: no cover - guards avalanche
            raise RuntimeError(f"Avalanche put classes {exp.classes_in_this_experience} in step {t}")
    return benchmark.train_stream, benchmark.test_stream


def experience_indices(experience) -> tuple[np.ndarray, np.ndarray]:
    """(store indices, remapped labels) of an Avalanche experience built by ``build_streams``."""
    dataset = experience.dataset
    indices = np.fromiter((dataset[i][0] for i in range(len(dataset))), dtype=np.int64, count=len(dataset))
    labels = np.asarray(list(dataset.targets), dtype=np.int64)
    return indices, labels

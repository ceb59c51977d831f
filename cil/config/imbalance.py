"""Imbalance profiles: how many training images every class keeps (``--imbalance``, ``data.imbalance``).

The grammar and the counts; which images are kept is cil/data/imbalance.py. A profile is written
``KIND:FACTOR[:OPTION...]``:

* ``exp:100``: exponential (long-tailed) counts, ``n_r = int(n_max * (1/100) ** (r / (C - 1)))`` for the
  class of rank r = 0 .. C-1 (Cui et al. 2019; Cao et al. 2019, LDAM-DRW's ``get_img_num_per_cls``);
* ``step:100``: step imbalance, the first ``C - m`` ranks keep ``n_max`` images, the last m ranks
  ``int(n_max * (1/100))`` (Buda et al. 2018; LDAM-DRW; Ye et al.'s MFW), m = ``int(C * minor)`` with the
  option ``minor=F`` (0.5: the second half of the classes, as those codes do);
* ``FACTOR`` = n_max / n_min >= 1 (1: balanced).

Which class gets which rank (``:ordered``, the default, or ``:shuffled``):

* ``ordered``: rank = the class's position in the scenario's class order, so the head classes are learned
  first (the base step): Liu et al.'s *ordered* long-tailed class-incremental stream;
* ``shuffled``: rank = the dataset's own class id (class 0 the largest), which the seeded class order then
  scatters over the steps. This is how LDAM-DRW and Long-Tailed-CIL build CIFAR-10/100-LT, so that
  ``cifar10-b10-0`` with ``exp:100:shuffled`` is the long-tailed papers' CIFAR-10-LT and
  ``cifar100-b50-5`` with ``exp:100:shuffled`` (class-order seed 1993) is Liu et al.'s *shuffled* stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from cil.errors import UserError

KINDS = ("exp", "step")
ASSIGNMENTS = ("ordered", "shuffled")
SPELLING = "KIND:FACTOR[:ordered|:shuffled][:minor=F], e.g. exp:100, exp:100:shuffled, step:10:minor=0.3"
NONE = ("none", "balanced", "")


@dataclass(frozen=True)
class ImbalanceProfile:
    kind: Literal["exp", "step"]
    factor: float
    """n_max / n_min, >= 1."""
    assignment: Literal["ordered", "shuffled"] = "ordered"
    minor: float = 0.5
    """Step profiles: the fraction of classes that are minor (the last ranks)."""

    @classmethod
    def parse(cls, text: str | None, key: str = "--imbalance") -> ImbalanceProfile | None:
        """The profile a spelling names (None for ``none``/``balanced``); one error line naming the grammar."""
        if text is None or str(text).strip().lower() in NONE:
            return None
        parts = [p.strip() for p in str(text).strip().split(":")]
        bad = f"invalid {key} '{text}': expected {SPELLING}"
        if len(parts) < 2 or parts[0] not in KINDS:
            raise UserError(f"{bad} (KIND is {' or '.join(KINDS)})")
        try:
            factor = float(parts[1])
        except ValueError:
            raise UserError(f"{bad} (FACTOR must be a number)") from None
        if not math.isfinite(factor) or factor < 1:
            raise UserError(
                f"invalid {key} '{text}': the imbalance factor n_max/n_min must be a finite number >= 1, got {parts[1]}"
            )
        assignment, minor = "ordered", 0.5
        for option in parts[2:]:
            if option in ASSIGNMENTS:
                assignment = option
            elif option.startswith("minor=") and parts[0] == "step":
                try:
                    minor = float(option.split("=", 1)[1])
                except ValueError:
                    raise UserError(f"{bad} (minor=F takes a fraction between 0 and 1)") from None
                if not 0 < minor < 1:
                    raise UserError(
                        f"invalid {key} '{text}': minor={option.split('=', 1)[1]} must lie strictly between 0 and 1 "
                        "(a step profile needs both major and minor classes)"
                    )
            else:
                valid = ", ".join([*ASSIGNMENTS, *(["minor=F"] if parts[0] == "step" else [])])
                raise UserError(f"{bad} (unknown option '{option}'; options: {valid})")
        return cls(parts[0], factor, assignment, minor)  # type: ignore[arg-type]

    def __str__(self) -> str:
        factor = f"{self.factor:g}"
        minor = f":minor={self.minor:g}" if self.kind == "step" and self.minor != 0.5 else ""
        return f"{self.kind}:{factor}{minor}:{self.assignment}"

    def counts_by_rank(self, n_classes: int, n_max: int) -> list[int]:
        """Target images of the class of every rank (0: the largest), as LDAM-DRW computes them."""
        ratio = 1 / self.factor
        if self.kind == "exp":
            if n_classes == 1:
                return [int(n_max)]
            return [int(n_max * (ratio ** (rank / (n_classes - 1.0)))) for rank in range(n_classes)]
        minor = self.minor_classes(n_classes)
        return [int(n_max)] * (n_classes - minor) + [int(n_max * ratio)] * minor

    def minor_classes(self, n_classes: int) -> int:
        """How many classes a step profile makes minor; one error line when none or all would be."""
        minor = int(n_classes * self.minor)
        if not 0 < minor < n_classes:
            raise UserError(
                f"imbalance profile {self}: {self.minor:g} of {n_classes} classes gives {minor} minor classes; "
                "a step profile needs at least one major and one minor class (set minor=F)"
            )
        return minor

    def class_counts(self, available: list[int], order: list[int]) -> list[int]:
        """Images kept of every class (by the dataset's class id), given the images ``available`` per class id
        and the scenario's class order (``order[i]`` is the class id learned as label i)."""
        n_classes = len(available)
        by_rank = self.counts_by_rank(n_classes, max(available))
        if self.assignment == "ordered":
            targets = [0] * n_classes
            for position, class_id in enumerate(order):
                targets[class_id] = by_rank[position]
        else:
            targets = by_rank
        counts = [min(t, a) for t, a in zip(targets, available)]
        empty = [c for c, n in enumerate(counts) if n == 0]
        if empty:
            raise UserError(
                f"imbalance profile {self} leaves {len(empty)} class(es) without a training image (n_max "
                f"{max(available)}, factor {self.factor:g}): lower the factor or use more images per class"
            )
        return counts

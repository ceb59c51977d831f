"""Base classes of cil's strategy plugins (Avalanche ``SupervisedPlugin``s).

A strategy is one method plugin, one classification-loss plugin, optional extra plugins and the
rehearsal-memory plugin, composed onto the engine (cil/engine.py). The engine knows none of them
by name; it calls:

* ``ClassificationLoss.classification_loss(strategy, logits, targets)`` for the loss L_c;
* ``CilPlugin.loss_terms(strategy, output, targets)`` of every plugin for additional, already
  weighted terms (distillation, ...);
* ``CilPlugin.state_dict()`` / ``load_state_dict(state, strategy)`` for whatever a plugin carries
  from one step to the next (exemplars, class statistics), so that a run can resume.

The total training loss is ``strategy.classification_weight * L_c + sum(loss_terms)``. It is a
pure function of the model output, so it can be re-evaluated on a functional copy of the model
(Meta BSCE's virtual step) as well as on the real one. Plugins may also use any Avalanche
callback (``before_training_exp``, ``after_training_exp``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from avalanche.core import SupervisedPlugin

if TYPE_CHECKING:
    from cil.engine import IncrementalStrategy
    from cil.models import NetOutput


class CilPlugin(SupervisedPlugin):
    """An Avalanche plugin that may add terms to the training loss."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config

    def loss_terms(self, strategy: "IncrementalStrategy", output: "NetOutput",
                   targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named, weighted loss terms for this mini-batch (none by default)."""
        return {}

    def state_dict(self) -> dict:
        """What this plugin learned that later steps need (saved in every step's checkpoint)."""
        return {}

    def load_state_dict(self, state: dict, strategy: "IncrementalStrategy") -> None:
        """Restore ``state_dict()`` when a run resumes after a completed step."""


class ClassificationLoss(CilPlugin):
    """Turns logits into the classification loss L_c; exactly one per strategy."""

    def classification_loss(self, strategy: "IncrementalStrategy", logits: torch.Tensor,
                            targets: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise TypeError("classification losses are called by the engine with the strategy")


def without_parameters(groups: list[dict], excluded) -> list[dict]:
    """Optimizer parameter groups with ``excluded`` parameters removed (frozen: no update, no decay)."""
    ids = {id(p) for p in excluded}
    return [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in groups]


def require_head(strategy: "IncrementalStrategy", head_type: type, method: str, head_name: str) -> None:
    """One clear error when a method runs with the wrong classifier head."""
    from cil.errors import UserError

    if not isinstance(strategy.model.head, head_type):
        raise UserError(f"{method} needs model.head: {head_name} (got {type(strategy.model.head).__name__})")

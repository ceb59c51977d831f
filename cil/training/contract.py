"""The plugin contract: what cil's engine asks of a strategy's plugins, declared in one place.

A strategy is one method plugin, one classification-loss plugin and optional extra plugins,
composed onto the engine (cil/training/engine.py), which also owns the rehearsal memory (cil/training/memory.py).
The engine knows no plugin by name. Every plugin is an Avalanche ``SupervisedPlugin`` and may use
any Avalanche callback (``before_training_exp``, ``after_training_exp``, ...); cil's plugins
derive from ``CilPlugin`` and may also implement the hooks below. The engine finds a hook by its
name (``HOOKS``); a hook marked "at most one" refuses a strategy where two plugins have it.

Always present on a ``CilPlugin`` (defaults do nothing):

* ``loss_terms(strategy, output, targets) -> dict[str, Tensor]``: named, already weighted terms
  added to the training loss (distillation, ...). The total loss is
  ``strategy.classification_weight * L_c + sum(loss_terms)``, a pure function of the model
  output, so it can be re-evaluated on a functional copy of the model (Meta BSCE's virtual step);
* ``state_dict()`` / ``load_state_dict(state, strategy)``: what the plugin carries from one step
  to the next (saved in every step's checkpoint, restored on resume).

Optional hooks, each a ``typing.Protocol`` below.

What a plugin may set on the strategy, and nothing else: ``classification_weight`` and
``train_epochs`` (per-step settings, reset by the engine before every step; set them in
``before_training_exp``) and ``step_record`` / ``epoch_scalars`` entries (values to report).
Everything else goes through a named engine method: ``extend_training_set``, ``training_on``,
``extend_minibatch``, ``replace_logits``. The exemplars are the engine's: ``memory_set`` is
read-only, updated after every step's training before any plugin's ``after_training_exp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from avalanche.core import SupervisedPlugin

from cil.errors import UserError

Strategy = Any
"""The engine, ``cil.training.engine.IncrementalStrategy`` (not imported here: the engine imports this module)."""


class CilPlugin(SupervisedPlugin):
    """An Avalanche plugin that may add terms to the training loss and carry state across steps."""

    data_parallel = True
    """False: the plugin keeps per-process state (gradient statistics, its own backward) that ranks of a
    data-parallel run would not share; such a strategy is refused under torchrun (cil/training/distributed.py)."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config

    def loss_terms(self, strategy: Strategy, output, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named, weighted loss terms for this mini-batch (none by default)."""
        return {}

    def state_dict(self) -> dict:
        """What this plugin learned that later steps need (saved in every step's checkpoint)."""
        return {}

    def load_state_dict(self, state: dict, strategy: Strategy) -> None:
        """Restore ``state_dict()`` when a run resumes after a completed step."""


class ClassificationLoss(CilPlugin):
    """Turns logits into the classification loss L_c; exactly one per strategy."""

    def classification_loss(self, strategy: Strategy, logits: torch.Tensor,
                            targets: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise TypeError("classification losses are called by the engine with the strategy")


# ------------------------------------------------------------------------------------------------
# Optional hooks
# ------------------------------------------------------------------------------------------------


@runtime_checkable
class AdjustsLogits(Protocol):
    def adjust_logits(self, strategy: Strategy, logits: torch.Tensor, targets: torch.Tensor,
                      record: bool) -> torch.Tensor:
        """Logits as the classification loss sees them in training (``record``: the real mini-batch,
        not a re-evaluation such as Meta BSCE's virtual step)."""


@runtime_checkable
class AdjustsScores(Protocol):
    def adjust_scores(self, strategy: Strategy, scores: torch.Tensor) -> torch.Tensor:
        """Post-hoc change of the evaluation scores [N, n_seen] of all test images of a step at once."""


@runtime_checkable
class EditsParamGroups(Protocol):
    def param_groups(self, strategy: Strategy, groups: list[dict], lr: float) -> list[dict]:
        """The optimizer's parameter groups for this step (e.g. frozen weights removed); what is left out
        is not trained, by the real step or by a virtual one (``trainable_parameter_groups``)."""


@runtime_checkable
class SamplesBatches(Protocol):
    def epoch_positions(self, strategy: Strategy) -> torch.Tensor:
        """Positions in ``strategy.train_set`` of one epoch's mini-batches, in order (repetitions allowed)."""

    def epoch_length(self, strategy: Strategy) -> int:
        """How many positions ``epoch_positions`` returns."""


@runtime_checkable
class CombinesGradients(Protocol):
    def backward(self, strategy: Strategy) -> None:
        """Compute the parameters' gradients from ``strategy.mb_output`` instead of ``loss.backward()``."""


@runtime_checkable
class NamesEvaluation(Protocol):
    evaluation_name: str
    """How this plugin makes predictions ("nme", "ncm", ...), recorded as the run's ``eval``."""


@dataclass(frozen=True)
class Hook:
    protocol: type
    at_most_one: bool
    what: str
    """What the plugins having this hook do, for the error when two of them cannot be combined."""

    @property
    def members(self) -> tuple[str, ...]:
        """The protocol's attributes, in declaration order: a plugin that has one of them must have all."""
        names = [*getattr(self.protocol, "__annotations__", {}), *vars(self.protocol)]
        return tuple(dict.fromkeys(n for n in names if not n.startswith("_")))


HOOKS: dict[str, Hook] = {
    "adjust_logits": Hook(AdjustsLogits, True, "adjust the training logits"),
    "adjust_scores": Hook(AdjustsScores, True, "adjust the evaluation scores"),
    "param_groups": Hook(EditsParamGroups, False, "edit the optimizer's parameter groups"),
    "epoch_positions": Hook(SamplesBatches, True, "choose the mini-batches"),
    "backward": Hook(CombinesGradients, True, "compute the gradients"),
    "evaluation_name": Hook(NamesEvaluation, True, "decide how predictions are made"),
}
"""Every optional hook by its attribute name; the engine looks up no other."""


class PluginHooks:
    """The plugins of a strategy sorted by the optional hooks they implement, checked once."""

    def __init__(self, plugins: list):
        self._by_hook: dict[str, list] = {}
        for name, hook in HOOKS.items():
            having = [p for p in plugins if any(hasattr(p, m) for m in hook.members)]
            if hook.at_most_one and len(having) > 1:
                names = " and ".join(type(p).__name__ for p in having)
                raise UserError(f"plugins {names} both {hook.what}; use one of them")
            for plugin in having:
                missing = [m for m in hook.members if not hasattr(plugin, m)]
                if missing:
                    present = [m for m in hook.members if m not in missing]
                    raise UserError(f"plugin {type(plugin).__name__} has {', '.join(present)} but not "
                                    f"{', '.join(missing)}; a plugin that does one needs all of them")
            self._by_hook[name] = having

    def all(self, hook: str) -> list:
        """Every plugin with ``hook``, in the strategy's plugin order."""
        return self._by_hook[hook]

    def one(self, hook: str):
        """The plugin with ``hook`` (None if none); only for hooks at most one plugin may have."""
        assert HOOKS[hook].at_most_one, hook
        having = self._by_hook[hook]
        return having[0] if having else None


def without_parameters(groups: list[dict], excluded) -> list[dict]:
    """Optimizer parameter groups with ``excluded`` parameters removed (frozen: no update, no decay)."""
    ids = {id(p) for p in excluded}
    return [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in groups]


def require_head(strategy: Strategy, head_type: type, method: str, head_name: str) -> None:
    """One clear error when a method runs with the wrong classifier head."""
    if not isinstance(strategy.model.head, head_type):
        raise UserError(f"{method} needs model.head: {head_name} (got {type(strategy.model.head).__name__})")

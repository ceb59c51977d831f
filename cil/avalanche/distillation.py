"""Distillation from the previous experience's model, as Avalanche plugins.

Both plugins keep a frozen copy of the model at the end of every training experience and, from the
second experience on, add their term to ``strategy.loss`` in ``before_backward`` (after the
criterion's loss is computed). Each runs the previous model once per mini-batch; using both runs it
twice.
"""

from __future__ import annotations

import copy
import math

import torch
from avalanche.core import SupervisedPlugin

from cil.strategies.cosine_head_method import embedding_distillation_loss
from cil.strategies.il_baseline import adaptive_rho, distillation_loss


class _PreviousModelPlugin(SupervisedPlugin):
    """Holds the previous experience's frozen model and the classes it had seen."""

    def __init__(self):
        super().__init__()
        self.previous_model: torch.nn.Module | None = None
        self.old_classes: list[int] = []

    def after_training_exp(self, strategy, **kwargs):
        self.release(strategy)
        self.previous_model = copy.deepcopy(strategy.model).eval()
        for p in self.previous_model.parameters():
            p.requires_grad_(False)
        self.old_classes = sorted(strategy.experience.classes_seen_so_far)
        self.previous_model_ready()

    def release(self, strategy) -> None:
        """Undo what the plugin attached to the current model (before it is copied)."""

    def previous_model_ready(self) -> None:
        """Attach what the plugin needs to the new ``previous_model``."""

    def new_classes(self, strategy) -> list[int]:
        return sorted(set(strategy.experience.classes_in_this_experience) - set(self.old_classes))


class LogitDistillationPlugin(_PreviousModelPlugin):
    """IL-Baseline's distillation (Jodelet et al., Eq. 1-2) for any classifier.

    L = rho * L_d + (1 - rho) * L_c, rho = N_{t-1} / N_t (classes seen before / after this
    experience) unless ``rho`` is given; L_d is the temperature-``T`` soft cross-entropy over the old
    classes' logits, times T^2. The (1 - rho) scales ``strategy.loss`` as it stands in
    ``before_backward``: list this plugin before others that add terms there, or pass
    ``weight_classification=False`` to only add rho * L_d.
    """

    def __init__(self, temperature: float = 2.0, rho: float | None = None, weight_classification: bool = True):
        super().__init__()
        if not temperature > 0 or (rho is not None and not 0 <= rho < 1):
            raise ValueError(f"need temperature > 0 and 0 <= rho < 1, got {temperature}, {rho}")
        self.temperature, self.rho, self.weight_classification = temperature, rho, weight_classification

    def current_rho(self, strategy) -> float:
        if self.rho is not None:
            return self.rho
        n_old = len(self.old_classes)
        return adaptive_rho(n_old, n_old + len(self.new_classes(strategy)))

    def before_backward(self, strategy, **kwargs):
        if self.previous_model is None or not self.old_classes:
            return
        old = torch.tensor(self.old_classes, device=strategy.device)
        with torch.no_grad():
            teacher = self.previous_model(strategy.mb_x)[:, old]
        rho = self.current_rho(strategy)
        term = distillation_loss(strategy.mb_output[:, old].float(), teacher.float(), self.temperature)
        base = (1.0 - rho) * strategy.loss if self.weight_classification else strategy.loss
        strategy.loss = base + rho * term


class PODFlatPlugin(_PreviousModelPlugin):
    """PODNet's POD-flat (Douillard et al. 2020): 1 - cos(h_prev, h) of a named layer's output.

    ``layer_name`` is a module of the model (as ``model.named_modules()`` names it) whose output is
    the embedding. The term is weighted ``weight * sqrt(N_seen / N_new)`` (PODNet's adaptive
    factor) unless ``adaptive=False``.
    """

    def __init__(self, layer_name: str, weight: float = 1.0, adaptive: bool = True):
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.layer_name, self.weight, self.adaptive = layer_name, weight, adaptive
        self._captured: dict[str, torch.Tensor] = {}
        self._hooks: list = []

    def _capture(self, model: torch.nn.Module, key: str):
        modules = dict(model.named_modules())
        if self.layer_name not in modules:
            raise ValueError(f"PODFlatPlugin: the model has no module '{self.layer_name}'")

        def hook(module, inputs, output):
            self._captured[key] = output.flatten(1)

        return modules[self.layer_name].register_forward_hook(hook)

    def before_training_exp(self, strategy, **kwargs):
        self._hooks.append(self._capture(strategy.model, "current"))

    def release(self, strategy) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def previous_model_ready(self) -> None:
        assert self.previous_model is not None
        self._capture(self.previous_model, "previous")

    def before_backward(self, strategy, **kwargs):
        if self.previous_model is None:
            return
        with torch.no_grad():
            self.previous_model(strategy.mb_x)
        factor = self.weight
        if self.adaptive:
            n_new = len(self.new_classes(strategy))
            factor *= math.sqrt((len(self.old_classes) + n_new) / n_new) if n_new else 1.0
        term = embedding_distillation_loss(self._captured["current"].float(), self._captured["previous"].float())
        strategy.loss = strategy.loss + factor * term

    def after_training(self, strategy, **kwargs):
        self.release(strategy)

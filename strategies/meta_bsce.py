"""Meta Balanced Softmax CE: alpha of Eq. 5 learned during training (Jodelet et al., Sec. 3.3, Algorithm 1).

At the start of every incremental step alpha is reset to ``alpha_init`` (1.0) and the training
set (new data + memory) is split into D_t and a class-balanced validation set B_t holding
``validation_per_class`` samples of every seen class, new ones included (default: 10% of the
smallest per-class memory quota, at least 1: 2 images for a memory of 20). B_t is taken out of
D_t, so the n_i of Eq. 5 are counted on D_t. Every ``update_every`` optimisation steps, on the
current mini-batch (X, Y) of D_t:

    theta* = theta - lr * grad_theta BalancedLoss(Z(theta, X), Y; alpha)      (virtual step)
    alpha <- alpha - meta_lr * grad_alpha CE(Z(theta*, Xbar), Ybar)           (Xbar, Ybar) ~ B_t

then the real update of theta uses BalancedLoss with the new alpha. BalancedLoss is the whole
training loss of the engine (BSCE on Eq. 5's weights plus the method's distillation terms),
theta the parameters the real step trains, each at its group's current learning rate (the
optimizer's parameter groups: LUCIR's and PODNet's frozen old-class weights stay fixed in the
virtual step as in the real one), CE the standard softmax CE.

The alpha update is Algorithm 1's by default (``alpha_update: alpha``): a plain gradient step of
``meta_lr`` (1.0, the algorithm's unit step) on alpha itself. Algorithm 1 does not say what happens
when a step would take alpha to 0 or below, where Eq. 5's old-class weights stop being counts (the
log of a weight <= 0 is undefined); cil stops alpha at ``alpha_min`` (1e-4) there. ``alpha_update:
log-alpha`` learns log(alpha) instead (alpha stays positive by construction; at alpha = 1 the step
equals Algorithm 1's, below 1 it moves alpha about alpha times less: from 0.7, a step Algorithm 1 takes
to 0.700315 takes it to 0.700155). B_t is read with
the evaluation transform. The base step has no old classes, so alpha has no effect there and is
not learned (plain BSCE on the whole training set). alpha at the end of each step and of each
epoch is written to results.json (``alpha``, ``alpha_per_epoch``), with the number of updates. Needs a
memory of at least 2 per class. On imbalanced data (``data.imbalance``) the counts n_i are the true, uneven ones
and B_t stays class-balanced as Sec. 3.3 asks, its size set by the smallest old class (1 image per class once a
class has fewer than 15 exemplars); a profile leaving a class fewer images than B_t takes plus one is refused
before any data loads.

Precision: the virtual step runs under the run's bf16 autocast; with fp16 it computes in fp32,
since fp16 gradients need a loss scale that cannot be carried through the differentiable step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from cil.strategies.bsce import balanced_softmax_cross_entropy, old_class_weighted_counts

from cil.plugin import (
    Batch,
    ClassificationLoss,
    ComponentConfig,
    Engine,
    IncompatibleConfigError,
    RunConfig,
    TrainingSet,
    UserError,
    ranged,
    register,
)
from cil.training.virtual_step import validation_loss_after_virtual_step


@dataclass
class MetaBSCEConfig(ComponentConfig):
    name: str = "meta-bsce"
    alpha_init: float = ranged(1.0, gt=0)
    """alpha at the start of every incremental step (Algorithm 1: 1.0)."""
    validation_fraction: float = ranged(0.1, gt=0, lt=1)
    """|B_t| per class as a fraction of the memory per class (paper: 10%, 2 images for 20)."""
    validation_per_class: int | None = ranged(None, ge=1, le=100_000)
    """|B_t| per class in images; overrides ``validation_fraction``."""
    update_every: int = ranged(10, ge=1, le=100_000)
    """alpha is updated every this many optimisation steps (paper: 10)."""
    meta_lr: float = ranged(1.0, gt=0)
    """SGD step size of the alpha update (Algorithm 1: 1.0)."""
    alpha_update: Literal["alpha", "log-alpha"] = "alpha"
    """``alpha``: Algorithm 1's gradient step on alpha; ``log-alpha``: the step is taken on log(alpha)."""
    alpha_min: float = ranged(1e-4, gt=0, le=1)
    """With ``alpha_update: alpha``, alpha is stopped here when a step would take it to 0 or below."""

    def validate_with(self, run: RunConfig, prefix: str) -> None:
        if run.memory.budget is None and run.memory.per_class < 2:
            raise IncompatibleConfigError(
                f"{prefix} {self.name} needs a memory of at least 2 exemplars per class (B_t is drawn from it; "
                "Jodelet et al., Sec. 3.4): use --memory N with N >= 2, or bsce / relaxed-bsce"
            )
        smallest = smallest_class(run)
        needed = (self.validation_per_class or 1) + 1
        if smallest is not None and smallest < needed:
            raise IncompatibleConfigError(
                f"{prefix} {self.name} holds {needed - 1} image(s) of every class out of its training set as the "
                f"balanced B_t, but {run.data.imbalance} leaves a class {smallest} training image(s): use a "
                "smaller imbalance factor, or bsce"
            )
        if run.memory.budget is not None:
            old = most_old_classes(run)
            if old and run.memory.budget // old < 2:
                raise IncompatibleConfigError(
                    f"{prefix} {self.name} needs a memory of at least 2 exemplars per class (B_t is drawn from it; "
                    f"Jodelet et al., Sec. 3.4): a fixed budget of {run.memory.budget} leaves "
                    f"{run.memory.budget // old} per class for the {old} old classes of the last step; use "
                    f"--memory-budget {2 * old} or more, or bsce / relaxed-bsce"
                )


def smallest_class(run: RunConfig) -> int | None:
    """The fewest training images of a class an imbalanced run will have (None: a balanced run, or a dataset
    counted only when it loads)."""
    from cil.data import DATASETS, parse_scenario, planned_train_counts, scenario_plan

    if run.data.imbalance is None or DATASETS[parse_scenario(run.scenario)[0].dataset].takes_lists:
        return None
    plan = scenario_plan(run.scenario, run.data, run.class_order_seed)
    return min(planned_train_counts(parse_scenario(run.scenario)[1], run.data, plan))


def most_old_classes(run: RunConfig) -> int | None:
    """Old classes at the scenario's last step (the most a fixed memory is split into while B_t is
    drawn from it); None when counting the classes needs data that is not there (checked at run time)."""
    from cil.data import scenario_plan

    try:
        plan = scenario_plan(run.scenario, run.data, run.class_order_seed)
    except UserError:
        return None
    return plan.n_classes - len(plan.step_classes[-1])


@register("loss", "meta-bsce", MetaBSCEConfig)
class MetaBalancedSoftmaxCE(ClassificationLoss[MetaBSCEConfig]):
    def __init__(self, config: MetaBSCEConfig):
        super().__init__(config)
        self.learned = torch.ones(())
        """The learned variable: alpha (``alpha_update: alpha``) or log(alpha) (``log-alpha``)."""
        self.validation_set: TrainingSet | None = None
        self.updates = 0
        self._counts: tuple[object, torch.Tensor] | None = None
        self._validation_batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def in_log_space(self) -> bool:
        return self.config.alpha_update == "log-alpha"

    def alpha_of(self, learned: torch.Tensor) -> torch.Tensor:
        """alpha from the learned variable (differentiable)."""
        return learned.exp() if self.in_log_space else learned

    @property
    def alpha(self) -> float:
        return float(self.alpha_of(self.learned))

    def validation_size_per_class(self, engine: Engine) -> int:
        if self.config.validation_per_class is not None:
            return self.config.validation_per_class
        old_counts = engine.train_class_counts[: engine.n_old]
        if len(old_counts) == 0 or float(old_counts.min()) < 2:
            raise UserError(
                "meta-bsce needs a memory of at least 2 exemplars per class (B_t is drawn from it); "
                "use --memory N with N >= 2, or bsce / relaxed-bsce without memory"
            )
        return max(1, round(self.config.validation_fraction * float(old_counts.min())))

    def before_step(self, engine: Engine) -> None:
        self.validation_set, self._validation_batches, self.updates = None, None, 0
        alpha = torch.tensor(float(self.config.alpha_init), device=engine.device)
        self.learned = alpha.log() if self.in_log_space else alpha
        if engine.n_old == 0:
            return
        self.validation_set = engine.hold_out(self.validation_size_per_class(engine))  # B_t; D_t stays

    def class_weights(self, engine: Engine, learned: torch.Tensor) -> torch.Tensor:
        """lambda of Eq. 5 with the alpha of ``learned``; counts of D_t, counted once per training set."""
        if self._counts is None or self._counts[0] is not engine.train_set:
            self._counts = (engine.train_set, engine.train_class_counts)
        return old_class_weighted_counts(self._counts[1], engine.n_old, self.alpha_of(learned))

    def before_epoch(self, engine: Engine) -> None:
        self.class_weights(engine, self.learned)  # counted before the first batch, not in it

    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return balanced_softmax_cross_entropy(logits, targets, self.class_weights(engine, self.learned))

    def sample_losses(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weights = self.class_weights(engine, self.learned)
        return balanced_softmax_cross_entropy(logits, targets, weights, reduction="none")

    def validation_batch(self, engine: Engine) -> tuple[torch.Tensor, torch.Tensor]:
        """The next mini-batch of B_t (evaluation transform), cycling through B_t in random order."""
        assert self.validation_set is not None, "B_t is held out in before_step"
        while True:
            if self._validation_batches is None:
                order = torch.randperm(len(self.validation_set), generator=engine.data_generator)
                self._validation_batches = engine.evaluation_batches(self.validation_set.subset(order))
            batch = next(self._validation_batches, None)
            if batch is not None:
                return batch
            self._validation_batches = None

    def before_batch(self, engine: Engine, batch: Batch) -> Batch:
        if self.validation_set is not None and engine.batch_index % self.config.update_every == 0:
            self.update_alpha(engine, batch)
        return batch

    def update_alpha(self, engine: Engine, batch: Batch) -> None:
        """One step of Algorithm 1 on alpha for the current mini-batch."""
        x_val, y_val = self.validation_batch(engine)
        self.learned = self.learned.detach().requires_grad_(True)  # the loss now depends on it
        with engine.runtime.autocast(allow_fp16=False):  # no loss scaling through the virtual step
            val_loss = validation_loss_after_virtual_step(
                engine.model,
                lambda out: engine.training_loss(out, batch.y)[0],
                batch.x,
                lambda out: F.cross_entropy(out.logits, y_val),
                x_val,
                engine.trainable_parameter_groups(),
            )
        (grad,) = torch.autograd.grad(val_loss, [self.learned])
        engine.average_across_processes([grad])  # the same alpha on every rank of a data-parallel run
        self.learned = self.step(self.learned.detach(), grad)
        self.updates += 1
        engine.epoch_scalars["alpha"] = self.alpha_of(self.learned)  # read once per epoch, not per update

    def step(self, learned: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The learned variable after one gradient step of ``meta_lr`` (Algorithm 1, line 8)."""
        moved = learned - self.config.meta_lr * grad
        return moved if self.in_log_space else moved.clamp_min(self.config.alpha_min)

    def after_epoch(self, engine: Engine) -> None:
        if self.validation_set is not None:
            engine.step_record.setdefault("alpha_per_epoch", []).append(round(self.alpha, 6))

    def after_training(self, engine: Engine) -> None:
        if self.validation_set is not None:
            engine.step_record["alpha"] = round(self.alpha, 6)
            engine.step_record["alpha_updates"] = self.updates
            engine.step_record["validation_per_class"] = len(self.validation_set) // engine.n_seen

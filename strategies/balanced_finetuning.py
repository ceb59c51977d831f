"""Class-balanced finetuning after each incremental step (Castro et al. 2018; used by LUCIR on
ImageNet and by PODNet; Jodelet et al., Table 6 'balanced finetuning').

After the memory update of step t >= 1, the model trains for a few epochs on a class-balanced
set: the exemplars of every seen class (the memory quota per class, or ``per_class`` of them),
with the training augmentation and the engine's classification loss alone, at a constant
learning rate unless ``milestones`` say otherwise, clamping gradients as the run does
(``optim.grad_clamp``). With ``classifier_only`` (the default, as LUCIR and PODNet), only the
classifier's weights are trained; ``tune_scale`` says whether a cosine head's learned scale is
trained with them. ``update_bn`` leaves the frozen backbone in training mode, so that its
BatchNorm layers normalise with batch statistics and re-estimate their running statistics on the
balanced set; without it the backbone runs in evaluation mode and nothing in it moves.

The official PODNet code (``finetuning_config``: tuning ``classifier``, 20 epochs, lr 0.05, no
schedule) trains every class's proxies but not the learned scale, which is outside its
classifier, with the whole network in training mode: ``tune_scale: false, update_bn: true``
in ``configs/strategies/podnet.yaml``.

EEIL's balanced finetuning (Castro et al. 2018, Sec. 3.3) trains the whole network
(``classifier_only: false``) and adds a temporary distillation (``distill_new: true``) that keeps
the new classes from being forgotten: the new classes' logits are distilled, with temperature
``temperature``, from the model as it was when the finetuning started. EEIL's own code
(``incremental_training.m``, ``fork_resnet_distillation.m``) also keeps every old step's distillation, from
that same model (``distill_old_steps``), without the T^2 factor (``squared_temperature: false``), over 12
augmented copies of the balanced set (``copies: 12``); SS-IL's re-implementation distils the new classes only,
with T^2, over one copy.

The official LUCIR code (``--cb_finetune``, full ImageNet only) trains every class's weights with the
backbone and its BatchNorm statistics fixed, keeps the scale sigma out of the optimizer, and trains
with LUCIR's whole loss: ``tune_scale: false, strategy_loss: true`` in the ``imagenet-full`` profile of
``configs/strategies/lucir.yaml`` (the less-forget term moves nothing there, since it depends on the
frozen features only; the margin ranking term does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from cil.strategies.augmented_copies import repeated_positions
from cil.strategies.task_distillation import task_wise_distillation

from cil.plugin import (
    CilPlugin,
    ComponentConfig,
    Engine,
    NetOutput,
    StageLoss,
    TrainingStage,
    milestones_field,
    ranged,
    register,
)


def balanced_subset(indices: torch.Tensor, labels: torch.Tensor, per_class: int | None) -> torch.Tensor:
    """Positions of the first ``per_class`` samples of every class (all when None), in input order."""
    if per_class is None:
        return torch.arange(len(labels))
    keep = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in labels.unique()])
    return keep.sort().values


@dataclass
class BalancedFinetuningConfig(ComponentConfig):
    name: str = "balanced-finetuning"
    epochs: int = ranged(20, ge=1, le=100_000)
    lr: float = ranged(0.05, gt=0)
    milestones: list[int] = milestones_field()
    """Epochs at which the learning rate is divided by 10 (LUCIR: [10]; PODNet: none)."""
    classifier_only: bool = True
    tune_scale: bool = True
    """Train a cosine head's learned scale with the class weights (PODNet's code: no)."""
    update_bn: bool = False
    """Backbone in training mode: BatchNorm uses and re-estimates batch statistics (PODNet's code: yes)."""
    per_class: int | None = ranged(None, ge=1)
    """Samples per class of the balanced set (None: every exemplar, i.e. the memory quota)."""
    distill_new: bool = False
    """EEIL's temporary distillation of the new classes' logits from the model before the finetuning."""
    distill_old_steps: bool = False
    """With ``distill_new``: every old step's logits distilled as well, each step with its own softmax, from the
    same model (EEIL's MatConvNet code keeps every step's distillation loss during the finetuning)."""
    temperature: float = ranged(2.0, gt=0)
    """T of that distillation (EEIL: 2)."""
    squared_temperature: bool = True
    """Multiply that distillation by T^2 (SS-IL's re-implementation of EEIL does; EEIL's own code does not)."""
    copies: int = ranged(1, ge=1, le=1000)
    """Draws of every balanced-set image per epoch, each augmented anew (EEIL's code: 12 augmented copies)."""
    strategy_loss: bool = False
    """Train with the strategy's whole training loss (its classification loss and every method term, e.g.
    LUCIR's less-forget and margin ranking terms) instead of the classification loss alone (LUCIR's code)."""

    def check_steps(self, step_sizes: list[int], prefix: str) -> list[str]:
        single = [step for step, size in enumerate(step_sizes) if step > 0 and size == 1]
        if not (self.distill_new and single):
            return []
        return [
            f"{prefix} balanced-finetuning: the distillation of a step's new classes is 0 where the step learns one "
            f"class (step{'s' if len(single) > 1 else ''} {', '.join(map(str, single))}): a softmax over one logit "
            "is constant"
        ]


@register("plugin", "balanced-finetuning", BalancedFinetuningConfig)
class BalancedFinetuning(CilPlugin[BalancedFinetuningConfig]):
    posthoc_correction = "balanced-finetuning"

    def after_training(self, engine: Engine) -> None:
        if engine.n_old == 0:
            return
        memory = engine.memory_set
        if len(memory) == 0:  # exemplar-free: there is no balanced set to finetune on
            engine.step_record["balanced_finetuning"] = "skipped: no exemplars (memory 0)"
            return
        cfg = self.config
        balanced = memory.subset(balanced_subset(memory.indices, memory.labels, cfg.per_class))
        model = engine.model
        frozen = [] if cfg.tune_scale else [getattr(model.head, "scale", None)]
        params: list[torch.Tensor] = [
            p
            for p in (model.head if cfg.classifier_only else model).parameters()
            if p.requires_grad and not any(p is f for f in frozen)
        ]
        losses = engine.train_on(
            TrainingStage(
                "balanced-finetuning",
                balanced,
                params,
                epochs=cfg.epochs,
                lr=cfg.lr,
                milestones=list(cfg.milestones),
                frozen_backbone=cfg.classifier_only,
                backbone_train_mode=cfg.update_bn,
                loss=self.stage_loss(engine),
                teacher=cfg.distill_new,
                epoch_positions=self.repeated_order(engine, len(balanced)),
            )
        )
        trained = {k: v for k, v in losses.items() if k != "new_distillation"}  # what the stage trains on
        engine.step_record["balanced_finetuning"] = {
            "n_train": len(balanced),
            "epochs": cfg.epochs,
            "final_epoch_loss": sum(trained.values()),
        }
        if cfg.strategy_loss:
            engine.step_record["balanced_finetuning"]["final_epoch_parts"] = trained
        if cfg.distill_new:
            engine.step_record["balanced_finetuning"]["final_epoch_distillation"] = losses.get("new_distillation", 0.0)

    def repeated_order(self, engine: Engine, n: int) -> Callable[[], torch.Tensor] | None:
        """An epoch of ``copies`` draws of every image, or None: one pass in a random order (the stage's default)."""
        copies = self.config.copies
        if copies == 1:
            return None
        return lambda: repeated_positions(n, copies, engine.data_generator)

    def stage_loss(self, engine: Engine) -> StageLoss | None:
        """The classification loss (None: the stage's default) or the strategy's whole loss, plus EEIL's temporary
        distillation of the new classes' logits when ``distill_new``."""
        cfg, n_old = self.config, engine.n_old
        if not (cfg.distill_new or cfg.strategy_loss):
            return None
        old_steps = engine.step_classes[: engine.step]

        def loss(output: NetOutput, targets: torch.Tensor, teacher: NetOutput | None) -> dict[str, torch.Tensor]:
            if cfg.strategy_loss:
                terms = dict(engine.training_loss(output, targets)[1])  # classification, less_forget, ...
            else:
                terms = {"loss": engine.classification_loss(output, targets)}
            if cfg.distill_new:
                assert teacher is not None, "the stage keeps a teacher"
                steps = [list(range(n_old, output.logits.shape[1]))]
                if cfg.distill_old_steps:
                    steps = old_steps + steps
                terms["new_distillation"] = task_wise_distillation(
                    output.logits.float(), teacher.logits.float(), steps, cfg.temperature, cfg.squared_temperature
                )
            return terms

        return loss

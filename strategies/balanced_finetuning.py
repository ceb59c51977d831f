"""Class-balanced finetuning after each incremental step (Castro et al. 2018; used by LUCIR on
ImageNet and by PODNet; Jodelet et al., Table 6 'balanced finetuning').

After the memory update of step t >= 1, the model trains for a few epochs on a class-balanced
set: the exemplars of every seen class (the memory quota per class, or ``per_class`` of them),
with the training augmentation and the strategy's classification loss alone, at a constant
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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cil.config import ComponentConfig, ranged
from cil.training.training_set import TrainingSet
from cil.training.epoch_losses import EpochLosses
from cil.plugin import CilPlugin
from cil.registry import register


def balanced_subset(indices: torch.Tensor, labels: torch.Tensor, per_class: int | None) -> torch.Tensor:
    """Positions of the first ``per_class`` samples of every class (all when None), in input order."""
    if per_class is None:
        return torch.arange(len(labels))
    keep = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in labels.unique()])
    return keep.sort().values


@dataclass
class BalancedFinetuningConfig(ComponentConfig):
    name: str = "balanced-finetuning"
    epochs: int = ranged(20, ge=1)
    lr: float = ranged(0.05, gt=0)
    milestones: list[int] = field(default_factory=list)
    """Epochs at which the learning rate is divided by 10 (LUCIR: [10]; PODNet: none)."""
    classifier_only: bool = True
    tune_scale: bool = True
    """Train a cosine head's learned scale with the class weights (PODNet's code: no)."""
    update_bn: bool = False
    """Backbone in training mode: BatchNorm uses and re-estimates batch statistics (PODNet's code: yes)."""
    per_class: int | None = ranged(None, ge=1)
    """Samples per class of the balanced set (None: every exemplar, i.e. the memory quota)."""


@register("plugin", "balanced-finetuning", BalancedFinetuningConfig)
class BalancedFinetuning(CilPlugin):
    def after_training_exp(self, strategy, **kwargs):
        if strategy.n_old == 0:
            return
        memory = strategy.memory_set
        if len(memory) == 0:  # exemplar-free: there is no balanced set to finetune on
            strategy.step_record["balanced_finetuning"] = "skipped: no exemplars (memory 0)"
            return
        cfg = self.config
        keep = balanced_subset(memory.indices, memory.labels, cfg.per_class)
        balanced = TrainingSet(memory.indices[keep], memory.labels[keep])
        model, runtime = strategy.model, strategy.runtime
        frozen = [] if cfg.tune_scale else [getattr(model.head, "scale", None)]
        params = [p for p in (model.head if cfg.classifier_only else model).parameters()
                  if p.requires_grad and not any(p is f for f in frozen)]
        optim = strategy.optim_config
        optimizer = runtime.sgd(params, lr=cfg.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, 0.1)
        scaler = runtime.loss_scaler()
        losses = EpochLosses()
        with strategy.training_on(balanced):  # count-based losses see the balanced counts
            for _ in range(cfg.epochs):
                model.train()
                if cfg.classifier_only and not cfg.update_bn:
                    model.backbone.eval()
                losses = EpochLosses()
                for x, y in strategy.training_batches(balanced, strategy.train_mb_size):
                    if cfg.classifier_only:
                        with torch.no_grad(), runtime.autocast():
                            features = model.backbone(x).features.float()
                        logits = model.head(features)
                    else:
                        with runtime.autocast():
                            logits = model(x).logits  # the head computes in fp32
                    loss = strategy.loss_plugin.classification_loss(strategy, logits, y)
                    optimizer.zero_grad()
                    scaler.backward(loss)
                    strategy.average_gradients(optimizer)
                    scaler.step(optimizer, clamp=optim.grad_clamp)
                    losses.add({"loss": loss})
                scheduler.step()
        model.train()
        last = losses.means().get("loss", 0.0)
        strategy.step_record["balanced_finetuning"] = {"n_train": len(balanced), "epochs": cfg.epochs,
                                                       "final_epoch_loss": last}

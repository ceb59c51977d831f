"""Learnable weight scaling after every step: the second stage of Liu et al.'s long-tailed class-incremental
learning (*Long-Tailed Class Incremental Learning*, ECCV 2022, Sec. 4; Kang et al. 2020's LWS), as a plugin for
any method.

After a step's training and memory update, a second stage on the step's training set (its new data and the
exemplars) with class-balanced sampling: the backbone frozen (evaluation mode, features without gradient), the
classifier's trainable weights and one scale per class s_c (initialised to 1, kept over the steps) trained with
the cross-entropy of the scaled logits

    z'_c = s_c z_c                                                                              (LWS)

for ``epochs`` (30) at ``lr`` (0.1; the scales at lr / 10) annealed by a cosine to 0, momentum and weight decay
the run's. Evaluation scores are the scaled logits; the unscaled ones are reported as the classifier's accuracy.
Facts from the authors' code (github xialeiliu/Long-Tailed-CIL, src/approach/lucir_2stage.py: ``stage2epoch``
30, ``adjust_learning_rate_stage_2``, ``LearnableWeightScaling`` in LAS_utils.py, ``ClassAwareSampler``):
the classifier trained is the one the method trains (LUCIR and PODNet: the new classes' weights only, their
less-forget setting), the loss plain cross-entropy on the scaled logits, no distillation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil.plugin import CilPlugin, ComponentConfig, Engine, NetOutput, TrainingStage, ranged, register


def scaled_logits(logits: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """z'_c = s_c z_c for the first ``logits.shape[1]`` classes."""
    return logits * scales[: logits.shape[1]]


def class_aware_positions(labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` positions: classes in turn from successive random orders of the classes present, each class's
    samples in turn from successive random orders of its own (Shen et al. 2016's class-aware sampler, as
    Long-Tailed-CIL's ``ClassAwareSampler``): every class equally often, whatever its size."""
    classes = labels.unique()
    members = [torch.nonzero(labels == c).flatten() for c in classes.tolist()]
    rounds = -(-count // len(classes))
    turns = torch.cat([torch.randperm(len(classes), generator=generator) for _ in range(rounds)])[:count]
    drawn = torch.bincount(turns, minlength=len(classes)).tolist()
    picks = []
    for samples, times in zip(members, drawn):
        repeats = -(-times // len(samples)) if times else 0
        order = [samples[torch.randperm(len(samples), generator=generator)] for _ in range(repeats)]
        picks.append(torch.cat(order)[:times] if order else samples[:0])
    positions = torch.empty(count, dtype=torch.long)
    positions[torch.sort(turns, stable=True).indices] = torch.cat(picks)  # each turn takes its class's next sample
    return positions


@dataclass
class LWSConfig(ComponentConfig):
    name: str = "lws"
    epochs: int = ranged(30, ge=1, le=100_000)
    """Epochs of the second stage (Long-Tailed-CIL: 30)."""
    lr: float = ranged(0.1, gt=0)
    """Learning rate of the classifier's weights (Long-Tailed-CIL: the method's lr, 0.1), cosine-annealed to 0."""
    scale_lr_factor: float = ranged(0.1, gt=0, le=1)
    """The scales learn at lr * this (Long-Tailed-CIL: 1 / lr_factor = 1/10)."""
    train_classifier: bool = True
    """Train the method's trainable classifier weights with the scales (Long-Tailed-CIL); false: scales only."""


@register("plugin", "lws", LWSConfig)
class LearnableWeightScaling(CilPlugin[LWSConfig]):
    def __init__(self, config: LWSConfig):
        super().__init__(config)
        self.scales = torch.ones(0)

    def after_training(self, engine: Engine) -> None:
        grown = torch.ones(engine.n_seen, device=engine.device)
        grown[: len(self.scales)] = self.scales.to(engine.device)
        self.scales = grown.requires_grad_(True)
        head = {id(p) for p in engine.model.head.parameters()}
        classifier = (
            [p for group in engine.trainable_parameter_groups() for p in group["params"] if id(p) in head]
            if self.config.train_classifier
            else []
        )
        scales = self.scales

        def loss(output: NetOutput, targets: torch.Tensor, teacher: NetOutput | None) -> dict[str, torch.Tensor]:
            return {"lws": F.cross_entropy(scaled_logits(output.logits, scales), targets)}

        data = engine.train_set
        terms = engine.train_on(
            TrainingStage(
                name="lws",
                training_set=data,
                parameters=classifier,
                slow_parameters=[scales],
                slow_factor=self.config.scale_lr_factor,
                epochs=self.config.epochs,
                lr=self.config.lr,
                schedule="cosine",
                loss=loss,
                epoch_positions=lambda: class_aware_positions(data.labels.cpu(), len(data), engine.data_generator),
            )
        )
        self.scales = scales.detach()
        engine.step_record["lws_final_loss"] = round(terms.get("lws", float("nan")), 4)
        engine.step_record["lws_scale_range"] = [round(float(self.scales.min()), 4), round(float(self.scales.max()), 4)]

    def adjust_scores(self, engine: Engine, scores: torch.Tensor) -> torch.Tensor:
        return scaled_logits(scores, self.scales.to(scores.device)) if len(self.scales) else scores

    def state_dict(self) -> dict:
        return {"scales": self.scales.detach().cpu()}

    def load_state_dict(self, state: dict, engine: Engine) -> None:
        self.scales = state["scales"].clone()

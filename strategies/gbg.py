"""Gradient-Balanced Grouping (GBG paper, Algorithms 1 and 2), as a plugin for any method.

Algorithm 1, at the first epoch of every step (or after ``group_after`` of its epochs): the average gradient
of each seen class, taken with respect to every trainable parameter (``class_gradients: all``, the paper's
theta; ``head``: the classifier's only), on up to ``samples_per_class`` training
images of the class (evaluation transform, BatchNorm in evaluation mode, the engine's
classification loss); their cosine similarity matrix A (Eq. 7); the classes split into G groups
by normalised cut (Shi and Malik 2000; spectral clustering on the affinity (1 + A) / 2, which is
A mapped to [0, 1]). ``grouping: old-new`` uses two fixed groups, old and new classes, instead.

Algorithm 2, every mini-batch: one classification loss per group present in the batch (the mean
over that group's samples), one gradient of each with respect to all trainable parameters, the
MGDA min-norm weights a (Eq. 11, strategies/min_norm.py) and the update direction
d = sum_i a_i g_i (Eq. 12). As in Sener and Koltun's MGDA code, the weights are solved on normalised gradients
(``normalization``, default loss+: g_i / (L_i ||g_i||)) and applied to the raw ones; solved on the raw gradients,
d is the min-norm point itself, near zero as soon as the groups conflict, and the network stops learning. The
method's other loss terms (distillation) are not part of the multi-objective problem: their gradient is added to
d unchanged.

Group-Aware Completion (GAC): a mini-batch missing a group gets ceil(completion * B) extra
samples of that group, classes drawn with the class-balanced weight (1 - b) / (1 - b^{n_c})
(Cui et al. 2019, b = ``class_balanced_beta``), images with the training augmentation.

Cost: G + 1 backward passes per mini-batch instead of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from cil.strategies.min_norm import min_norm_weights

from cil.plugin import (
    Batch,
    CilPlugin,
    ComponentConfig,
    Engine,
    IncompatibleConfigError,
    NetOutput,
    RunConfig,
    ranged,
    register,
)


def cosine_similarity_matrix(gradients: torch.Tensor) -> torch.Tensor:
    """A = V V^T / (|V| |V|^T) for class gradients V [C, P] (GBG paper, Eq. 7)."""
    unit = gradients / gradients.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return unit @ unit.t()


def normalized_cut_groups(similarity: torch.Tensor, n_groups: int, seed: int) -> np.ndarray:
    """Group index of every class: the normalised cut (Shi and Malik 2000) of the affinity W = (1 + A) / 2
    (A mapped to [0, 1], no self-loops), as scikit-learn's ``SpectralClustering`` computes it: the leading
    eigenvectors of the normalised Laplacian, then k-means (10 restarts, seeded).

    The hand-written Ng-Jordan-Weiss variant cil used before gives the same partition whenever the class
    gradients form groups (identical on 100 of 100 generated clusterable cases); on gradients without any
    structure the two relaxations may split differently, and none of those splits is more right.
    """
    n = similarity.shape[0]
    if n_groups >= n:
        return np.arange(n)
    if n_groups == 1:
        return np.zeros(n, dtype=int)
    from sklearn.cluster import SpectralClustering

    affinity = ((1 + similarity.double().cpu()) / 2).clamp(0, 1).numpy()
    np.fill_diagonal(affinity, 0)
    clustering = SpectralClustering(
        n_clusters=n_groups, affinity="precomputed", assign_labels="kmeans", n_init=10, random_state=seed
    )
    return clustering.fit_predict(affinity).astype(int)


def grouping_epoch(group_after: float, epochs: int) -> int:
    """The (0-based) epoch of a step at whose start the classes are grouped: ``int(group_after * epochs)``."""
    return int(group_after * epochs)


def gradient_normalizers(gradients: torch.Tensor, losses: torch.Tensor, mode: str) -> torch.Tensor:
    """[G, 1] divisors of the group gradients [G, P] before the min-norm problem (Sener and Koltun's code):
    ``l2`` ||g_i||, ``loss`` L_i, ``loss+`` L_i ||g_i||, ``none`` 1."""
    norms = gradients.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values = losses.to(gradients.dtype).view(-1, 1).clamp_min(1e-12)
    if mode == "l2":
        return norms
    if mode == "loss":
        return values
    if mode == "loss+":
        return values * norms
    return torch.ones_like(norms)


def class_balanced_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """(1 - b) / (1 - b^{n_c}) of Cui et al. (2019); zero for classes without samples."""
    counts = counts.double()
    weights = (1 - beta) / (1 - beta**counts).clamp_min(1e-12)
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


@dataclass
class GBGConfig(ComponentConfig):
    name: str = "gbg"
    groups: int = ranged(4, ge=1, le=1000)
    """G, the number of groups of the normalised cut (GBG paper default)."""
    grouping: Literal["ncut", "old-new"] = "ncut"
    samples_per_class: int = ranged(50, ge=1, le=100_000)
    """Training images per class for the class-average gradients of Algorithm 1."""
    completion: float = ranged(0.1, ge=0, le=1)
    """GAC: a missing group is filled with this fraction of the batch size (GBG paper: 1/10)."""
    class_balanced_beta: float = ranged(0.999, ge=0, lt=1)
    class_gradients: Literal["all", "head"] = "all"
    """Algorithm 1's class gradients w.r.t. every trainable parameter (theta, as the paper writes) or the classifier
    head's only (cil's choice before; on a random network the head's gradients of all classes are nearly alike, and
    the normalised cut then splits off single classes)."""
    group_after: float = ranged(0.0, ge=0, lt=1)
    """Fraction of each step's epochs trained plainly before Algorithm 1 groups the classes on the model as it is
    then (0: on the model the step starts with, as Algorithm 1 on an initialised model; Algorithm 1 allows a
    pretrained one: the gradients of a random network hardly tell classes apart, so the cut is arbitrary)."""
    normalization: Literal["loss+", "l2", "loss", "none"] = "loss+"
    """How each group's gradient is normalised before the min-norm weights are solved (Sener and Koltun's
    ``gradient_normalizers``; their code's default, sample.json: loss+, i.e. g / (L ||g||)); the update is then
    sum_i a_i g_i of the raw gradients, as in their code. ``none`` makes d the min-norm point itself, which is
    (near) zero whenever the groups' gradients conflict: training stalls (the collapse to one class)."""

    def validate_with(self, run: RunConfig, prefix: str) -> None:
        if run.runtime.compile:
            raise IncompatibleConfigError(
                f"{prefix} gbg differentiates one loss per group through the same graph (retain_graph), which a "
                "compiled backbone does not allow: use runtime.compile=false with gbg"
            )


@register("plugin", "gbg", GBGConfig)
class GradientBalancedGrouping(CilPlugin[GBGConfig]):
    data_parallel = False  # its own backward per group: not averaged across ranks yet

    def __init__(self, config: GBGConfig):
        super().__init__(config)
        self.group_of = torch.zeros(0, dtype=torch.long)
        self.weight_sums = torch.zeros(0, dtype=torch.float64)
        self.batches = 0

    # ------------------------------------------------------------ Algorithm 1: grouping

    def before_epoch(self, engine: Engine) -> None:
        if engine.epoch == 0:
            self.group_of = torch.zeros(0, dtype=torch.long)  # a new step: plain training until grouped
        if engine.epoch == grouping_epoch(self.config.group_after, engine.train_epochs):
            self.group_of = self.make_groups(engine)
            n_groups = int(self.group_of.max()) + 1
            self.weight_sums, self.batches = torch.zeros(n_groups, dtype=torch.float64), 0

    def make_groups(self, engine: Engine) -> torch.Tensor:
        n = engine.n_seen
        if self.config.grouping == "old-new":
            return (torch.arange(n) >= engine.n_old).long() if engine.n_old > 0 else torch.zeros(n, dtype=torch.long)
        gradients = self.class_gradients(engine)
        groups = normalized_cut_groups(cosine_similarity_matrix(gradients), self.config.groups, seed=engine.step)
        return torch.as_tensor(groups, dtype=torch.long)

    def class_gradients(self, engine: Engine) -> torch.Tensor:
        """V [n_seen, P]: each class's average gradient of the classification loss w.r.t. the trainable parameters
        (``class_gradients: all``, Algorithm 1's theta) or the head's only."""
        model, data = engine.model, engine.train_set
        source = model.head if self.config.class_gradients == "head" else model
        params = [p for p in source.parameters() if p.requires_grad]
        was_training = model.training
        model.eval()
        rows = []
        for c in range(engine.n_seen):
            positions = torch.nonzero(data.labels == c).flatten()
            positions = positions[torch.randperm(len(positions), generator=engine.data_generator)]
            positions = positions[: self.config.samples_per_class]
            if len(positions) == 0:
                rows.append(torch.zeros(sum(p.numel() for p in params), device=engine.device))
                continue
            x, y = next(engine.evaluation_batches(data.subset(positions), len(positions)))
            loss = engine.classification_loss(model(x), y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            rows.append(
                torch.cat(
                    [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]
                ).detach()
            )
        model.train(was_training)
        return torch.stack(rows)

    # ------------------------------------------------------------ GAC sampler

    def before_batch(self, engine: Engine, batch: Batch) -> Batch:
        """The mini-batch completed with samples of every group it misses."""
        if self.config.completion == 0 or len(self.group_of) == 0:
            return batch
        group_of = self.group_of.to(batch.y.device)
        present = set(group_of[batch.y].tolist())
        missing = [g for g in range(int(self.group_of.max()) + 1) if g not in present]
        if not missing:
            return batch
        count = math.ceil(self.config.completion * len(batch.y))
        labels = engine.train_set.labels
        class_weights = class_balanced_weights(
            torch.bincount(labels, minlength=len(self.group_of)), self.config.class_balanced_beta
        )
        positions = []
        for g in missing:
            weights = torch.where(self.group_of == g, class_weights, torch.zeros_like(class_weights))
            if weights.sum() == 0:
                continue
            classes = torch.multinomial(weights, count, replacement=True, generator=engine.data_generator)
            for c in classes.tolist():
                options = torch.nonzero(labels == c).flatten()
                positions.append(options[torch.randint(len(options), (1,), generator=engine.data_generator)])
        if not positions:
            return batch
        chosen = torch.cat(positions)
        x, y = next(
            engine.training_batches(engine.train_set.subset(chosen), len(chosen), order=torch.arange(len(chosen)))
        )
        return Batch(torch.cat([batch.x, x]), torch.cat([batch.y, y]))

    # ------------------------------------------------------------ Algorithm 2: MGDA update

    def backward(
        self, engine: Engine, output: NetOutput, targets: torch.Tensor, terms: dict[str, torch.Tensor]
    ) -> None:
        if len(self.group_of) == 0:  # before the grouping: the plain update
            engine.scale_loss(sum(terms.values())).backward()  # type: ignore[arg-type]
            return
        group_of = self.group_of.to(targets.device)[targets]
        params = [p for p in engine.model.parameters() if p.requires_grad]
        group_ids = group_of.unique().tolist()
        losses = [
            engine.classification_weight
            * engine.classification_loss(output._replace(logits=output.logits[group_of == g]), targets[group_of == g])
            for g in group_ids
        ]
        flat = []
        for loss in losses:  # scaled in fp16 (unscaled by the step); MGDA's weights do not depend on the scale
            grads = torch.autograd.grad(engine.scale_loss(loss), params, retain_graph=True, allow_unused=True)
            flat.append(
                torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])
            )
        stacked = torch.stack(flat)
        normalized = stacked / gradient_normalizers(stacked, torch.stack(losses).detach(), self.config.normalization)
        weights = min_norm_weights(normalized @ normalized.t()).to(stacked.device, stacked.dtype)
        direction = weights @ stacked
        others = sum(v for k, v in terms.items() if k != "classification")
        if torch.is_tensor(others) and others.requires_grad:
            engine.scale_loss(others).backward()
        offset = 0
        for p in params:
            piece = direction[offset : offset + p.numel()].view_as(p)
            p.grad = piece.clone() if p.grad is None else p.grad + piece
            offset += p.numel()
        self.weight_sums[group_ids] += weights.double().cpu()
        self.batches += 1

    def after_training(self, engine: Engine) -> None:
        if len(self.group_of) == 0:  # the step ended before its grouping epoch
            return
        sizes = torch.bincount(self.group_of, minlength=int(self.group_of.max()) + 1).tolist()
        engine.step_record["gbg_group_sizes"] = sizes
        engine.step_record["gbg_mean_weights"] = [round(float(w) / max(1, self.batches), 4) for w in self.weight_sums]

"""Bias correction by re-balancing what a step trains on: Jodelet et al.'s Table 6 alternatives to BSCE.

Incremental learning with a small memory is a long-tailed problem: n_i images of each new class,
a few exemplars of each old one. Besides BSCE (Eq. 3), Jodelet et al. (Sec. 4.3.4, Table 6) compares:

* ``memory-oversampling`` (plugin): every mini-batch holds as many old-class samples (exemplars,
  drawn again as often as needed) as new-class samples; an epoch passes once over the new data;
* ``class-oversampling`` (plugin): samples drawn with replacement with probability 1 / n_y, so
  every seen class is equally likely in every mini-batch; an epoch has ``len(train_set)`` draws;
* ``loss-rescaling`` (loss): CE of each sample weighted by w_y = N / (C n_y) (N training samples,
  C seen classes), inversely proportional to its class count and 1 on average over the set;
* ``separated-softmax`` (loss, SS-IL, Ahn et al. 2021, Eq. 3): the softmax of a new-class
  sample runs over the new classes only, that of an old-class sample over the old classes only;
  Jodelet et al. pair it with memory oversampling (the ``il-baseline-separated-softmax`` strategy).

and SS-IL's own sampler:

* ``ratio-preserving-batches`` (plugin, Ahn et al. 2021, Sec. 4.2): every mini-batch holds
  ``batch_size - replay_batch_size`` new-class samples and ``replay_batch_size`` exemplars (SS-IL's
  code: 128 + 32); an epoch passes once over the new data.

The samplers use the engine's data-order generator, so resumed runs repeat exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil.plugin import (
    CilPlugin,
    ClassificationLoss,
    ComponentConfig,
    Engine,
    IncompatibleConfigError,
    RunConfig,
    ranged,
    register,
)


def interleaved_replay_positions(
    labels: torch.Tensor, n_old: int, new_per_chunk: int, old_per_chunk: int, generator: torch.Generator
) -> torch.Tensor:
    """Chunks of ``new_per_chunk`` new-class positions, each followed by ``old_per_chunk`` old-class ones.

    Every new-class sample appears once, in random order; old-class samples are drawn from successive
    random permutations of the exemplars, as many as the chunks need (a last, shorter chunk of new
    samples gets proportionally fewer, rounded up). Without old or without new classes it is one random
    permutation.
    """
    new = torch.nonzero(labels >= n_old).flatten()
    old = torch.nonzero(labels < n_old).flatten()
    if len(old) == 0 or len(new) == 0:
        return torch.randperm(len(labels), generator=generator)
    new = new[torch.randperm(len(new), generator=generator)]
    full, rest = divmod(len(new), new_per_chunk)
    n_drawn = full * old_per_chunk + -(-rest * old_per_chunk // new_per_chunk)
    rounds = -(-n_drawn // len(old))
    drawn = torch.cat([old[torch.randperm(len(old), generator=generator)] for _ in range(rounds)])[:n_drawn]
    width = new_per_chunk + old_per_chunk  # a chunk's new samples, then its old ones: one sort key each
    at, on = torch.arange(len(new)), torch.arange(n_drawn)
    keys = torch.cat(
        [
            at // new_per_chunk * width + at % new_per_chunk,
            on // old_per_chunk * width + new_per_chunk + on % old_per_chunk,
        ]
    )
    return torch.cat([new, drawn])[keys.argsort()]


def memory_oversampling_positions(labels: torch.Tensor, n_old: int, generator: torch.Generator) -> torch.Tensor:
    """New and old positions alternating (new, old, new, old, ...): any even batch is half old."""
    return interleaved_replay_positions(labels, n_old, 1, 1, generator)


def class_balanced_positions(labels: torch.Tensor, n_draws: int, generator: torch.Generator) -> torch.Tensor:
    """``n_draws`` positions drawn with replacement with probability proportional to 1 / n_y."""
    counts = torch.bincount(labels).double()
    weights = 1.0 / counts[labels]
    return torch.multinomial(weights, n_draws, replacement=True, generator=generator)


@dataclass
class MemoryOversamplingConfig(ComponentConfig):
    name: str = "memory-oversampling"


@register("plugin", "memory-oversampling", MemoryOversamplingConfig)
class MemoryOversampling(CilPlugin[MemoryOversamplingConfig]):
    def epoch_length(self, engine: Engine) -> int:
        labels = engine.train_set.labels
        n_new = int((labels >= engine.n_old).sum())
        return 2 * n_new if engine.n_old > 0 and n_new < len(labels) else len(labels)

    def epoch_positions(self, engine: Engine) -> torch.Tensor:
        return memory_oversampling_positions(engine.train_set.labels, engine.n_old, engine.data_generator)


@dataclass
class ClassOversamplingConfig(ComponentConfig):
    name: str = "class-oversampling"


@register("plugin", "class-oversampling", ClassOversamplingConfig)
class ClassOversampling(CilPlugin[ClassOversamplingConfig]):
    def epoch_length(self, engine: Engine) -> int:
        return len(engine.train_set)

    def epoch_positions(self, engine: Engine) -> torch.Tensor:
        labels = engine.train_set.labels
        return class_balanced_positions(labels, len(labels), engine.data_generator)


def inverse_frequency_weights(counts: torch.Tensor) -> torch.Tensor:
    """w_c = N / (C n_c): inversely proportional to the class count, 1 on average over the samples."""
    return counts.sum() / (len(counts) * counts.clamp_min(1))


@dataclass
class LossRescalingConfig(ComponentConfig):
    name: str = "loss-rescaling"


@register("loss", "loss-rescaling", LossRescalingConfig)
class LossRescaling(ClassificationLoss[LossRescalingConfig]):
    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.sample_losses(engine, logits, targets).mean()

    def sample_losses(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weights = inverse_frequency_weights(engine.train_class_counts)
        return weights[targets] * F.cross_entropy(logits, targets, reduction="none")


def separated_softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, n_old: int) -> torch.Tensor:
    """SS-IL's separated softmax: old-class samples over the old logits, new ones over the new logits."""
    if n_old == 0:
        return F.cross_entropy(logits, targets)
    is_old = targets < n_old
    # both softmaxes for every sample, each sample keeping its own (no label-dependent shapes)
    over_old = F.cross_entropy(logits[:, :n_old], targets.clamp(max=n_old - 1), reduction="none")
    over_new = F.cross_entropy(logits[:, n_old:], (targets - n_old).clamp(min=0), reduction="none")
    return torch.where(is_old, over_old, over_new).mean()


@dataclass
class SeparatedSoftmaxConfig(ComponentConfig):
    name: str = "separated-softmax"

    def check_steps(self, step_sizes: list[int], prefix: str) -> list[str]:
        single = [step for step, size in enumerate(step_sizes) if step > 0 and size == 1]
        if single:
            raise IncompatibleConfigError(
                f"{prefix} separated-softmax: step {single[0]} learns one class; its samples' softmax runs over that "
                "one logit, which is constant, so the class gets no gradient and is never learned: use steps of "
                "2 classes or more"
            )
        return []


@register("loss", "separated-softmax", SeparatedSoftmaxConfig)
class SeparatedSoftmax(ClassificationLoss[SeparatedSoftmaxConfig]):
    def classification_loss(self, engine: Engine, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return separated_softmax_cross_entropy(logits, targets, engine.n_old)


@dataclass
class RatioPreservingConfig(ComponentConfig):
    name: str = "ratio-preserving-batches"
    replay_batch_size: int = ranged(32, ge=1, le=2**20)
    """Exemplars in every mini-batch; the others of ``optim.batch_size`` are new-class samples (SS-IL: 32 of
    128 + 32)."""

    def validate_with(self, run: RunConfig, prefix: str) -> None:
        if self.replay_batch_size >= run.optim.batch_size:
            raise IncompatibleConfigError(
                f"{prefix}.replay_batch_size {self.replay_batch_size} leaves no new-class sample in a mini-batch of "
                f"optim.batch_size {run.optim.batch_size}; use a smaller replay_batch_size or a larger batch"
            )


@register("plugin", "ratio-preserving-batches", RatioPreservingConfig)
class RatioPreservingBatches(CilPlugin[RatioPreservingConfig]):
    """SS-IL's mini-batches: a fixed number of new-class samples and of replayed exemplars in each."""

    def _chunks(self, engine: Engine) -> tuple[int, int]:
        return engine.batch_size - self.config.replay_batch_size, self.config.replay_batch_size

    def epoch_length(self, engine: Engine) -> int:
        labels = engine.train_set.labels
        n_new = int((labels >= engine.n_old).sum())
        if engine.n_old == 0 or n_new in (0, len(labels)):
            return len(labels)
        new_per, old_per = self._chunks(engine)
        full, rest = divmod(n_new, new_per)
        return n_new + full * old_per + -(-rest * old_per // new_per)

    def epoch_positions(self, engine: Engine) -> torch.Tensor:
        return interleaved_replay_positions(
            engine.train_set.labels, engine.n_old, *self._chunks(engine), engine.data_generator
        )

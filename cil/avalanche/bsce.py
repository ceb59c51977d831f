"""Balanced Softmax CE as an Avalanche criterion whose class counts follow the actual sampling.

In cil's engine, lambda_i of Eq. 3 is the count of class i in the training set (new data plus
memory, each sample once per epoch). Under Avalanche's ``ReplayPlugin`` an epoch is different:
every mini-batch joins ``batch_size`` samples of the experience with ``batch_size_mem`` samples of
the buffer, and the buffer is cycled for as long as the experience lasts, so its classes are seen
far more often than their stored counts say (and counting the experience alone gives the buffer's
classes lambda = 0: an infinite loss on their samples). ``sampled_class_counts`` gives the
expected number of samples of each class in one epoch of whatever loader the strategy built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from cil.strategies.bsce import balanced_softmax_cross_entropy


def dataset_class_counts(dataset, n_classes: int | None = None) -> torch.Tensor:
    """Samples of each class in an Avalanche (or any ``targets``-carrying) dataset, float64."""
    targets = torch.as_tensor(list(dataset.targets), dtype=torch.long)
    size = max(int(targets.max()) + 1 if len(targets) else 0, n_classes or 0)
    return torch.bincount(targets, minlength=size).double()


def samples_per_epoch(size: int, batch_size: int, iterations: int, drop_last: bool = False) -> int:
    """Samples drawn from a dataset of ``size`` that a multi-dataset loader cycles for ``iterations``.

    Each pass over the dataset is ``ceil(size / b)`` batches (the last one partial) or, with
    ``drop_last``, ``floor(size / b)`` full ones; the epoch ends after ``iterations`` batches.
    """
    batches_per_pass = size // batch_size if drop_last else -(-size // batch_size)
    if batches_per_pass == 0:
        return 0
    per_pass = batches_per_pass * batch_size if drop_last else size
    passes, rest = divmod(iterations, batches_per_pass)
    return passes * per_pass + rest * batch_size


def sampled_class_counts(dataloader, dataset) -> torch.Tensor:
    """Expected samples of each class in one epoch of ``dataloader`` (float64, indexed by label).

    An Avalanche multi-dataset loader (``ReplayDataLoader`` and the like) joins, in every one of its
    ``len(dataloader)`` iterations, a batch of each of its datasets, cycling the ones that run out
    (the replay buffer): dataset d gives ``samples_per_epoch`` samples, class c of it
    ``samples * n_c^d / |d|`` in expectation. Any other loader goes once over ``dataset`` (the
    strategy's ``adapted_dataset``).
    """
    datasets, batch_sizes = getattr(dataloader, "datasets", None), getattr(dataloader, "batch_sizes", None)
    if not datasets or batch_sizes is None:
        return dataset_class_counts(dataset)
    drop_last = bool(getattr(dataloader, "loader_kwargs", {}).get("drop_last", False))
    parts = [
        dataset_class_counts(d) * (samples_per_epoch(len(d), b, len(dataloader), drop_last) / len(d))
        for d, b in zip(datasets, batch_sizes)
        if len(d)
    ]
    size = max(len(p) for p in parts)
    return torch.stack([F.pad(p, (0, size - len(p))) for p in parts]).sum(0)


class BalancedSoftmaxCriterion(SupervisedPlugin):
    """Balanced Softmax CE (Eq. 3-4; Eq. 5 with ``alpha``) for ``Naive(..., criterion=this)``.

    Avalanche adds a criterion that is a plugin to the strategy's plugins, so this object sees the
    data loader of each epoch and recounts lambda there (``sampled_class_counts``). ``alpha``
    multiplies the counts of the classes not in the current experience (Eq. 5). Evaluation losses
    are the plain cross-entropy of the raw logits, as cil's engine evaluates. Classes with no
    samples (not seen yet) are masked out of the softmax.

    With a fixed-size head (a 10- or 100-way classifier from the start, common in Avalanche code)
    the logits of classes never trained on are never trained either: nothing pushes them down, as
    plain CE would. So at evaluation, once training has begun, their logits are set to -inf in the
    strategy's output (``mask_unseen=True``): predictions go to the classes seen so far, as with a
    growing head, and the evaluation loss is still computed on the raw logits.
    """

    def __init__(self, alpha: float = 1.0, mask_unseen: bool = True):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self.mask_unseen = mask_unseen
        self.class_counts: torch.Tensor | None = None
        """lambda of the current epoch (after alpha), indexed by label; None before training."""
        self.seen: torch.Tensor | None = None
        """Whether each label has been trained on so far (any epoch); None before training."""
        self._training = False
        self._raw_logits: torch.Tensor | None = None

    def before_training_epoch(self, strategy, **kwargs):
        counts = sampled_class_counts(strategy.dataloader, strategy.adapted_dataset)
        if self.alpha != 1.0:
            current = torch.tensor(sorted(strategy.experience.classes_in_this_experience), dtype=torch.long)
            old = torch.ones(len(counts), dtype=torch.bool)
            old[current[current < len(counts)]] = False
            counts = torch.where(old, counts * self.alpha, counts)
        self.class_counts = counts.float().to(strategy.device)
        seen = torch.zeros(max(len(counts), len(self.seen) if self.seen is not None else 0), dtype=torch.bool)
        seen[: len(counts)] = counts.cpu() > 0
        if self.seen is not None:
            seen[: len(self.seen)] |= self.seen
        self.seen = seen
        self._training = True

    def after_training_epoch(self, strategy, **kwargs):
        self._training = False

    def before_eval(self, strategy, **kwargs):
        self._training = False

    def after_eval_forward(self, strategy, **kwargs):
        """Never-trained classes of a fixed-size head out of the predictions (their raw logits kept for the loss)."""
        self._raw_logits = None
        if not self.mask_unseen or self.seen is None:
            return
        logits = strategy.mb_output
        unseen = torch.ones(logits.shape[1], dtype=torch.bool)
        known = self.seen[: logits.shape[1]]
        unseen[: len(known)] = ~known
        if unseen.any():
            self._raw_logits = logits
            strategy.mb_output = logits.masked_fill(unseen.to(logits.device), float("-inf"))

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not self._training or self.class_counts is None:
            if self._raw_logits is not None and self._raw_logits.shape == logits.shape:
                logits = self._raw_logits  # the evaluation loss of what the model said
            return F.cross_entropy(logits, targets)
        counts = self.class_counts[: logits.shape[1]]
        counts = F.pad(counts, (0, logits.shape[1] - len(counts)))
        return balanced_softmax_cross_entropy(logits.float(), targets, counts)

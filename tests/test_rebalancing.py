"""Seed 002's Table 6 alternatives: memory and class oversampling, loss rescaling, separated softmax."""

import math

import pytest
import torch
from cil.strategies.rebalancing import (
    class_balanced_positions,
    inverse_frequency_weights,
    memory_oversampling_positions,
    separated_softmax_cross_entropy,
)


def test_memory_oversampling_alternates_new_and_old():
    labels = torch.tensor([0, 0, 1, 1] + [2] * 10 + [3] * 10)  # 2 old classes, 4 exemplars; 20 new samples
    positions = memory_oversampling_positions(labels, n_old=2, generator=torch.Generator().manual_seed(0))
    assert len(positions) == 40
    chosen = labels[positions]
    assert (chosen[0::2] >= 2).all() and (chosen[1::2] < 2).all()  # every even batch is half old, half new
    assert sorted(positions[0::2].tolist()) == list(range(4, 24))  # each new sample exactly once
    assert torch.bincount(positions[1::2], minlength=4)[:4].tolist() == [5, 5, 5, 5]  # exemplars cycled evenly


def test_memory_oversampling_without_old_classes_is_a_permutation():
    labels = torch.tensor([0, 0, 1, 1, 2])
    positions = memory_oversampling_positions(labels, n_old=0, generator=torch.Generator().manual_seed(0))
    assert sorted(positions.tolist()) == [0, 1, 2, 3, 4]


def test_class_oversampling_makes_classes_equally_likely():
    labels = torch.tensor([0] * 2 + [1] * 98)
    positions = class_balanced_positions(labels, 20000, torch.Generator().manual_seed(0))
    share = float((labels[positions] == 0).float().mean())
    assert share == pytest.approx(0.5, abs=0.02)


def test_loss_rescaling_weights_and_value_by_hand():
    counts = torch.tensor([10.0, 30.0])
    weights = inverse_frequency_weights(counts)
    assert weights.tolist() == pytest.approx([2.0, 2.0 / 3.0])  # N / (C n_c) = 40 / 20, 40 / 60
    assert float((weights * counts).sum() / counts.sum()) == pytest.approx(1.0)  # 1 on average over samples

    from cil.strategies.rebalancing import LossRescaling, LossRescalingConfig

    class Stub:
        train_class_counts = counts

    logits = torch.zeros(3, 2)  # CE = log 2 for every sample
    loss = LossRescaling(LossRescalingConfig()).classification_loss(Stub(), logits, torch.tensor([0, 1, 1]))
    assert float(loss) == pytest.approx((2.0 + 2 / 3 + 2 / 3) / 3 * math.log(2))


def test_separated_softmax_by_hand():
    logits = torch.tensor(
        [
            [2.0, 0.0, 5.0, 1.0],  # old sample (class 0): softmax over classes 0, 1
            [9.0, 9.0, 1.0, 0.0],
        ]
    )  # new sample (class 2): softmax over classes 2, 3
    targets = torch.tensor([0, 2])
    old = -math.log(math.exp(2) / (math.exp(2) + 1))
    new = -math.log(math.exp(1) / (math.exp(1) + 1))
    assert float(separated_softmax_cross_entropy(logits, targets, n_old=2)) == pytest.approx((old + new) / 2)
    # the large logits of the other group do not matter
    assert float(separated_softmax_cross_entropy(logits, targets, n_old=0)) > (old + new) / 2


def test_the_engine_uses_the_batch_sampler():
    from cil.strategies.rebalancing import MemoryOversampling, MemoryOversamplingConfig

    from cil.training.training_set import TrainingSet

    class Data:
        def batches(self, indices, batch_size, train, device, generator=None):
            for chunk in indices.split(batch_size):
                yield torch.zeros(len(chunk), 3, 4, 4)

    from cil.config import RuntimeConfig
    from cil.training.engine import TrainingEngine
    from cil.training.runtime import Runtime

    strategy = TrainingEngine.__new__(TrainingEngine)
    strategy._train_set = TrainingSet(torch.arange(24), torch.tensor([0, 0, 1, 1] + [2] * 10 + [3] * 10))
    strategy.n_old, strategy.train_mb_size, strategy.device = 2, 8, torch.device("cpu")
    strategy.runtime = Runtime.resolve(RuntimeConfig(), strategy.device)
    strategy._order_generator = torch.Generator().manual_seed(0)
    strategy._augment_generator = torch.Generator().manual_seed(1)
    strategy.train_data = Data()
    strategy.batch_sampler = MemoryOversampling(MemoryOversamplingConfig())
    batches = list(strategy.training_batches(strategy.train_set, order=strategy.epoch_positions()))
    assert len(batches) == strategy._epoch_batches() == 5
    for _, y in batches:
        assert int((y < 2).sum()) == int((y >= 2).sum()) == 4

"""Balanced Softmax CE (Jodelet et al., Eq. 3-5) against hand computations."""

import math

import torch
import torch.nn.functional as F
from cil.strategies.bsce import balanced_softmax_cross_entropy, old_class_weighted_counts


def test_matches_hand_computed_value():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    counts = torch.tensor([10.0, 100.0, 1.0])
    # q_y = n_y e^{z_y} / sum_j n_j e^{z_j}, target 0
    denominator = 10 * math.exp(1.0) + 100 * math.exp(2.0) + 1 * math.exp(0.5)
    expected = -math.log(10 * math.exp(1.0) / denominator)
    got = balanced_softmax_cross_entropy(logits, torch.tensor([0]), counts)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    assert math.isclose(got.item(), 3.3409, abs_tol=1e-4)  # -ln(27.183 / 767.738), by hand


def test_batch_mean_of_per_sample_losses():
    logits = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    counts = torch.tensor([3.0, 1.0])
    per_sample = [
        -math.log(3 * math.exp(0.0) / (3 * math.exp(0.0) + math.exp(1.0))),  # target 0
        -math.log(math.exp(-1.0) / (3 * math.exp(2.0) + math.exp(-1.0))),  # target 1
    ]
    got = balanced_softmax_cross_entropy(logits, torch.tensor([0, 1]), counts)
    assert math.isclose(got.item(), sum(per_sample) / 2, rel_tol=1e-6)


def test_equal_counts_reduce_to_cross_entropy():
    torch.manual_seed(0)
    logits, targets = torch.randn(8, 5), torch.randint(0, 5, (8,))
    got = balanced_softmax_cross_entropy(logits, targets, torch.full((5,), 37.0))
    assert torch.allclose(got, F.cross_entropy(logits, targets), atol=1e-6)


def test_alpha_scales_old_class_counts_only():
    counts = torch.tensor([20.0, 20.0, 500.0, 500.0])
    assert old_class_weighted_counts(counts, 2, 0.5).tolist() == [10.0, 10.0, 500.0, 500.0]
    assert old_class_weighted_counts(counts, 2, 1.0).tolist() == counts.tolist()


def test_alpha_gradient_flows():
    alpha = torch.tensor(1.0, requires_grad=True)
    weights = old_class_weighted_counts(torch.tensor([2.0, 50.0]), 1, alpha)
    loss = balanced_softmax_cross_entropy(torch.tensor([[0.3, 0.1]]), torch.tensor([0]), weights)
    loss.backward()
    assert alpha.grad is not None and alpha.grad.item() < 0  # a larger old weight raises q_old


def test_zero_count_classes_are_masked_not_nan():
    """Exemplar-free (Sec. 3.4): old classes with n_i = 0 drop out of the softmax."""
    logits = torch.tensor([[5.0, 1.0, 2.0], [0.0, 3.0, 1.0]], requires_grad=True)
    targets = torch.tensor([1, 2])
    loss = balanced_softmax_cross_entropy(logits, targets, torch.tensor([0.0, 4.0, 4.0]))
    loss.backward()
    expected = F.cross_entropy(logits[:, 1:].detach(), targets - 1)
    assert torch.isfinite(loss) and torch.allclose(loss, expected, atol=1e-6)
    assert torch.isfinite(logits.grad).all()
    assert torch.all(logits.grad[:, 0] == 0)

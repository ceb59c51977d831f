"""Relaxed BSCE (Jodelet et al., Eq. 6) and Meta BSCE's virtual step (Algorithm 1) against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F
from cil.strategies.bsce import balanced_softmax_cross_entropy, old_class_weighted_counts
from cil.strategies.relaxed_bsce import default_epsilon, relaxed_class_weights
from torch import nn

from cil.models.net import NetOutput
from cil.training.training_set import TrainingSet, balanced_split
from cil.training.virtual_step import validation_loss_after_virtual_step

# ---------------------------------------------------------------- Relaxed BSCE


def test_relaxed_hand_computed_value():
    logits, target = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([2])
    weights = relaxed_class_weights(torch.tensor([0.0, 0.0, 50.0]), n_old=2, epsilon=1.0)
    assert weights.tolist() == [1.0, 1.0, 50.0]
    # q_2 = 50 e^2 / (e^1 + e^0 + 50 e^2)
    expected = -math.log(50 * math.exp(2) / (math.exp(1) + 1 + 50 * math.exp(2)))
    assert math.isclose(balanced_softmax_cross_entropy(logits, target, weights).item(), expected, rel_tol=1e-4)
    assert math.isclose(expected, 0.010014, rel_tol=1e-4)  # -ln(369.45 / 373.17), by hand


def test_relaxed_with_zero_epsilon_is_bsce_without_memory_and_has_no_nan():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, requires_grad=True)
    targets = torch.tensor([3, 4, 3, 4, 4, 3])
    counts = torch.tensor([0.0, 0.0, 0.0, 40.0, 40.0])  # exemplar-free: old classes have no samples
    relaxed = balanced_softmax_cross_entropy(logits, targets, relaxed_class_weights(counts, 3, 0.0))
    bsce = balanced_softmax_cross_entropy(logits, targets, counts)
    assert torch.equal(relaxed, bsce)
    relaxed.backward()
    assert torch.isfinite(relaxed) and torch.isfinite(logits.grad).all()
    assert torch.all(logits.grad[:, :3] == 0)  # masked classes get no gradient
    # ... and BSCE without memory is CE over the new classes only (Sec. 3.4)
    assert torch.allclose(bsce, F.cross_entropy(logits[:, 3:], targets - 3), atol=1e-6)


def test_relaxed_with_epsilon_equal_to_counts_is_plain_cross_entropy():
    torch.manual_seed(1)
    logits, targets = torch.randn(7, 4), torch.randint(0, 4, (7,))
    counts = torch.tensor([20.0, 20.0, 500.0, 500.0])
    weights = relaxed_class_weights(counts, n_old=2, epsilon=500.0)
    assert torch.allclose(balanced_softmax_cross_entropy(logits, targets, weights), F.cross_entropy(logits, targets))


def test_default_epsilon_is_a_fraction_of_images_per_class():
    assert math.isclose(default_epsilon(torch.tensor([0.0, 0.0, 500.0, 500.0]), 2, 0.002), 1.0)  # CIFAR-100
    assert math.isclose(default_epsilon(torch.tensor([0.0, 1300.0]), 1, 0.002), 2.6)  # ImageNet-Subset


# ---------------------------------------------------------------- Meta BSCE


class TinyNet(nn.Module):
    """Linear classifier after a BatchNorm; returns a NetOutput like cil's networks."""

    def __init__(self, bias=(0.0, 0.0)):
        super().__init__()
        self.norm = nn.BatchNorm1d(2)
        self.linear = nn.Linear(2, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(2))
            self.linear.bias.copy_(torch.tensor(bias))

    def forward(self, x):
        features = self.norm(x)
        return NetOutput(self.linear(features), features, [])


def two_class_problem():
    """Class 0 (old, 2 samples in memory) around (1, -1), class 1 (new, 30 samples) around (-1, 1)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.0, -1.0]) + 0.5 * torch.randn(16, 2, generator=g)
    x1 = torch.tensor([-1.0, 1.0]) + 0.5 * torch.randn(16, 2, generator=g)
    x, y = torch.cat([x0, x1]), torch.cat([torch.zeros(16), torch.ones(16)]).long()
    counts = torch.tensor([2.0, 30.0])
    return x, y, counts


def val_loss_for(model, log_alpha, x, y, counts, lr=0.5):
    inner = lambda out: balanced_softmax_cross_entropy(  # noqa: E731
        out.logits, y, old_class_weighted_counts(counts, 1, log_alpha.exp())
    )
    outer = lambda out: F.cross_entropy(out.logits, y)  # noqa: E731  balanced validation set
    return validation_loss_after_virtual_step(model, inner, x, outer, x, lr)


def test_virtual_step_gradient_matches_finite_differences():
    x, y, counts = two_class_problem()
    model = TinyNet(bias=(0.0, 1.5))

    def explicit(log_alpha_value: float) -> float:
        """theta* computed by hand: theta - lr * grad, then the validation CE (no higher)."""
        clone = TinyNet(bias=(0.0, 1.5))
        clone.load_state_dict(model.state_dict())
        out = clone(x)
        loss = balanced_softmax_cross_entropy(
            out.logits, y, old_class_weighted_counts(counts, 1, torch.tensor(log_alpha_value).exp())
        )
        grads = torch.autograd.grad(loss, list(clone.parameters()))
        with torch.no_grad():
            for p, g in zip(clone.parameters(), grads):
                p -= 0.5 * g
            return F.cross_entropy(clone(x).logits, y).item()

    log_alpha = torch.zeros((), requires_grad=True)
    val = val_loss_for(model, log_alpha, x, y, counts)
    (grad,) = torch.autograd.grad(val, [log_alpha])
    h = 1e-3
    finite = (explicit(h) - explicit(-h)) / (2 * h)
    assert math.isclose(val.item(), explicit(0.0), rel_tol=1e-5)
    assert math.isclose(grad.item(), finite, rel_tol=1e-2, abs_tol=1e-6)


def test_over_represented_new_class_pushes_alpha_below_one():
    """The model favours the new class; on a balanced validation set, lowering alpha (more weight to
    the old class's logit during training) lowers the validation CE, so the gradient step lowers alpha."""
    x, y, counts = two_class_problem()
    log_alpha = torch.zeros((), requires_grad=True)
    (grad,) = torch.autograd.grad(val_loss_for(TinyNet(bias=(0.0, 1.5)), log_alpha, x, y, counts), [log_alpha])
    assert grad.item() > 0  # alpha <- exp(log_alpha - lr * grad) < 1
    # and the opposite bias asks for the opposite move
    (grad,) = torch.autograd.grad(val_loss_for(TinyNet(bias=(1.5, 0.0)), log_alpha, x, y, counts), [log_alpha])
    assert grad.item() < 0


def test_virtual_step_leaves_parameters_and_batchnorm_buffers_unchanged():
    x, y, counts = two_class_problem()
    model = TinyNet(bias=(0.0, 1.5))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log_alpha = torch.zeros((), requires_grad=True)
    val = val_loss_for(model, log_alpha, x, y, counts)
    torch.autograd.grad(val, [log_alpha])
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "virtual step changed the real model"
    assert all(p.grad is None for p in model.parameters())


def test_virtual_step_keeps_frozen_parameters_fixed():
    x, y, counts = two_class_problem()
    model = TinyNet(bias=(0.0, 1.5))
    model.linear.weight.requires_grad_(False)
    log_alpha = torch.zeros((), requires_grad=True)
    (grad,) = torch.autograd.grad(val_loss_for(model, log_alpha, x, y, counts), [log_alpha])
    assert torch.isfinite(grad)


def test_balanced_split_holds_out_per_class():
    labels = torch.tensor([0] * 5 + [1] * 5 + [2] * 40)
    train = TrainingSet(torch.arange(100, 150), labels)
    d, b = balanced_split(train, 3, 2, torch.Generator().manual_seed(0))
    assert torch.bincount(b.labels).tolist() == [2, 2, 2]
    assert torch.bincount(d.labels).tolist() == [3, 3, 38]
    assert sorted(torch.cat([d.indices, b.indices]).tolist()) == list(range(100, 150))  # a partition


def meta_loss(rule: str, **options):
    from cil.strategies.meta_bsce import MetaBalancedSoftmaxCE, MetaBSCEConfig

    return MetaBalancedSoftmaxCE(MetaBSCEConfig(alpha_update=rule, **options))


def test_alpha_update_is_algorithm_1_by_default_and_log_space_on_request():
    """Algorithm 1, line 8: alpha <- alpha - grad_alpha L_val. The log-space rule steps on log(alpha) with
    d L / d log(alpha) = alpha * d L / d alpha: from 0.7 it moves alpha 0.7 times as far (to first order)."""
    from cil.strategies.meta_bsce import MetaBSCEConfig

    assert MetaBSCEConfig().alpha_update == "alpha" and MetaBSCEConfig().meta_lr == 1.0
    grad_alpha = -0.000315  # the validation loss falls as alpha grows
    plain = meta_loss("alpha")
    assert plain.step(torch.tensor(0.7), torch.tensor(grad_alpha)).item() == pytest.approx(0.700315, abs=1e-7)
    logged = meta_loss("log-alpha")
    learned = logged.step(torch.tensor(0.7).log(), torch.tensor(0.7 * grad_alpha))
    assert logged.alpha_of(learned).item() == pytest.approx(0.7 * math.exp(0.7 * 0.000315), abs=1e-7)
    assert logged.alpha_of(learned).item() == pytest.approx(0.700155, abs=1e-6)


def test_alpha_update_stops_at_alpha_min():
    rule = meta_loss("alpha", alpha_min=1e-3)
    assert rule.step(torch.tensor(0.05), torch.tensor(2.0)).item() == pytest.approx(1e-3)
    assert rule.step(torch.tensor(0.05), torch.tensor(0.01)).item() == pytest.approx(0.04)


def test_both_rules_differentiate_the_same_validation_loss():
    """The loss sees alpha through ``alpha_of``: its gradient on log(alpha) is alpha times its gradient on alpha."""
    x, y, counts = two_class_problem()
    grads = {}
    for rule, learned in (("alpha", torch.tensor(0.7)), ("log-alpha", torch.tensor(0.7).log())):
        meta = meta_loss(rule)
        learned.requires_grad_(True)
        inner = lambda out, meta=meta, learned=learned: balanced_softmax_cross_entropy(  # noqa: E731
            out.logits, y, old_class_weighted_counts(counts, 1, meta.alpha_of(learned))
        )
        outer = lambda out: F.cross_entropy(out.logits, y)  # noqa: E731
        val = validation_loss_after_virtual_step(TinyNet(bias=(0.0, 1.5)), inner, x, outer, x, 0.5)
        (grads[rule],) = torch.autograd.grad(val, [learned])
    assert grads["alpha"].item() != 0
    assert grads["log-alpha"].item() == pytest.approx(0.7 * grads["alpha"].item(), rel=1e-5)

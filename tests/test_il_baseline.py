"""IL-Baseline (Jodelet et al., Eq. 1-2): rho and the distillation term against hand computations."""

import math

import torch
from cil.strategies.il_baseline import adaptive_rho, distillation_loss


def test_rho_is_old_over_seen_classes():
    assert adaptive_rho(50, 60) == 50 / 60
    assert adaptive_rho(90, 100) == 0.9


def test_distillation_matches_hand_computation():
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 2.0]])
    t = 2.0
    p_hat = [math.exp(0.0) / (math.exp(0.0) + math.exp(1.0)), math.exp(1.0) / (math.exp(0.0) + math.exp(1.0))]
    log_p = [0.5 - math.log(math.exp(0.5) + 1.0), 0.0 - math.log(math.exp(0.5) + 1.0)]
    expected = -(p_hat[0] * log_p[0] + p_hat[1] * log_p[1]) * t**2
    assert math.isclose(distillation_loss(student, teacher, t).item(), expected, rel_tol=1e-6)
    assert math.isclose(expected, 3.3584, abs_tol=1e-4)  # 4 * (0.2689*0.4741 + 0.7311*0.9741)


def test_distillation_is_minimal_when_student_equals_teacher():
    torch.manual_seed(0)
    teacher = torch.randn(4, 6)
    at_teacher = distillation_loss(teacher.clone(), teacher, 2.0)
    elsewhere = distillation_loss(teacher + torch.randn(4, 6), teacher, 2.0)
    # the soft cross-entropy equals the teacher's entropy (times T^2) at its minimum
    p = torch.softmax(teacher / 2.0, 1)
    entropy = -(p * p.log()).sum(1).mean() * 4.0
    assert torch.allclose(at_teacher, entropy, atol=1e-6)
    assert elsewhere > at_teacher

"""LUCIR, PODNet, NCA, the cosine heads, balanced finetuning and NME against hand computations."""

import math

import pytest
import torch
from cil.strategies.balanced_finetuning import BalancedFinetuning, BalancedFinetuningConfig, balanced_subset
from cil.strategies.cosine_head_method import embedding_distillation_loss
from cil.strategies.lucir import adaptive_lambda, margin_ranking_loss
from cil.strategies.nca import nca_loss, nca_loss_official_code
from cil.strategies.nme import class_means
from cil.strategies.podnet import pod_spatial_loss, pooled_spatial, scheduled_factor

from cil.models import build_net
from cil.models.heads import CosineHead, LocalSimilarityHead, kmeans
from tests.helpers import small_engine

# ------------------------------------------------------------------ PODNet distillation


def test_pod_spatial_hand_computation():
    """h = [[1, 2], [3, 4]] squares to [[1, 4], [9, 16]]: row sums (5, 25), column sums (10, 20);
    previous h = [[1, 0], [0, 0]] gives (1, 0, 1, 0). Distance of the normalised vectors: 1.17237."""
    h = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    previous = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    assert pooled_spatial(h).tolist() == [[5.0, 25.0, 10.0, 20.0]]
    assert math.isclose(pod_spatial_loss([h], [previous]).item(), 1.17237, abs_tol=1e-5)


def test_pod_losses_vanish_for_identical_models():
    torch.manual_seed(0)
    net = build_net("tiny", "lsc").eval()
    net.head.add_classes(3)
    x = torch.randn(4, 3, 32, 32)
    a, b = net(x), net(x)
    assert pod_spatial_loss(a.stage_maps, b.stage_maps).item() == pytest.approx(0.0, abs=1e-6)
    assert embedding_distillation_loss(a.features, b.features).item() == pytest.approx(0.0, abs=1e-6)
    assert len(a.stage_maps) == 3


def test_pod_spatial_averages_over_stages():
    h1, h2 = torch.rand(2, 3, 4, 4), torch.rand(2, 5, 2, 2)
    p1, p2 = torch.rand(2, 3, 4, 4), torch.rand(2, 5, 2, 2)
    both = pod_spatial_loss([h1, h2], [p1, p2])
    assert torch.allclose(both, (pod_spatial_loss([h1], [p1]) + pod_spatial_loss([h2], [p2])) / 2)


def test_pod_flat_is_one_minus_cosine():
    f, g = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert math.isclose(embedding_distillation_loss(f, g).item(), 1 - 1 / math.sqrt(2), rel_tol=1e-6)


def test_schedules():
    assert scheduled_factor(60, 10) == math.sqrt(6)
    assert adaptive_lambda(5.0, 50, 10) == 5.0 * math.sqrt(5)
    assert adaptive_lambda(5.0, 90, 10) == 15.0


# ------------------------------------------------------------------ heads


def test_lsc_aggregation_hand_computation():
    """Cosines 0.5 and 0.1 with a class's two proxies: softmax weights 0.5987/0.4013 -> 0.33948."""
    head = LocalSimilarityHead(2, proxies_per_class=2)
    head.add_classes(1)
    with torch.no_grad():
        head.groups[0].copy_(torch.tensor([[0.5, math.sqrt(0.75)], [0.1, math.sqrt(0.99)]]))
        head.scale.fill_(3.0)
    features = torch.tensor([[2.0, 0.0]])
    assert math.isclose(head.similarities(features).item(), 0.33948, abs_tol=1e-5)
    assert math.isclose(head(features).item(), 3 * 0.33948, abs_tol=1e-4)


def test_cosine_head_is_scaled_cosine():
    head = CosineHead(2)
    head.add_classes(2)
    with torch.no_grad():
        head.groups[0].copy_(torch.tensor([[3.0, 0.0], [1.0, 1.0]]))
        head.scale.fill_(2.0)
    assert torch.allclose(head(torch.tensor([[5.0, 0.0]])), torch.tensor([[2.0, 2 / math.sqrt(2)]]))
    assert head.scale.item() == 2.0 and CosineHead(4).scale.item() == 1.0  # sigma starts at 1


def test_imprinting_gives_unit_normalised_class_means():
    head = CosineHead(3)
    head.add_classes(2)
    class_a = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    class_b = torch.tensor([[0.0, 0.0, 5.0]])
    head.imprint(0, [class_a, class_b])
    expected = torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2), 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(head.groups[0], expected, atol=1e-6)
    assert torch.allclose(head.groups[0].norm(dim=1), torch.ones(2))


def test_kmeans_imprinting_finds_the_clusters():
    torch.manual_seed(0)
    a = torch.tensor([1.0, 0.0]) + 0.01 * torch.randn(20, 2)
    b = torch.tensor([0.0, 1.0]) + 0.01 * torch.randn(20, 2)
    centres = kmeans(torch.cat([a, b]), 2, seed=0)
    assert sorted(centres.argmax(dim=1).tolist()) == [0, 1]
    head = LocalSimilarityHead(2, proxies_per_class=2)
    head.add_classes(1)
    head.imprint(0, [torch.cat([a, b])])
    norms = head.groups[0].norm(dim=1)  # centres of unit vectors, not normalised again (official code)
    assert bool(((norms > 0.99) & (norms <= 1.0)).all())
    assert sorted(head.groups[0].argmax(dim=1).tolist()) == [0, 1]


# ------------------------------------------------------------------ losses


def test_nca_paper_definition():
    """Similarities (0.8, 0.3, 0.1), target 0, eta 2, delta 0.6:
    log(e^0.6 + e^0.2) - 2 * (0.8 - 0.6) = 0.71302."""
    sims = torch.tensor([[0.8, 0.3, 0.1]])
    assert math.isclose(nca_loss(sims, torch.tensor([0]), 2.0, 0.6).item(), 0.71302, abs_tol=1e-5)
    # the margin applies to the ground truth only: raising a negative's similarity raises the loss,
    # while the same raise on the ground truth lowers it
    assert nca_loss(torch.tensor([[0.8, 0.5, 0.1]]), torch.tensor([0]), 2.0, 0.6) > nca_loss(
        sims, torch.tensor([0]), 2.0, 0.6
    )
    # hinge: a confident sample contributes 0, not a negative loss
    confident = torch.tensor([[0.9, -0.5, -0.5]])
    assert nca_loss(confident, torch.tensor([0]), 10.0, 0.1).item() == 0.0
    assert nca_loss(confident, torch.tensor([0]), 10.0, 0.1, hinge=False).item() < 0


def test_nca_official_code_computation():
    """Shifted by the max: (0, -1, -1.4); log(1 + e^-1 + e^-1.4) = 0.47901, whatever the margin."""
    sims, y = torch.tensor([[0.8, 0.3, 0.1]]), torch.tensor([0])
    assert math.isclose(nca_loss_official_code(sims, y, 2.0, 0.6).item(), 0.47901, abs_tol=1e-5)
    assert math.isclose(nca_loss_official_code(sims, y, 2.0, 0.0).item(), 0.47901, abs_tol=1e-5)


def test_margin_ranking_touches_only_old_samples_and_top_k_new_classes():
    """n_old = 2. Sample 0 (class 0): gt 0.9, new (0.7, 0.5) -> 0.3, 0.1; sample 2 (class 1): gt 0.3,
    new (0.6, 0.1) -> 0.8, 0.3; sample 1 is of a new class. Mean over pairs: 0.375."""
    cos = torch.tensor([[0.9, 0.1, 0.7, 0.5], [0.0, 0.9, 0.9, 0.0], [0.2, 0.3, 0.1, 0.6]])
    y = torch.tensor([0, 3, 1])
    assert math.isclose(margin_ranking_loss(cos, y, 2, 2, 0.5).item(), 0.375, abs_tol=1e-6)
    assert math.isclose(margin_ranking_loss(cos, y, 2, 1, 0.5).item(), 0.55, abs_tol=1e-6)
    changed = cos.clone()
    changed[1] = torch.tensor([5.0, -5.0, 5.0, 5.0])  # a new-class sample changes nothing
    assert margin_ranking_loss(changed, y, 2, 2, 0.5).item() == pytest.approx(0.375)
    assert margin_ranking_loss(cos, torch.tensor([2, 3, 3]), 2, 2, 0.5).item() == 0.0


def test_embedding_distillation_loss():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert embedding_distillation_loss(f, f * 3).item() == pytest.approx(0.0, abs=1e-7)
    assert embedding_distillation_loss(f, torch.tensor([[0.0, 1.0], [0.0, 1.0]])).item() == pytest.approx(0.5)


# ------------------------------------------------------------------ balanced finetuning and NME


def test_balanced_subset():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    assert balanced_subset(torch.arange(6), labels, 2).tolist() == [0, 1, 3, 4, 5]
    assert balanced_subset(torch.arange(6), labels, None).tolist() == list(range(6))


def _finetuning_strategy(torch_seed=0, head="linear", **head_options):
    """A real engine during step 1 of 4 classes (2 old), 4 images each, every image an exemplar."""
    torch.manual_seed(torch_seed)
    model = build_net("tiny", head, **head_options)
    model.head.add_classes(2)
    model.head.add_classes(2)
    return small_engine(model, n_classes=4, n_old=2, per_class=4, memory_per_class=4)


@pytest.mark.parametrize("classifier_only", [True, False])
def test_balanced_finetuning_changes_only_the_classifier_when_asked(classifier_only):
    strategy = _finetuning_strategy()
    backbone_before = {k: v.clone() for k, v in strategy.model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in strategy.model.head.state_dict().items()}
    plugin = BalancedFinetuning(BalancedFinetuningConfig(epochs=2, lr=0.1, classifier_only=classifier_only))
    plugin.after_training(strategy)
    backbone_same = all(torch.equal(v, strategy.model.backbone.state_dict()[k]) for k, v in backbone_before.items())
    head_same = all(torch.equal(v, strategy.model.head.state_dict()[k]) for k, v in head_before.items())
    assert not head_same
    assert backbone_same == classifier_only  # BatchNorm statistics included
    assert strategy.step_record["balanced_finetuning"]["n_train"] == 16


def test_nme_class_means():
    features = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    flipped = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    means = class_means(features, flipped, torch.tensor([0, 0, 1]), 2)
    assert torch.allclose(
        means, torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)], [1 / math.sqrt(2), 1 / math.sqrt(2)]]), atol=1e-6
    )

"""PODNet and the cosine heads as the official code has them; frozen weights in Meta BSCE's virtual
step; ImageNet-Subset's classes. Values checked by hand."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cil.cli import main
from cil.data import pick_subset
from cil.models.heads import CosineHead, LocalSimilarityHead
from cil.models.podnet_resnet import PODNetBlock, PODNetResNet32
from cil.runs.assemble import build_config
from cil.runs.run import run
from cil.training.contract import CilPlugin
from cil.training.runtime import LossScaler
from cil.training.virtual_step import validation_loss_after_virtual_step
from tests.helpers import quiet


def identity_block(channels: int) -> PODNetBlock:
    """A block whose convolutions copy their input (centre tap 1) and whose BatchNorms are the identity."""
    block = PODNetBlock(channels).eval()
    with torch.no_grad():
        for conv in (block.conv_a, block.conv_b):
            conv.weight.zero_()
            for c in range(channels):
                conv.weight[c, c, 1, 1] = 1.0
        for bn in (block.bn_a, block.bn_b):
            bn.weight.fill_(1.0)
            bn.bias.zero_()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)  # so that BN(x) = x exactly
    return block


# ------------------------------------------------------------------ the backbone


def test_podnet_block_has_no_relu_after_the_addition():
    """x + BN(conv(ReLU(BN(conv(x))))) with identity convolutions and BNs is x + ReLU(x)."""
    x = torch.tensor([[[[-2.0, 1.0], [3.0, -0.5]]]])
    assert torch.allclose(identity_block(1)(x), torch.tensor([[[[-2.0, 2.0], [6.0, -0.5]]]]))


def test_a_fresh_podnet_block_is_the_identity_and_downsampling_pads_zero_channels():
    x = torch.randn(2, 4, 8, 8)
    fresh = PODNetBlock(4).eval()
    assert torch.equal(fresh.bn_b.weight, torch.zeros(4))
    assert torch.allclose(fresh(x), x)  # the zero-initialised last BN silences the residual branch
    down = PODNetBlock(4, downsample=True).eval()
    out = down(x)
    assert out.shape == (2, 8, 4, 4)
    assert torch.allclose(out[:, :4], x[:, :, ::2, ::2]) and torch.equal(out[:, 4:], torch.zeros(2, 4, 4, 4))


def test_podnet_resnet32_has_four_stage_maps_and_31_convolutions():
    net = PODNetResNet32().eval()
    out = net(torch.randn(2, 3, 32, 32))
    assert [tuple(m.shape[1:]) for m in out.stage_maps] == [(16, 32, 32), (32, 16, 16), (64, 8, 8), (64, 8, 8)]
    assert out.features.shape == (2, 64)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 31
    assert [len(stage) for stage in net.stages] == [5, 5, 4, 1]
    # the embedding is the pooled last map, without ReLU: it can be negative
    assert torch.allclose(out.features, out.stage_maps[-1].mean(dim=(2, 3)))


def test_podnet_strategies_use_podnet_resnet32_on_small_images_only():
    for strategy in ("podnet", "podnet-bsce", "podnet-meta-bsce", "podnet-relaxed-bsce"):
        cfg = build_config("synthetic-b50-5", strategy, {}, [])
        assert cfg.model.backbone == "podnet-resnet32" and cfg.model.lsc_similarity == "squared-distance"
        assert cfg.optim.grad_clamp == 5.0
    assert build_config("synthetic-b50-5", "lucir", {}, []).model.backbone == "auto"
    assert build_config("imagenet-subset-b50-5", "podnet", {}, []).model.backbone == "auto"  # ResNet-18


# ------------------------------------------------------------------ the heads


def test_official_lsc_similarity_by_hand():
    """f = (1, 0); class 0's proxies (1, 0) and (0, 1): cosines 1 and 0.
    cosine: softmax(1, 0) . (1, 0) = e / (e + 1) = 0.73106;
    squared-distance: s = 2 cos - 2 = (0, -2), softmax(0, -2) . (0, -2) = -2 e^-2 / (1 + e^-2) = -0.23841."""
    f = torch.tensor([[1.0, 0.0]])
    for similarity, expected in (
        ("cosine", math.e / (math.e + 1)),
        ("squared-distance", -2 * math.exp(-2) / (1 + math.exp(-2))),
    ):
        head = LocalSimilarityHead(2, proxies_per_class=2, similarity=similarity)
        head.add_classes(1)
        with torch.no_grad():
            head.groups[0].copy_(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))  # norms do not matter
        assert head(f).item() == pytest.approx(expected, abs=1e-5)


def test_lsc_weights_start_as_the_official_code():
    torch.manual_seed(0)
    head = LocalSimilarityHead(64, proxies_per_class=10)
    head.add_classes(50)
    assert head.groups[0].std().item() == pytest.approx(1 / 8, rel=0.03)  # kaiming normal, linear: 1/sqrt(d)


def test_imprinted_weights_take_the_mean_norm_of_the_old_weights():
    head = CosineHead(2)
    head.add_classes(2)
    head.add_classes(1)
    with torch.no_grad():
        head.groups[0].copy_(torch.tensor([[2.0, 0.0], [0.0, 4.0]]))  # mean norm 3
    head.imprint(1, [torch.tensor([[1.0, 1.0], [2.0, 2.0]])])
    assert torch.allclose(head.groups[1], torch.tensor([[3 / math.sqrt(2), 3 / math.sqrt(2)]]))

    lsc = LocalSimilarityHead(2, proxies_per_class=2)
    lsc.add_classes(1)
    lsc.add_classes(1)
    with torch.no_grad():
        lsc.groups[0].copy_(torch.tensor([[0.5, 0.0], [0.0, 1.5]]))  # mean norm 1
        lsc.groups[0].mul_(2.0)  # mean norm 2
    points = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    lsc.imprint(1, [points], seed=0)
    centres = sorted(lsc.groups[1].tolist())
    unit = F.normalize(points, dim=1)
    expected = sorted((2 * torch.stack([unit[2:].mean(0), unit[:2].mean(0)])).tolist())
    assert np.allclose(centres, expected, atol=1e-6)


# ------------------------------------------------------------------ frozen old weights


class TwoGroups(nn.Module):
    """Logits of 2 old classes (w_old) and 2 new ones (w_new) on 3-d inputs."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w_old = nn.Parameter(torch.randn(2, 3, generator=g))
        self.w_new = nn.Parameter(torch.randn(2, 3, generator=g))

    def forward(self, x):
        return SimpleNamespace(logits=x @ torch.cat([self.w_old, self.w_new]).t())


def test_the_virtual_step_moves_only_what_the_optimizer_trains():
    """alpha's gradient through theta* = w_new - lr grad (w_old fixed), computed by hand with autograd."""
    g = torch.Generator().manual_seed(1)
    x, y, x_val, y_val = (
        torch.randn(6, 3, generator=g),
        torch.tensor([0, 1, 2, 3, 2, 3]),
        torch.randn(4, 3, generator=g),
        torch.tensor([0, 1, 2, 3]),
    )
    model, lr = TwoGroups(), 0.5
    log_alpha = torch.zeros((), requires_grad=True)

    def inner_of(logits):
        return F.cross_entropy(logits + torch.cat([log_alpha.expand(2), torch.zeros(2)]), y)

    loss = validation_loss_after_virtual_step(
        model,
        lambda out: inner_of(out.logits),
        x,
        lambda out: F.cross_entropy(out.logits, y_val),
        x_val,
        [{"params": [model.w_new], "lr": lr}],
    )
    got = torch.autograd.grad(loss, [log_alpha])[0]

    w_old, w_new = model.w_old.detach(), model.w_new.detach().requires_grad_(True)
    inner = inner_of(x @ torch.cat([w_old, w_new]).t())
    (grad_new,) = torch.autograd.grad(inner, [w_new], create_graph=True)
    outer = F.cross_entropy(x_val @ torch.cat([w_old, w_new - lr * grad_new]).t(), y_val)
    expected = torch.autograd.grad(outer, [log_alpha])[0]
    assert torch.allclose(got, expected, atol=1e-6)

    everything = validation_loss_after_virtual_step(
        model, lambda out: inner_of(out.logits), x, lambda out: F.cross_entropy(out.logits, y_val), x_val, lr
    )
    assert not torch.allclose(torch.autograd.grad(everything, [log_alpha])[0], expected, atol=1e-4)


class OldWeightsWatch(CilPlugin):
    """Records whether the old classes' head weights changed during each incremental step's training."""

    def __init__(self):
        super().__init__()
        self.unchanged: list[bool] = []
        self._before = None

    def before_epoch(self, engine):
        if engine.n_old and self._before is None:
            self._before = [g.detach().clone() for g in engine.model.head.groups[:-1]]

    def after_epoch(self, engine):
        if self._before is not None:
            now = engine.model.head.groups[:-1]
            self.unchanged.append(all(torch.equal(a, b) for a, b in zip(self._before, now)))
            self._before = None


@pytest.mark.parametrize("strategy", ["lucir-meta-bsce", "podnet-meta-bsce", "lucir", "podnet-bsce"])
def test_old_class_weights_stay_fixed_in_real_and_virtual_steps(tmp_path, strategy):
    watch = OldWeightsWatch()
    sets = ["model.backbone=tiny", "optim.batch_size=8", "data.synthetic_classes=6", "data.test_limit_per_class=2"]
    if "meta" in strategy:
        sets.append("loss.update_every=1")
    cfg = build_config(
        "synthetic-b4-2",
        strategy,
        {
            "epochs": 1,
            "progress": False,
            "logging": {"loggers": []},
            "data": {"limit_per_class": 30},
            "memory": {"per_class": 4},
        },
        sets,
    )
    results = run(cfg, out=tmp_path / "run", extra_plugins=[watch], log=quiet)
    assert watch.unchanged == [True, True]
    if "meta" in strategy:
        assert results["steps"][1]["alpha_updates"] > 0 and results["steps"][1]["alpha"] != 1.0


# ------------------------------------------------------------------ balanced finetuning and gradient clamping


def test_loss_scaler_clamps_every_gradient_element():
    w = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([w], lr=1.0)
    (w * torch.tensor([10.0, -0.5, -8.0])).sum().backward()
    LossScaler().step(optimizer, clamp=5.0)
    assert torch.equal(w.detach(), torch.tensor([-5.0, 0.5, 5.0]))


def test_podnet_finetuning_reestimates_batchnorm_and_leaves_the_scale(tmp_path):
    from cil.strategies.balanced_finetuning import BalancedFinetuning, BalancedFinetuningConfig

    from tests.test_lucir_podnet import _finetuning_strategy

    strategy = _finetuning_strategy(head="lsc", proxies_per_class=2)
    mean_before = strategy.model.backbone.stem[1].running_mean.clone()
    conv_before = strategy.model.backbone.stem[0].weight.clone()
    scale_before = strategy.model.head.scale.item()
    plugin = BalancedFinetuning(BalancedFinetuningConfig(epochs=2, lr=0.1, tune_scale=False, update_bn=True))
    plugin.after_training(strategy)
    assert not torch.equal(strategy.model.backbone.stem[1].running_mean, mean_before)  # re-estimated
    assert torch.equal(strategy.model.backbone.stem[0].weight, conv_before)  # not trained
    assert strategy.model.head.scale.item() == scale_before


# ------------------------------------------------------------------ ImageNet-Subset


def test_imagenet_subset_is_lucirs_seed_1993_choice(tmp_path, capsys):
    wnids = [f"n{i:08d}" for i in range(1000)]
    expected = sorted(np.random.RandomState(1993).choice(wnids, 100, replace=False).tolist())
    assert pick_subset(wnids, 100) == expected
    np.random.seed(1993)  # exactly the call of LUCIR's gen_imagenet_subset.py
    assert sorted(np.random.choice(wnids, 100, replace=False).tolist()) == expected
    for split in ("train", "val"):
        for name in wnids:
            (tmp_path / "full" / split / name).mkdir(parents=True)
    assert (
        main(["describe", "--scenario", "imagenet-subset-b50-5", "--data-root", str(tmp_path / "full"), "--json"]) == 0
    )
    info = json.loads(capsys.readouterr().out)
    names = sorted(name for step in info["steps"] for name in step["class_names"])
    assert names == expected and expected[:3] != wnids[:3]
    assert pick_subset(expected, 100) == expected  # a 100-class copy is taken as it is

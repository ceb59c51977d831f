"""Backbones and the incremental head."""

import copy

import torch

from cil.models import build_net
from cil.models.resnet_cifar import CifarResNet


def test_resnet32_shape_and_size():
    net = CifarResNet(32)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.features.shape == (2, 64)
    assert [tuple(m.shape[1:]) for m in out.stage_maps] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    # He et al. 2016 (Table 6) count 0.46M with a 10-class classifier: 463,504 + 64 * 10 + 10
    assert sum(p.numel() for p in net.parameters()) + 64 * 10 + 10 == 464154


def test_last_relu_off_gives_signed_features():
    torch.manual_seed(0)
    net = CifarResNet(8, widths=(8, 16, 32), last_relu=False).eval()
    assert (net(torch.randn(4, 3, 32, 32)).features < 0).any()
    assert (CifarResNet(8, widths=(8, 16, 32)).eval()(torch.randn(4, 3, 32, 32)).features >= 0).all()


def test_head_grows_and_keeps_old_weights():
    torch.manual_seed(0)
    net = build_net("tiny", "linear")
    net.head.add_classes(5)
    x = torch.randn(3, 3, 32, 32)
    net.eval()
    before = net(x).logits.detach()
    old_weight = copy.deepcopy(net.head.groups[0].weight.detach())
    net.head.add_classes(3)
    after = net(x).logits.detach()
    assert after.shape == (3, 8) and net.n_classes == 8
    assert torch.equal(after[:, :5], before)
    assert torch.equal(net.head.groups[0].weight, old_weight)


def test_resnet18_stages():
    net = build_net("resnet18", "linear")
    net.head.add_classes(4)
    out = net.eval()(torch.randn(1, 3, 64, 64))
    assert out.logits.shape == (1, 4) and out.features.shape == (1, 512) and len(out.stage_maps) == 4

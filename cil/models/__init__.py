"""Backbones and heads by name."""

from __future__ import annotations

from collections.abc import Callable

from cil.errors import UserError, did_you_mean
from cil.models.backbone import Backbone, BackboneOutput
from cil.models.heads import CosineHead, IncrementalHead, LinearHead, LocalSimilarityHead
from cil.models.net import IncrementalNet, NetOutput
from cil.models.resnet import ResNet18
from cil.models.resnet_cifar import CifarResNet

BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet32": lambda **kw: CifarResNet(32, **kw),
    "resnet20": lambda **kw: CifarResNet(20, **kw),
    "resnet8": lambda **kw: CifarResNet(8, **kw),
    "tiny": lambda **kw: CifarResNet(8, widths=(8, 16, 32), **kw),
    "resnet18": lambda last_relu=True, shortcut="B": ResNet18(last_relu=last_relu),
}
"""resnet32/20/8 and tiny take 32x32 inputs; resnet18 takes ImageNet-sized ones (its
shortcuts are always 1x1 convolutions)."""

HEADS: dict[str, Callable[..., IncrementalHead]] = {
    "linear": lambda dim, proxies_per_class=1: LinearHead(dim),
    "cosine": lambda dim, proxies_per_class=1: CosineHead(dim),
    "lsc": lambda dim, proxies_per_class=10: LocalSimilarityHead(dim, proxies_per_class),
}
"""linear: fully connected; cosine: LUCIR's cosine normalisation; lsc: PODNet's local similarity classifier."""


def build_net(backbone: str, head: str, *, last_relu: bool = True, shortcut: str = "A",
              proxies_per_class: int = 10) -> IncrementalNet:
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone '{backbone}' (model.backbone){did_you_mean(backbone, list(BACKBONES))}")
    if head not in HEADS:
        raise UserError(f"unknown head '{head}' (model.head){did_you_mean(head, list(HEADS))}")
    net = BACKBONES[backbone](last_relu=last_relu, shortcut=shortcut)
    return IncrementalNet(net, HEADS[head](net.out_dim, proxies_per_class=proxies_per_class))


__all__ = ["BACKBONES", "HEADS", "Backbone", "BackboneOutput", "CifarResNet", "CosineHead", "IncrementalHead",
           "IncrementalNet", "LinearHead", "LocalSimilarityHead", "NetOutput", "ResNet18", "build_net"]

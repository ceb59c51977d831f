"""Backbones and heads by name."""

from __future__ import annotations

from collections.abc import Callable

from cil.errors import UserError, did_you_mean
from cil.models.backbone import Backbone, BackboneOutput
from cil.models.heads import CosineHead, IncrementalHead, LinearHead, LocalSimilarityHead
from cil.models.net import IncrementalNet, NetOutput
from cil.models.podnet_resnet import PODNetResNet32
from cil.models.resnet import ResNet18
from cil.models.resnet_cifar import CifarResNet

BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet32": lambda **kw: CifarResNet(32, **kw),
    "resnet20": lambda **kw: CifarResNet(20, **kw),
    "resnet8": lambda **kw: CifarResNet(8, **kw),
    "tiny": lambda **kw: CifarResNet(8, widths=(8, 16, 32), **kw),
    "podnet-resnet32": lambda last_relu=False, shortcut="A": PODNetResNet32(),
    "resnet18": lambda last_relu=True, shortcut="B": ResNet18(last_relu=last_relu),
}
"""resnet32/20/8, tiny and podnet-resnet32 take 32x32 inputs; resnet18 takes ImageNet-sized ones
(its shortcuts are always 1x1 convolutions). podnet-resnet32 is PODNet's own CIFAR network (no
ReLU after residual additions, four stages); model.last_relu and model.shortcut do not apply to it."""

HEADS: dict[str, Callable[..., IncrementalHead]] = {
    "linear": lambda dim, **options: LinearHead(dim),
    "cosine": lambda dim, **options: CosineHead(dim),
    "lsc": lambda dim, proxies_per_class=10, lsc_similarity="cosine", **options: LocalSimilarityHead(
        dim, proxies_per_class, lsc_similarity),
}
"""linear: fully connected; cosine: LUCIR's cosine normalisation; lsc: PODNet's local similarity classifier."""


def build_net(backbone: str, head: str, *, last_relu: bool = True, shortcut: str = "A",
              proxies_per_class: int = 10, lsc_similarity: str = "cosine") -> IncrementalNet:
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone '{backbone}' (model.backbone){did_you_mean(backbone, list(BACKBONES))}")
    if head not in HEADS:
        raise UserError(f"unknown head '{head}' (model.head){did_you_mean(head, list(HEADS))}")
    net = BACKBONES[backbone](last_relu=last_relu, shortcut=shortcut)
    return IncrementalNet(net, HEADS[head](net.out_dim, proxies_per_class=proxies_per_class,
                                           lsc_similarity=lsc_similarity))


__all__ = ["BACKBONES", "HEADS", "Backbone", "BackboneOutput", "CifarResNet", "CosineHead", "IncrementalHead",
           "IncrementalNet", "LinearHead", "LocalSimilarityHead", "NetOutput", "PODNetResNet32", "ResNet18",
           "build_net"]

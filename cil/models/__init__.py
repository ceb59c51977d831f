"""Backbones and heads by name."""

from __future__ import annotations

from collections.abc import Callable

from cil.errors import UserError, did_you_mean
from cil.models.backbone import Backbone, BackboneOutput
from cil.models.heads import IncrementalHead, LinearHead
from cil.models.net import IncrementalNet, NetOutput
from cil.models.resnet import ResNet18
from cil.models.resnet_cifar import CifarResNet

BACKBONES: dict[str, Callable[[], Backbone]] = {
    "resnet32": lambda: CifarResNet(32),
    "resnet20": lambda: CifarResNet(20),
    "resnet8": lambda: CifarResNet(8),
    "tiny": lambda: CifarResNet(8, widths=(8, 16, 32)),
    "resnet18": lambda: ResNet18(),
}
"""resnet32/20/8 and tiny take 32x32 inputs; resnet18 takes ImageNet-sized ones."""

HEADS: dict[str, Callable[[int], IncrementalHead]] = {
    "linear": LinearHead,
}


def build_net(backbone: str, head: str) -> IncrementalNet:
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone '{backbone}' (model.backbone){did_you_mean(backbone, list(BACKBONES))}")
    if head not in HEADS:
        raise UserError(f"unknown head '{head}' (model.head){did_you_mean(head, list(HEADS))}")
    net = BACKBONES[backbone]()
    return IncrementalNet(net, HEADS[head](net.out_dim))


__all__ = ["BACKBONES", "HEADS", "Backbone", "BackboneOutput", "IncrementalHead", "IncrementalNet", "LinearHead",
           "NetOutput", "build_net", "CifarResNet", "ResNet18"]

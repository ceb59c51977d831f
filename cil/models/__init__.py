"""Backbones and heads by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from cil.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from cil.models.backbone import Backbone
    from cil.models.heads import IncrementalHead
    from cil.models.net import IncrementalNet


def _cifar_resnet(depth: int, **options) -> Backbone:
    from cil.models.resnet_cifar import CifarResNet

    return CifarResNet(depth, **options)


def _podnet_resnet32(last_relu: bool = False, shortcut: str = "A") -> Backbone:
    from cil.models.podnet_resnet import PODNetResNet32

    return PODNetResNet32()


def _resnet18(last_relu: bool = True, shortcut: str = "B") -> Backbone:
    from cil.models.resnet import ResNet18

    return ResNet18(last_relu=last_relu)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet32": lambda **kw: _cifar_resnet(32, **kw),
    "resnet20": lambda **kw: _cifar_resnet(20, **kw),
    "resnet8": lambda **kw: _cifar_resnet(8, **kw),
    "tiny": lambda **kw: _cifar_resnet(8, widths=(8, 16, 32), **kw),
    "podnet-resnet32": _podnet_resnet32,
    "resnet18": _resnet18,
}
"""resnet32/20/8, tiny and podnet-resnet32 take 32x32 inputs; resnet18 takes ImageNet-sized ones
(its shortcuts are always 1x1 convolutions). podnet-resnet32 is PODNet's own CIFAR network (no
ReLU after residual additions, four stages); model.last_relu and model.shortcut do not apply to it.
tiny (widths 8, 16, 32) is for tests; with shortcut B, channels-last layout and an odd batch, PyTorch 2.14 crashes
on the CPU in the backward pass of its 8-channel strided 1x1 convolution (wider networks are not affected).
The network modules (and torch) are imported when a backbone is built, not when its name is checked."""


def _head(name: str, dim: int, proxies_per_class: int = 10, lsc_similarity: str = "cosine") -> IncrementalHead:
    from cil.models import heads

    if name == "linear":
        return heads.LinearHead(dim)
    if name == "cosine":
        return heads.CosineHead(dim)
    return heads.LocalSimilarityHead(dim, proxies_per_class, lsc_similarity)


HEADS: dict[str, Callable[..., IncrementalHead]] = {
    name: partial(_head, name) for name in ("linear", "cosine", "lsc")
}
"""linear: fully connected; cosine: LUCIR's cosine normalisation; lsc: PODNet's local similarity classifier."""


def build_net(backbone: str, head: str, *, last_relu: bool = True, shortcut: str = "A",
              proxies_per_class: int = 10, lsc_similarity: str = "cosine") -> IncrementalNet:
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone '{backbone}' (model.backbone){did_you_mean(backbone, list(BACKBONES))}")
    if head not in HEADS:
        raise UserError(f"unknown head '{head}' (model.head){did_you_mean(head, list(HEADS))}")
    from cil.models.net import IncrementalNet

    net = BACKBONES[backbone](last_relu=last_relu, shortcut=shortcut)
    return IncrementalNet(net, HEADS[head](net.out_dim, proxies_per_class=proxies_per_class,
                                           lsc_similarity=lsc_similarity))


_LAZY = {"Backbone": "backbone", "BackboneOutput": "backbone", "CosineHead": "heads", "IncrementalHead": "heads",
         "LinearHead": "heads", "LocalSimilarityHead": "heads", "IncrementalNet": "net", "NetOutput": "net",
         "PODNetResNet32": "podnet_resnet", "ResNet18": "resnet", "CifarResNet": "resnet_cifar"}


def __getattr__(name: str) -> Any:
    """The network classes, imported on first use (``cil list`` and config checks need only the names)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"cil.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cil.models' has no attribute '{name}'")


__all__ = ["BACKBONES", "HEADS", "Backbone", "BackboneOutput", "CifarResNet", "CosineHead", "IncrementalHead",
           "IncrementalNet", "LinearHead", "LocalSimilarityHead", "NetOutput", "PODNetResNet32", "ResNet18",
           "build_net"]

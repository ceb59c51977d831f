"""Backbones and heads by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cil.registry import Registry

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


BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone", "model.backbone")
"""Backbones by name; the network modules (and torch) are imported when one is built, not when its name is
checked. resnet32/20/8, tiny and podnet-resnet32 take 32x32 inputs; resnet18 takes ImageNet-sized ones (its
shortcuts are always 1x1 convolutions). podnet-resnet32 is PODNet's own CIFAR network (no ReLU after residual
additions, four stages); model.last_relu and model.shortcut do not apply to it. tiny (widths 8, 16, 32) is for
tests; with shortcut B, channels-last layout and an odd batch, PyTorch 2.14 crashes on the CPU in the backward
pass of its 8-channel strided 1x1 convolution (wider networks are not affected)."""
BACKBONES.add("resnet32", lambda **kw: _cifar_resnet(32, **kw), "ResNet-32 for 32x32 images (He et al.)")
BACKBONES.add("resnet20", lambda **kw: _cifar_resnet(20, **kw), "ResNet-20 for 32x32 images")
BACKBONES.add("resnet8", lambda **kw: _cifar_resnet(8, **kw), "ResNet-8 for 32x32 images (quick runs)")
BACKBONES.add("tiny", lambda **kw: _cifar_resnet(8, widths=(8, 16, 32), **kw), "a narrow ResNet-8 for tests")
BACKBONES.add("podnet-resnet32", _podnet_resnet32, "PODNet's CIFAR ResNet-32 (no ReLU after additions, 4 stages)")
BACKBONES.add("resnet18", _resnet18, "ResNet-18 for ImageNet-sized images")


def _linear(dim: int, head_bias: bool = True, **options) -> IncrementalHead:
    from cil.models.heads import LinearHead

    return LinearHead(dim, bias=head_bias)


def _cosine(dim: int, **options) -> IncrementalHead:
    from cil.models.heads import CosineHead

    return CosineHead(dim)


def _lsc(dim: int, proxies_per_class: int = 10, lsc_similarity: str = "cosine", **options) -> IncrementalHead:
    from cil.models.heads import LocalSimilarityHead

    return LocalSimilarityHead(dim, proxies_per_class, lsc_similarity)


HEADS: Registry[Callable[..., IncrementalHead]] = Registry("head", "model.head")
"""Incremental classifier heads by name, each built from the embedding size (and the lsc head's options)."""
HEADS.add("linear", _linear, "fully connected")
HEADS.add("cosine", _cosine, "LUCIR's cosine normalisation with a learned scale")
HEADS.add("lsc", _lsc, "PODNet's local similarity classifier (proxies per class, learned scale)")


def build_net(
    backbone: str,
    head: str,
    *,
    last_relu: bool = True,
    shortcut: str = "A",
    proxies_per_class: int = 10,
    lsc_similarity: str = "cosine",
    head_bias: bool = True,
) -> IncrementalNet:
    build_backbone, build_head = BACKBONES[backbone], HEADS[head]  # unknown names: one line each
    from cil.models.net import IncrementalNet

    net = build_backbone(last_relu=last_relu, shortcut=shortcut)
    return IncrementalNet(
        net,
        build_head(
            net.out_dim, proxies_per_class=proxies_per_class, lsc_similarity=lsc_similarity, head_bias=head_bias
        ),
    )


_LAZY = {
    "Backbone": "backbone",
    "BackboneOutput": "backbone",
    "CosineHead": "heads",
    "IncrementalHead": "heads",
    "LinearHead": "heads",
    "LocalSimilarityHead": "heads",
    "IncrementalNet": "net",
    "NetOutput": "net",
    "PODNetResNet32": "podnet_resnet",
    "ResNet18": "resnet",
    "CifarResNet": "resnet_cifar",
}


def __getattr__(name: str) -> Any:
    """The network classes, imported on first use (``cil list`` and config checks need only the names)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"cil.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cil.models' has no attribute '{name}'")


__all__ = [
    "BACKBONES",
    "HEADS",
    "Backbone",
    "BackboneOutput",
    "CifarResNet",
    "CosineHead",
    "IncrementalHead",
    "IncrementalNet",
    "LinearHead",
    "LocalSimilarityHead",
    "NetOutput",
    "PODNetResNet32",
    "ResNet18",
    "build_net",
]

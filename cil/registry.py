"""Components by name: methods, classification losses and extra plugins.

Each component registers a typed config dataclass (a ``ComponentConfig`` subclass) and a class
built from it::

    @register("loss", "my-loss", MyLossConfig, "one line saying what it is")
    class MyLoss(ClassificationLoss): ...

cil's own components live in the ``strategies`` package. Third-party ones are found through the
``cil.plugins`` entry-point group or the ``CIL_PLUGINS`` environment variable (comma-separated
module names), both imported before any name is looked up.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cil.config import ComponentConfig
from cil.errors import UserError, did_you_mean

KINDS = ("method", "loss", "plugin")


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    config: type[ComponentConfig]
    factory: Callable[[Any], Any]
    summary: str


_REGISTRY: dict[tuple[str, str], Component] = {}
_loaded = False


def register(kind: str, name: str, config: type[ComponentConfig], summary: str):
    """Class decorator: make ``cls(config)`` available as component ``name`` of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")

    def wrap(cls):
        _REGISTRY[(kind, name)] = Component(kind, name, config, cls, summary)
        return cls

    return wrap


def load_components() -> None:
    """Import cil's strategies and any third-party plugin modules (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("strategies")
    from importlib.metadata import entry_points

    for ep in entry_points(group="cil.plugins"):
        ep.load()
    for module in filter(None, (m.strip() for m in os.environ.get("CIL_PLUGINS", "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"CIL_PLUGINS: cannot import '{module}': {exc}") from None


def names(kind: str) -> list[str]:
    load_components()
    return sorted(n for k, n in _REGISTRY if k == kind)


def component(kind: str, name: str) -> Component:
    load_components()
    if (kind, name) not in _REGISTRY:
        raise UserError(f"unknown {kind} '{name}'{did_you_mean(name, names(kind))}")
    return _REGISTRY[(kind, name)]


def config_class(kind: str, name: str) -> type[ComponentConfig]:
    return component(kind, name).config


def create(kind: str, config: ComponentConfig) -> Any:
    return component(kind, config.name).factory(config)


def all_components() -> list[Component]:
    load_components()
    return sorted(_REGISTRY.values(), key=lambda c: (KINDS.index(c.kind), c.name))

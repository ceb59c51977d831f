"""Components by name: methods, classification losses and extra plugins.

Each component registers a typed config dataclass (a ``ComponentConfig`` subclass) and a class
built from it::

    @register("loss", "my-loss", MyLossConfig, "one line saying what it is")
    class MyLoss(ClassificationLoss): ...

Every module of the ``cil.plugins`` entry-point group is imported before any name is looked up:
cil's own components (``cil.strategies``, the repository's ``strategies/`` folder, declared in
cil's pyproject.toml as the entry point ``builtin``) exactly as a third-party package's. Modules
named in the ``CIL_PLUGINS`` environment variable (comma-separated) are imported too, for code
that is not installed as a package.
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


ENTRY_POINT_GROUP = "cil.plugins"


def load_components() -> None:
    """Import every registered plugin module, cil's own included, and the ``CIL_PLUGINS`` modules (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    found = list(entry_points(group=ENTRY_POINT_GROUP))
    if not any(ep.value == "cil.strategies" for ep in found):
        raise UserError(f"cil's own methods are not registered (no '{ENTRY_POINT_GROUP}' entry point "
                        f"'cil.strategies' in this Python): install cil again with 'pip install -e .' in its "
                        f"checkout (or run 'make test' / 'make demo')")
    for ep in found:
        try:
            ep.load()
        except ImportError as exc:
            raise UserError(f"plugin entry point '{ep.name} = {ep.value}' cannot be imported: {exc}") from None
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

"""Components by name: methods, classification losses and extra plugins.

Each component registers a typed config dataclass (a ``ComponentConfig`` subclass) and a class
built from it::

    @register("loss", "my-loss", MyLossConfig, "one line saying what it is")
    class MyLoss(ClassificationLoss): ...

A package may instead *declare* its components up front (name, module, summary) with
``declare_components``; each module is then imported when its component is first looked up, and
registers there with ``@register(kind, name, Config)``. Naming and listing components
(``cil list``, "did you mean") thus imports neither torch nor Avalanche. cil's own components
are declared this way.

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


@dataclass(frozen=True)
class Declaration:
    """A component known by name before its module is imported."""

    kind: str
    name: str
    module: str
    summary: str


_REGISTRY: dict[tuple[str, str], Component] = {}
_DECLARED: dict[tuple[str, str], Declaration] = {}
_loaded = False


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def register(kind: str, name: str, config: type[ComponentConfig], summary: str | None = None):
    """Class decorator: make ``cls(config)`` available as component ``name`` of ``kind``.

    ``summary`` may be left out for a declared component (its declaration has it).
    """
    _check_kind(kind)

    def wrap(cls):
        declared = _DECLARED.get((kind, name))
        text = summary if summary is not None else (declared.summary if declared else "")
        _REGISTRY[(kind, name)] = Component(kind, name, config, cls, text)
        return cls

    return wrap


def declare_components(package: str, entries: list[tuple[str, str, str, str]]) -> None:
    """Declare ``(kind, name, module, summary)`` components; ``module`` is relative to ``package``.

    The module is imported when the component is first looked up, and must ``register`` it.
    """
    for kind, name, module, summary in entries:
        _check_kind(kind)
        _DECLARED[(kind, name)] = Declaration(kind, name, f"{package}.{module}", summary)


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
    return sorted({n for k, n in [*_REGISTRY, *_DECLARED] if k == kind})


def component(kind: str, name: str) -> Component:
    """The registered component, its module imported first if it was only declared."""
    load_components()
    key = (kind, name)
    if key not in _REGISTRY and key in _DECLARED:
        module = _DECLARED[key].module
        importlib.import_module(module)
        if key not in _REGISTRY:
            raise UserError(f"{kind} '{name}' is declared in module '{module}', which does not register it")
    if key not in _REGISTRY:
        raise UserError(f"unknown {kind} '{name}'{did_you_mean(name, names(kind))}")
    return _REGISTRY[key]


def config_class(kind: str, name: str) -> type[ComponentConfig]:
    return component(kind, name).config


def create(kind: str, config: ComponentConfig) -> Any:
    return component(kind, config.name).factory(config)


def summaries() -> list[tuple[str, str, str]]:
    """(kind, name, summary) of every component, registered or only declared; imports no module."""
    load_components()
    found = {key: (d.kind, d.name, d.summary) for key, d in _DECLARED.items()}
    found.update({key: (c.kind, c.name, c.summary) for key, c in _REGISTRY.items()})
    return sorted(found.values(), key=lambda entry: (KINDS.index(entry[0]), entry[1]))

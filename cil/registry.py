"""Named things, one way: components (methods, losses, plugins), datasets, backbones, heads and loggers.

Every kind of named thing is a ``Registry``: entries are added under a name with a one-line summary,
or *declared* up front (name, module, summary) and added by their module when first looked up, so that
naming and listing them (``cil list``, "did you mean", config checks) imports neither torch nor
Avalanche. An unknown name is one ``UserError`` listing the valid ones.

Components register a typed config dataclass (a ``ComponentConfig`` subclass) and a class built from it::

    @register("loss", "my-loss", MyLossConfig, "one line saying what it is")
    class MyLoss(ClassificationLoss): ...

A package may instead declare its components with ``declare_components`` and register each in its
module with ``@register(kind, name, Config)``; cil's own are declared this way (strategies/__init__.py).
Every module of the ``cil.plugins`` entry-point group is imported before a component name is looked
up: cil's own components (``cil.strategies``, the entry point ``builtin``) exactly as a third-party
package's. Modules named in the ``CIL_PLUGINS`` environment variable (comma-separated) are imported
too, for code that is not installed as a package.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cil.errors import UserError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name, each with a one-line summary; declared ones are imported on first lookup."""

    def __init__(self, kind: str, key: str = "", before_lookup: Callable[[], None] | None = None):
        self.kind = kind
        self.key = key
        """The config key or option that names an entry, for messages (e.g. "model.backbone")."""
        self._entries: dict[str, T] = {}
        self._summaries: dict[str, str] = {}
        self._modules: dict[str, str] = {}
        self._before_lookup = before_lookup

    def add(self, name: str, entry: T, summary: str | None = None) -> T:
        """Make ``entry`` available as ``name`` (``summary`` may be left out for a declared name)."""
        self._entries[name] = entry
        if summary is not None or name not in self._summaries:
            self._summaries[name] = summary or ""
        return entry

    def register(self, name: str, summary: str | None = None) -> Callable[[T], T]:
        """Decorator form of ``add``."""
        return lambda entry: self.add(name, entry, summary)

    def declare(self, name: str, module: str, summary: str) -> None:
        """``name`` is added by ``module`` when it is first looked up."""
        self._modules[name] = module
        self._summaries[name] = summary

    def names(self) -> list[str]:
        self._prepare()
        return sorted({*self._entries, *self._modules})

    def summaries(self) -> list[tuple[str, str]]:
        """(name, summary) of every entry, added or only declared; imports no module."""
        return [(name, self._summaries.get(name, "")) for name in self.names()]

    def get(self, name: str) -> T:
        """The entry, its module imported first if it was only declared; one UserError if unknown."""
        self._prepare()
        if name not in self._entries and name in self._modules:
            importlib.import_module(self._modules[name])
            if name not in self._entries:
                raise UserError(
                    f"{self.kind} '{name}' is declared in module '{self._modules[name]}', which does not register it"
                )
        if name not in self._entries:
            where = f" ({self.key})" if self.key else ""
            raise UserError(f"unknown {self.kind} '{name}'{where}{did_you_mean(name, self.names())}")
        return self._entries[name]

    def values(self) -> list[T]:
        return [self.get(name) for name in self.names()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._prepare()
        return name in self._entries or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _prepare(self) -> None:
        if self._before_lookup is not None:
            self._before_lookup()


# ------------------------------------------------------------------------------------------------
# Components: methods, classification losses, extra plugins
# ------------------------------------------------------------------------------------------------

KINDS = ("method", "loss", "plugin")
ENTRY_POINT_GROUP = "cil.plugins"
_loaded = False


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    config: type
    """The component's config dataclass (a ``cil.config.ComponentConfig`` subclass)."""
    factory: Callable[[Any], Any]


def load_components() -> None:
    """Import every registered plugin module, cil's own included, and the ``CIL_PLUGINS`` modules (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    found = list(entry_points(group=ENTRY_POINT_GROUP))
    if not any(ep.value == "cil.strategies" for ep in found):
        raise UserError(
            f"cil's own methods are not registered (no '{ENTRY_POINT_GROUP}' entry point "
            f"'cil.strategies' in this Python): install cil again with 'pip install -e .' in its "
            f"checkout (or run 'make test' / 'make demo')"
        )
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


COMPONENTS: dict[str, Registry[Component]] = {kind: Registry(kind, before_lookup=load_components) for kind in KINDS}
"""The components of every kind, by name."""


def _registry(kind: str) -> Registry[Component]:
    if kind not in COMPONENTS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return COMPONENTS[kind]


def register(kind: str, name: str, config: type, summary: str | None = None) -> Callable[[type], type]:
    """Class decorator: make ``cls(config)`` available as component ``name`` of ``kind``.

    ``summary`` may be left out for a declared component (its declaration has it).
    """
    registry = _registry(kind)

    def wrap(cls: type) -> type:
        registry.add(name, Component(kind, name, config, cls), summary)
        return cls

    return wrap


def declare_components(package: str, entries: list[tuple[str, str, str, str]]) -> None:
    """Declare ``(kind, name, module, summary)`` components; ``module`` is relative to ``package``.

    The module is imported when the component is first looked up, and must ``register`` it.
    """
    for kind, name, module, summary in entries:
        _registry(kind).declare(name, f"{package}.{module}", summary)


def names(kind: str) -> list[str]:
    return _registry(kind).names()


def component(kind: str, name: str) -> Component:
    """The registered component, its module imported first if it was only declared."""
    return _registry(kind).get(name)


def config_class(kind: str, name: str) -> type:
    return component(kind, name).config


def create(kind: str, config: Any) -> Any:
    return component(kind, config.name).factory(config)


def summaries() -> list[tuple[str, str, str]]:
    """(kind, name, summary) of every component, registered or only declared; imports no module."""
    return [(kind, name, summary) for kind in KINDS for name, summary in COMPONENTS[kind].summaries()]

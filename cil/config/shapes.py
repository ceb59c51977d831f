"""The expected structure of every file cil reads, checked before the content is used.

A shape is a small declarative description (``Mapping``, ``ListOf``, ``OneOf`` and the scalar kinds);
``check(value, shape, file)`` raises one ``UserError`` naming the file, the key and what was
expected, e.g. ``sweep file s.yaml: 'grid' must be a mapping of key to values, got a list``. The
shapes of cil's files are at the end of this module; a file's *values* (ranges, names) are checked
afterwards by the config layer, which names the key too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from cil.config.schema import COMPONENT_SECTIONS, SECTION_NAMES, RunConfig
from cil.errors import UserError

MISSING = "<missing>"
UNKNOWN = "<unknown>"


class Shape:
    description = "a value"

    def problem(self, value: Any, key: str) -> tuple[str, str] | None:
        """(key, what was expected) of the first mismatch, or None."""
        raise NotImplementedError


@dataclass(frozen=True)
class Kind(Shape):
    types: tuple[type, ...]
    description: str = "a value"

    def problem(self, value: Any, key: str) -> tuple[str, str] | None:
        if isinstance(value, bool) and bool not in self.types and object not in self.types:
            return key, self.description
        return None if isinstance(value, self.types) else (key, self.description)


STR = Kind((str,), "a string")
INT = Kind((int,), "an integer")
NUMBER = Kind((int, float), "a number")
BOOL = Kind((bool,), "true or false")
NULL = Kind((type(None),), "null")
SCALAR = Kind((str, int, float, bool, type(None)), "a single value")
ANY = Kind((object,), "a value")


@dataclass(frozen=True)
class ListOf(Shape):
    item: Shape
    non_empty: bool = False

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"a{' non-empty' if self.non_empty else ''} list, each item {self.item.description}"

    def problem(self, value: Any, key: str) -> tuple[str, str] | None:
        if not isinstance(value, list) or (self.non_empty and not value):
            return key, self.description
        for i, item in enumerate(value):
            found = self.item.problem(item, f"{key}.{i}" if key else str(i))
            if found:
                return found
        return None


@dataclass(frozen=True)
class OneOf(Shape):
    options: tuple[Shape, ...]

    @property
    def description(self) -> str:  # type: ignore[override]
        return " or ".join(o.description for o in self.options)

    def problem(self, value: Any, key: str) -> tuple[str, str] | None:
        found = [o.problem(value, key) for o in self.options]
        if any(f is None for f in found):
            return None
        deeper = [
            f for f in found if f is not None and f[0] != key
        ]  # the value had the right container, a part of it is wrong
        return deeper[0] if deeper else (key, self.description)


@dataclass(frozen=True)
class Mapping(Shape):
    """A mapping with known keys (``fields``; ``required`` ones must be there) and, when ``values`` is
    set, any other string key holding that shape; otherwise unknown keys are allowed unchecked
    unless ``closed``."""

    fields: dict[str, Shape] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    values: Shape | None = None
    closed: bool = False
    what: str = "a mapping"

    @property
    def description(self) -> str:  # type: ignore[override]
        return self.what

    def problem(self, value: Any, key: str) -> tuple[str, str] | None:
        if not isinstance(value, dict):
            return key, self.description
        for name in self.required:
            if name not in value:
                return _join(key, name), MISSING
        for name, item in value.items():
            inner = _join(key, str(name))
            shape = self.fields.get(name) if isinstance(name, str) else None
            if shape is None:
                if self.values is not None and isinstance(name, str):
                    shape = self.values
                elif self.closed or not isinstance(name, str):
                    return inner, UNKNOWN + ", ".join(self.fields)
                else:
                    continue
            found = shape.problem(item, inner)
            if found:
                return found
        return None


def check(value: Any, shape: Shape, file: str) -> None:
    """Raise one UserError naming ``file``, the key and the expectation when ``value`` is not ``shape``."""
    found = shape.problem(value, "")
    if found is None:
        return
    key, expected = found
    if expected == MISSING:
        raise UserError(f"{file}: key '{key}' is missing")
    if expected.startswith(UNKNOWN):
        raise UserError(f"{file}: unknown key '{key}'; valid: {expected[len(UNKNOWN) :]}")
    where = f"'{key}'" if key else "the file"
    raise UserError(f"{file}: {where} must be {expected}, got {describe(_at(value, key))}")


def describe(value: Any) -> str:
    """How a value reads in an error: its kind, and itself when short."""
    kinds = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    kind = kinds.get(type(value), type(value).__name__)
    if value is None:
        return kind
    shown = repr(value)
    return f"{kind} {shown}" if len(shown) <= 40 and not isinstance(value, (dict, list)) else kind


def _at(value: Any, key: str) -> Any:
    for part in [p for p in key.split(".") if p] if key else []:
        if isinstance(value, dict):
            value = value.get(part, value.get(int(part)) if part.isdigit() else None)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
    return value


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


# ------------------------------------------------------------------------------- cil's files

NAMES = OneOf((STR, ListOf(STR)))
COMPONENT = OneOf((STR, Mapping(required=("name",), fields={"name": STR}, what="a mapping with a 'name'")))
SECTION = Mapping(values=ANY, what="a mapping of keys to values")
COMPONENT_LAYER = OneOf((STR, Mapping(fields={"name": STR}, what="a mapping of keys to values")))
"""A method or loss in a strategy layer: a name, or keys to merge into the inherited one (name optional)."""

_SECTIONS: dict[str, Shape] = {f.name: SECTION for f in fields(RunConfig) if f.name in SECTION_NAMES}
"""The config's sections (memory, model, optim, data, runtime, logging), read from RunConfig."""
_CONFIG_FIELDS: dict[str, Shape] = {
    "scenario": STR,
    "strategy": STR,
    **{name: COMPONENT for name in COMPONENT_SECTIONS},
    "plugins": ListOf(COMPONENT),
    **_SECTIONS,
}
"""A resolved config (results.json, checkpoints): every component named."""
_LAYER_FIELDS: dict[str, Shape] = {
    **{name: COMPONENT_LAYER for name in COMPONENT_SECTIONS},
    "plugins": ListOf(COMPONENT),
    **_SECTIONS,
}
"""A layer of a strategy or scenario file, merged onto what it extends."""

STRATEGY_FILE = Mapping(
    fields={
        "extends": STR,
        "description": STR,
        "profiles": Mapping(values=Mapping(fields=_LAYER_FIELDS), what="a mapping of profile name to settings"),
        **_LAYER_FIELDS,
    },
    what="a mapping of keys to values",
)
"""A strategy YAML file: its sections' keys and values are checked by the config layer afterwards."""

PROFILE_FILE = Mapping(
    fields={
        "description": STR,
        "plugin_settings": Mapping(values=SECTION, what="a mapping of plugin name to its settings"),
        **_LAYER_FIELDS,
    },
    what="a mapping of keys to values",
)
"""A named profile (configs/profiles/NAME.yaml): settings for every strategy, and ``plugin_settings`` for the
plugins of that name wherever a run has them."""

SCENARIO_FILE = Mapping(fields={"profile": NAMES, **_LAYER_FIELDS}, what="a mapping of keys to values")
"""``profile``: one name, or a list of them applied in order (``[imagenet, imagenet-full]``)."""

_GRID = Mapping(values=OneOf((SCALAR, ListOf(SCALAR, non_empty=True))), what="a mapping of key to values")
SWEEP_FILE = Mapping(
    fields={
        "description": STR,
        "seeds": OneOf((INT, ListOf(INT, non_empty=True))),
        "scenarios": NAMES,
        "strategies": NAMES,
        "grid": _GRID,
        "set": OneOf((STR, ListOf(STR))),
        "profiles": NAMES,
        "sweeps": ListOf(
            Mapping(
                fields={"scenarios": NAMES, "strategies": NAMES, "grid": _GRID},
                closed=True,
                what="a mapping of scenarios, strategies and grid",
            ),
            non_empty=True,
        ),
    },
    closed=True,
    what="a mapping of keys to values",
)

_STEP = Mapping(
    required=("step", "accuracy"),
    fields={"step": INT, "accuracy": NUMBER, "accuracy_per_group": OneOf((NULL, ListOf(OneOf((NUMBER, NULL)))))},
    what="a mapping of the step's metrics",
)
RESULTS_FILE = Mapping(
    required=("scenario", "strategy", "config", "steps", "status"),
    fields={
        "scenario": STR,
        "strategy": STR,
        "seed": INT,
        "config": Mapping(fields=_CONFIG_FIELDS),
        "steps": ListOf(_STEP),
        "status": STR,
        "n_steps": INT,
        "class_order": ListOf(INT),
        "avg_incremental_accuracy": OneOf((NUMBER, NULL)),
        "final_accuracy": OneOf((NUMBER, NULL)),
        "forgetting": OneOf((NUMBER, NULL)),
    },
    what="a JSON object",
)
"""results.json (docs/results.md): the keys every reader relies on."""

RESOLVED_CONFIG = Mapping(fields=_CONFIG_FIELDS)
"""A resolved config, as saved with every run."""

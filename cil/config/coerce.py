"""From the merged raw dict to validated dataclasses: every key known, every value of its type and range."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from cil.config.fields import ConfigError, check_ranges, join_key
from cil.config.layers import yaml_value
from cil.config.schema import COMPONENT_SECTIONS, ComponentConfig, RunConfig
from cil.errors import did_you_mean

ComponentLookup = Callable[[str, str], type]
"""(kind, name) -> the component's config dataclass; raises UserError for unknown names."""


def build_run_config(raw: dict[str, Any], lookup: ComponentLookup) -> RunConfig:
    """Convert the merged raw dict into a validated RunConfig."""
    raw = dict(raw)
    components: dict[str, Any] = {}
    for section in COMPONENT_SECTIONS:
        if section in raw:
            components[section] = _component(raw.pop(section), section, lookup, section)
    if "plugins" in raw:
        plugins = raw.pop("plugins") or []
        if not isinstance(plugins, list):
            raise ConfigError("invalid value for 'plugins': must be a list of plugin names or mappings")
        components["plugins"] = [_component(p, "plugin", lookup, _plugin_key(p, i)) for i, p in enumerate(plugins)]
        names = [p.name for p in components["plugins"]]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"invalid value for 'plugins': {', '.join(dupes)} listed twice")
    cfg = _from_dict(RunConfig, raw, "")
    for key, value in components.items():
        setattr(cfg, key, value)
    for section in COMPONENT_SECTIONS:
        getattr(cfg, section).validate_with(cfg, section)
    for plugin in cfg.plugins:
        plugin.validate_with(cfg, f"plugins.{plugin.name}")
    return cfg


def _plugin_key(entry: Any, position: int) -> str:
    """How an error names a plugin's keys: ``plugins.NAME`` as ``--set`` addresses them (the position while the
    entry has no name yet)."""
    name = entry if isinstance(entry, str) else entry.get("name") if isinstance(entry, dict) else None
    return f"plugins.{name}" if isinstance(name, str) and name else f"plugins.{position}"


def _component(value: Any, kind: str, lookup: ComponentLookup, prefix: str) -> ComponentConfig:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ConfigError(f"invalid value for '{prefix}': must be a name or a mapping with a 'name'")
    cls = lookup(kind, value["name"])
    obj = _from_dict(cls, value, prefix)
    return obj


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid value for '{prefix}': must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"unknown key '{join_key(prefix, key)}'{did_you_mean(key, list(fields))}")
    kwargs = {key: _coerce(value, hints[key], join_key(prefix, key)) for key, value in data.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing key '{join_key(prefix, missing[0])}'")
    obj = cls(**kwargs)
    check_ranges(obj, prefix)
    if hasattr(obj, "validate"):
        obj.validate(prefix)
    return obj


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1 or any(typing.get_origin(a) is list or dataclasses.is_dataclass(a) for a in args):
            raise ConfigError(errors[0] if errors else f"invalid value for '{key}'")
        raise ConfigError(
            f"invalid value for '{key}': expected {' or '.join(_expectation(a) for a in args)}, got {value!r}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"invalid value for '{key}': '{value}'; valid: {', '.join(map(str, args))}")
        return value
    if origin is list:
        if isinstance(value, str):  # "10,20" from the command line
            value = [yaml_value(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"invalid value for '{key}': expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}.{i}") for i, v in enumerate(value)] if args else list(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"invalid value for '{key}': expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"invalid value for '{key}': expected an integer, got {value!r}")
    if hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads '1e-4' as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"invalid value for '{key}': expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"invalid value for '{key}': expected a finite number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"invalid value for '{key}': expected a string, got {value!r}")
    if hint is Any:
        return value
    raise ConfigError(f"invalid value for '{key}': unsupported type {hint}")  # pragma: no cover


def _expectation(hint: Any) -> str:
    """What a value of type ``hint`` looks like, for error messages."""
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is Literal:
        return " or ".join(map(str, typing.get_args(hint)))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))

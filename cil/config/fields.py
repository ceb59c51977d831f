"""Declared value ranges of numeric config fields, checked when a config is built.

A field written ``lr: float = ranged(0.1, gt=0)`` carries its valid range in the dataclass's
field metadata; ``check_ranges`` reports the first value outside its range as one ConfigError
("invalid value for 'optim.lr': must be > 0"). Unset optional values (None) are not checked;
the elements of a list field are each checked against the field's range.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cil.errors import UserError


class ConfigError(UserError):
    """A configuration key or value is invalid."""


class IncompatibleConfigError(ConfigError):
    """Valid values that cannot work together (raised by ``validate_with``; a sweep lists these as invalid)."""


def join_key(prefix: str, key: str) -> str:
    """The dotted name of ``key`` inside section ``prefix`` ('' at the top level)."""
    return f"{prefix}.{key}" if prefix else key


def check(ok: bool, prefix: str, key: str, why: str) -> None:
    """One ConfigError naming ``prefix.key`` unless ``ok`` (for rules a range cannot say)."""
    if not ok:
        raise ConfigError(f"invalid value for '{join_key(prefix, key)}': {why}")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


@dataclass(frozen=True)
class Range:
    """An interval of valid values; either end may be open or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""
    """Appended to the error, e.g. "(0 = no exemplars)"."""

    def __contains__(self, value: float) -> bool:
        if value != value:  # NaN is in no range
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            text = (
                f"must be in {'(' if self.low_open else '['}{_number(self.low)}, "
                f"{_number(self.high)}{')' if self.high_open else ']'}"
            )
        elif self.low is not None:
            text = f"must be {'>' if self.low_open else '>='} {_number(self.low)}"
        else:
            assert self.high is not None
            text = f"must be {'<' if self.high_open else '<='} {_number(self.high)}"
        return f"{text} {self.note}" if self.note else text


def ranged(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    note: str = "",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field whose values must lie in the range given by ``ge``/``gt`` and ``le``/``lt``."""
    if ge is not None and gt is not None or le is not None and lt is not None:
        raise ValueError("give at most one lower and one upper bound")
    bounds = Range(
        low=gt if gt is not None else ge,
        high=lt if lt is not None else le,
        low_open=gt is not None,
        high_open=lt is not None,
        note=note,
    )
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"range": bounds})


def milestones_field(default_factory: Any = list) -> Any:
    """A schedule's milestones: positive epochs in increasing order (every schedule a config holds: the run's,
    a plugin stage's), checked as ranges are."""
    field = ranged(default_factory=default_factory, ge=1)
    return dataclasses.field(default_factory=default_factory, metadata={**field.metadata, "increasing": True})


def field_range(field: dataclasses.Field) -> Range | None:
    return field.metadata.get("range")


def check_field(cls: type, name: str, value: Any, label: str) -> None:
    """``value`` against the declared range of field ``name`` of dataclass ``cls`` (for a value given
    outside a config, e.g. a command-line option); ``label`` names it in the error."""
    bounds = field_range(next(f for f in dataclasses.fields(cls) if f.name == name))
    if bounds is not None and value is not None and value not in bounds:
        raise ConfigError(f"invalid value for '{label}': {bounds.describe()}")


def check_ranges(obj: Any, prefix: str) -> None:
    """Raise ConfigError for the first field of dataclass ``obj`` whose value is outside its declared range."""
    for field in dataclasses.fields(obj):
        bounds = field_range(field)
        value = getattr(obj, field.name)
        if bounds is None or value is None or isinstance(value, bool):
            continue
        values = value if isinstance(value, list) else [value]
        if field.metadata.get("increasing") and not (
            all(isinstance(v, int) and v in bounds for v in values) and values == sorted(set(values))
        ):
            raise ConfigError(f"invalid value for '{join_key(prefix, field.name)}': must be increasing positive epochs")
        if not all(isinstance(v, (int, float)) and v in bounds for v in values):
            raise ConfigError(f"invalid value for '{join_key(prefix, field.name)}': {bounds.describe()}")

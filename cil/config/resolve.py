"""A run's configuration from its layers (a new run) or from a saved run (resume), with the command line on top."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from cil.config.coerce import ComponentLookup, build_run_config
from cil.config.fields import ConfigError
from cil.config.layers import (
    apply_command_line,
    deep_merge,
    dotted_items,
    parse_set,
    scenario_layer,
    split_strategy,
    strategy_layers,
)
from cil.config.schema import RunConfig


def assemble(
    *,
    scenario: str,
    strategy: str,
    dataset: str,
    flags: dict[str, Any],
    sets: list[str],
    lookup: ComponentLookup,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Resolve a new run's config: defaults < scenario < strategy chain < profile < command line."""
    scenario_defaults = scenario_layer(dataset)
    profile = scenario_defaults.pop("profile", None) or []
    applied = [profile] if isinstance(profile, str) else list(profile)  # the most general first
    raw: dict[str, Any] = deep_merge({"scenario": scenario, "strategy": strategy}, scenario_defaults)
    for layer in strategy_layers(strategy):
        profiles = layer.pop("profiles", {}) or {}
        raw = deep_merge(raw, layer)
        for name in applied:
            if name in profiles:
                raw = deep_merge(raw, profiles[name])
    base, named_plugins = split_strategy(strategy)
    raw["plugins"] = list(raw.get("plugins") or []) + named_plugins
    # the run is filed and reported under its strategy and every plugin the command line added
    raw["strategy"] = "+".join([base, *named_plugins, *(flags.get("add_plugins") or [])])
    return _with_command_line(raw, flags, sets, lookup, overrides)


def resume_config(
    saved: dict[str, Any], *, flags: dict[str, Any], sets: list[str], lookup: ComponentLookup
) -> RunConfig:
    """The saved (resolved) config of a run with this command line's flags and ``--set``s on top."""
    return _with_command_line(upgrade_saved_config(saved), flags, sets, lookup)


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A copy of a saved config in today's keys: ``tensorboard: false`` became ``logging.loggers: []``."""
    config = copy.deepcopy(saved)
    if "tensorboard" in config:
        enabled = config.pop("tensorboard")
        if "logging" not in config:
            config["logging"] = {"loggers": ["tensorboard"] if enabled else []}
    return config


def _with_command_line(
    raw: dict[str, Any],
    flags: dict[str, Any],
    sets: list[str],
    lookup: ComponentLookup,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    raw, epochs = apply_command_line(raw, flags, sets, overrides)
    cfg = build_run_config(raw, lookup)
    if epochs is not None:
        if epochs < 1:
            raise ConfigError("invalid value for '--epochs': must be >= 1")
        if "optim.milestones" in _assigned_keys(sets, overrides):  # --set wins over --epochs' scaling
            cfg.optim = dataclasses.replace(cfg.optim, epochs=epochs)
        else:
            cfg.optim = cfg.optim.with_epochs(epochs)
    return cfg


def _assigned_keys(sets: list[str], overrides: dict[str, Any] | None) -> set[str]:
    """The dotted keys the command line's ``--set``s and the API's overrides assign."""
    keys = {".".join(parse_set(assignment)[0]) for assignment in sets}
    return keys | {key for key, _ in dotted_items(overrides or {})}

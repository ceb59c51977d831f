"""A run's configuration from its layers (a new run) or from a saved run (resume), with the command line on top."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from cil.config.coerce import ComponentLookup, build_run_config
from cil.config.fields import ConfigError, IncompatibleConfigError
from cil.config.layers import (
    apply_command_line,
    check_profiles,
    deep_merge,
    dotted_items,
    parse_set,
    profile_layer,
    scenario_layer,
    split_strategy,
    strategy_layers,
)
from cil.config.schema import RunConfig
from cil.errors import UserError


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
    """Resolve a new run's config: defaults < scenario < strategy chain < the dataset's profiles < named profiles
    (the imbalance's, then ``--profile``'s) < command line."""
    scenario_defaults = scenario_layer(dataset)
    profile = scenario_defaults.pop("profile", None) or []
    applied = [profile] if isinstance(profile, str) else list(profile)  # the most general first
    raw: dict[str, Any] = deep_merge({"scenario": scenario, "strategy": strategy}, scenario_defaults)
    layers = strategy_layers(strategy)
    sections = [layer.pop("profiles", {}) or {} for layer in layers]
    check_strategy_profiles(strategy, layers, sections, lookup)
    for layer, own in zip(layers, sections):
        raw = deep_merge(raw, layer)
        for name in applied:
            if name in own:
                raw = deep_merge(raw, own[name])
    flags = dict(flags)
    named = check_profiles(flags.pop("profiles", None) or [])
    base, named_plugins = split_strategy(strategy)
    with_plugins = {**raw, "plugins": list(raw.get("plugins") or []) + named_plugins}
    plugin_settings: dict[str, Any] = {}
    for name in [*imbalance_profiles(with_plugins, flags, sets, overrides), *named]:
        general = profile_layer(name)
        plugin_settings = deep_merge(plugin_settings, general.pop("plugin_settings", None) or {})
        raw = deep_merge(raw, general)
        for own in sections:  # a strategy's own values for the profile win over the general ones
            if name in own:
                raw = deep_merge(raw, own[name])
    raw["plugins"] = list(raw.get("plugins") or []) + named_plugins
    # the run is filed and reported under its strategy and every plugin the command line added
    raw["strategy"] = "+".join([base, *named_plugins, *(flags.get("add_plugins") or [])])
    return _with_command_line(raw, flags, sets, lookup, overrides, plugin_settings)


def dataset_profiles() -> list[str]:
    """The profiles the scenario files apply by dataset (``cifar``, ``imagenet``, ``imagenet-full``)."""
    from cil.config.layers import config_root, load_yaml

    names: list[str] = []
    for path in sorted((config_root() / "scenarios").glob("*.yaml")):
        profile = load_yaml(path).get("profile") or []
        names += [profile] if isinstance(profile, str) else list(profile)
    return sorted(set(names))


def check_strategy_profiles(
    strategy: str, layers: list[dict[str, Any]], sections: list[dict[str, Any]], lookup: ComponentLookup
) -> None:
    """A strategy file's ``profiles:`` entries are checked as the rest of the file: a name that is no profile
    (it would never apply) and a key or value the config does not take are one error line, whether or not this
    run applies them."""
    from cil.config.layers import available_profiles
    from cil.errors import did_you_mean

    known = sorted({*dataset_profiles(), *available_profiles()})
    plain: dict[str, Any] = {"scenario": "synthetic-b50-5", "strategy": strategy}
    for layer in layers:
        plain = deep_merge(plain, layer)
    for own in sections:
        if not isinstance(own, dict):
            raise ConfigError(f"strategy {strategy}: 'profiles' must map profile names to config values")
        for name, values in own.items():
            if name not in known:
                raise ConfigError(
                    f"strategy {strategy}: unknown profile '{name}' under 'profiles'{did_you_mean(str(name), known)}"
                )
            try:
                build_run_config(deep_merge(plain, values if isinstance(values, dict) else {}), lookup)
            except IncompatibleConfigError:
                pass  # a combination this profile's runs would refuse with their own options; not a typo
            except ConfigError as exc:
                raise ConfigError(f"strategy {strategy}, profile '{name}': {exc}") from None


IMBALANCE_PROFILES = {"exp": "long-tailed", "step": "step-imbalanced"}
"""The named profile that applies by itself to a training set of each imbalance kind."""


def imbalance_profiles(
    raw: dict[str, Any], flags: dict[str, Any], sets: list[str], overrides: dict[str, Any] | None
) -> list[str]:
    """``long-tailed`` when the run's training set is made long-tailed (``data.imbalance: exp:...``),
    ``step-imbalanced`` for a step profile, else nothing; read from the config the command line gives."""
    from cil.config.imbalance import ImbalanceProfile

    peek, _ = apply_command_line(copy.deepcopy(raw), {k: v for k, v in flags.items() if k != "epochs"}, sets, overrides)
    data = peek.get("data") if isinstance(peek.get("data"), dict) else {}
    text = data.get("imbalance") if isinstance(data, dict) else None
    try:
        imbalance = ImbalanceProfile.parse(text if isinstance(text, str) else None, "data.imbalance")
    except UserError:  # reported with its key when the config is built
        return []
    return [IMBALANCE_PROFILES[imbalance.kind]] if imbalance is not None else []


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
    plugin_settings: dict[str, Any] | None = None,
) -> RunConfig:
    raw, epochs = apply_command_line(raw, flags, sets, overrides, plugin_settings)
    cfg = build_run_config(raw, lookup)
    if epochs is not None:
        if epochs < 1:
            raise ConfigError("invalid value for '--epochs': must be >= 1")
        assigned = _assigned_keys(sets, overrides)
        scale_stages(cfg, epochs / cfg.optim.epochs, assigned)
        if "optim.milestones" in assigned:  # --set wins over --epochs' scaling
            cfg.optim = dataclasses.replace(cfg.optim, epochs=epochs)
        else:
            cfg.optim = cfg.optim.with_epochs(epochs)
    return cfg


def scale_stages(cfg: RunConfig, factor: float, assigned: set[str]) -> None:
    """``--epochs`` scales every stage a component trains (balanced finetuning, BiC's bias layer, the weight
    scaling stage: a component config's ``epochs`` and ``milestones``) in proportion to the main schedule, at
    least one epoch each; a key the command line sets keeps its value."""
    from cil.config.schema import half_up

    for prefix, component in [
        ("method", cfg.method),
        ("loss", cfg.loss),
        *((f"plugins.{p.name}", p) for p in cfg.plugins),
    ]:
        names = {f.name for f in dataclasses.fields(component)}
        if "epochs" not in names or f"{prefix}.epochs" in assigned:
            continue
        epochs = max(1, half_up(component.epochs * factor))  # type: ignore[attr-defined]
        changes: dict[str, Any] = {"epochs": epochs}
        if "milestones" in names and f"{prefix}.milestones" not in assigned:
            scaled = [half_up(m * factor) for m in component.milestones]  # type: ignore[attr-defined]
            changes["milestones"] = sorted({max(1, m) for m in scaled if m < epochs})
        for key, value in changes.items():
            setattr(component, key, value)


def _assigned_keys(sets: list[str], overrides: dict[str, Any] | None) -> set[str]:
    """The dotted keys the command line's ``--set``s and the API's overrides assign."""
    keys = {".".join(parse_set(assignment)[0]) for assignment in sets}
    return keys | {key for key, _ in dotted_items(overrides or {})}

"""Configuration layers: the YAML files of scenarios and strategies, merging, and ``--set`` assignments.

A run's configuration is assembled from layers, each a nested dict, later ones winning:

    dataclass defaults < scenario YAML (dataset defaults) < strategy YAML (``extends`` chain)
    < the strategy's profile for the dataset (e.g. ImageNet schedules) < CLI flags < ``--set``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cil.config.fields import ConfigError
from cil.config.schema import COMPONENT_SECTIONS
from cil.config.shapes import SCENARIO_FILE, STRATEGY_FILE, Shape, check
from cil.errors import UserError, did_you_mean
from cil.files import is_file, looks_like_path


def config_root() -> Path:
    """cil's configs/ folder: the package data of ``cil.configs`` (the repository's configs/ in an editable install)."""
    from importlib.resources import files

    try:
        root = Path(str(files("cil.configs")))
    except ModuleNotFoundError:
        root = Path("<missing>")
    if not (root / "strategies").is_dir():
        raise UserError(
            f"cil's configs/ folder is missing ({root}): install cil again with 'pip install .' or 'pip install -e .'"
        )
    return root


def available_strategies() -> list[str]:
    return sorted(p.stem for p in (config_root() / "strategies").glob("*.yaml"))


def load_yaml(path: Path, shape: Shape | None = None, what: str = "file") -> dict[str, Any]:
    """A YAML file's mapping, checked against ``shape`` (cil/config/shapes.py); one error line naming it otherwise."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"cannot read {path}: not a text (UTF-8) file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of keys to values")
    if shape is not None:
        check(data, shape, f"{what} {path}")
    return data


def split_strategy(strategy: str) -> tuple[str, list[str]]:
    """``'lucir+bic-bias-layer'`` -> ``('lucir', ['bic-bias-layer'])``: a strategy with plugins added, as
    ``--strategy lucir --plugin bic-bias-layer`` (so one sweep or report can hold both). A reference that
    ends in ``.yaml`` is a path, whole."""
    if strategy.endswith((".yaml", ".yml")) or "+" not in strategy:
        return strategy, []
    base, *plugins = strategy.split("+")
    if not base or not all(plugins):
        raise UserError(f"strategy '{strategy}': write STRATEGY+PLUGIN[+PLUGIN...], e.g. lucir+bic-bias-layer")
    return base, plugins


def strategy_label(strategy: str, added: list[str] | tuple[str, ...] = ()) -> str:
    """The name runs are filed and reported under: the strategy's name (a file's stem) and every added plugin,
    ``il-baseline+weight-aligning``."""
    base, plugins = split_strategy(strategy)
    return "+".join([Path(base).stem, *plugins, *added])


def strategy_plugin_names(strategy: str) -> list[str]:
    """The plugins a strategy has: its files' ``plugins`` lists and the ones added with ``+``."""
    names: list[str] = []
    for layer in strategy_layers(strategy):
        for entry in layer.get("plugins") or []:
            name = entry.get("name") if isinstance(entry, dict) else entry
            if isinstance(name, str):
                names.append(name)
    return list(dict.fromkeys([*names, *split_strategy(strategy)[1]]))


def set_plugin_name(assignment: str) -> str | None:
    """The plugin a ``--set plugins.NAME.KEY=V`` addresses (None for any other key)."""
    key = assignment.split("=", 1)[0].strip().split(".")
    return key[1] if len(key) >= 3 and key[0] == "plugins" else None


def strategy_layers(strategy: str) -> list[dict[str, Any]]:
    """The YAML layers of a named strategy (or a path to one), base first, following ``extends``
    (``STRATEGY+PLUGIN``: STRATEGY's layers; :func:`cil.config.assemble` adds the plugins).

    A path in ``extends`` is read relative to the file that names it (the command line's relative to the
    working directory); a name is one of cil's strategies.
    """
    base, _ = split_strategy(strategy)
    layers: list[dict[str, Any]] = []
    seen: set[Path] = set()
    ref: str | None = base
    relative_to = Path(".")
    while ref is not None:
        if not isinstance(ref, str) or not ref:
            raise UserError(f"strategy '{strategy}': 'extends' must be a strategy name or a .yaml path, got {ref!r}")
        if looks_like_path(ref):
            path = relative_to / ref
            if not is_file(path):
                raise UserError(f"strategy file not found: {path}")
        elif ref in available_strategies():
            path = config_root() / "strategies" / f"{ref}.yaml"
        else:
            raise UserError(f"unknown strategy '{ref}'{did_you_mean(ref, available_strategies())}")
        if path.resolve() in seen:
            raise UserError(f"strategy '{strategy}': 'extends' forms a cycle at {path}")
        seen.add(path.resolve())
        data = load_yaml(path)
        if "extends" in data and not (isinstance(data["extends"], str) and data["extends"]):
            raise UserError(
                f"strategy file {path}: 'extends' must be a strategy name or a .yaml path, got {data['extends']!r}"
            )
        check(data, STRATEGY_FILE, f"strategy file {path}")
        ref = data.pop("extends", None)
        relative_to = path.parent
        data.pop("description", None)
        layers.append(data)
    return layers[::-1]


def strategy_description(strategy: str) -> str:
    path = config_root() / "strategies" / f"{strategy}.yaml"
    return str(load_yaml(path).get("description", "")).strip()


def available_profiles() -> list[str]:
    """The named profiles of configs/profiles/ (``--profile NAME``; ``long-tailed`` and ``step-imbalanced`` apply by
    themselves to imbalanced data)."""
    return sorted(p.stem for p in (config_root() / "profiles").glob("*.yaml"))


def profile_layer(name: str) -> dict[str, Any]:
    """A named profile's settings (its description left out); {} for a name that has no file."""
    from cil.config.shapes import PROFILE_FILE

    path = config_root() / "profiles" / f"{name}.yaml"
    if not path.is_file():
        return {}
    layer = load_yaml(path, PROFILE_FILE, "profile file")
    layer.pop("description", None)
    return layer


def profile_description(name: str) -> str:
    return str(load_yaml(config_root() / "profiles" / f"{name}.yaml").get("description", "")).strip()


def check_profiles(names: list[str]) -> list[str]:
    """``--profile`` names, each one of configs/profiles/; one error line naming the valid ones otherwise."""
    known = available_profiles()
    for name in names:
        if name not in known:
            raise UserError(f"unknown profile '{name}'{did_you_mean(name, known)}")
    return list(dict.fromkeys(names))


def scenario_layer(dataset: str) -> dict[str, Any]:
    path = config_root() / "scenarios" / f"{dataset}.yaml"
    return load_yaml(path, SCENARIO_FILE, "scenario file") if path.is_file() else {}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` on top of ``base``, merging nested mappings.

    A component section whose ``name`` changes is replaced, not merged, so that a strategy that
    swaps its loss does not inherit the previous loss's parameters.
    """
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        renamed = (
            isinstance(old, dict) and isinstance(value, dict) and "name" in value and value["name"] != old.get("name")
        )
        if isinstance(old, dict) and isinstance(value, dict) and not renamed:
            out[key] = deep_merge(old, value)
        else:
            out[key] = value
    return out


def parse_set(assignment: str) -> tuple[list[str], Any]:
    """``'optim.lr=0.05'`` -> (['optim', 'lr'], 0.05); values are parsed as YAML scalars/lists."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got '{assignment}'")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"--set has an empty key part in '{assignment}'")
    return parts, yaml_value(raw) if raw.strip() else ""


def yaml_value(text: str) -> Any:
    """A command-line value read as YAML (``0.1`` a number, ``[1, 2]`` a list), or the text itself when it
    is not valid YAML (an unbalanced bracket, a control character)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


CHOSEN_BY_OPTION = {"scenario": "--scenario", "strategy": "--strategy"}
"""Keys that name what a run is: set only through their own option (``--set strategy=lucir`` would
relabel an il-baseline run as lucir without changing what it trains)."""


def apply_set(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    """Write ``value`` at the dotted path; ``plugins.NAME.key`` addresses a plugin by name."""
    if parts[0] in CHOSEN_BY_OPTION and len(parts) == 1:
        raise ConfigError(
            f"'{parts[0]}' names the run and is chosen with {CHOSEN_BY_OPTION[parts[0]]}, not --set "
            f"(it would relabel the run without changing what it trains)"
        )
    if parts[0] == "plugins" and len(parts) >= 2:
        plugins = raw.setdefault("plugins", [])
        names = [p.get("name") if isinstance(p, dict) else p for p in plugins]
        if parts[1] not in names:
            strategy = f"strategy {raw['strategy']}" if isinstance(raw.get("strategy"), str) else "this strategy"
            raise ConfigError(
                f"unknown key 'plugins.{parts[1]}': {strategy} has plugins [{', '.join(map(str, names))}]"
            )
        idx = names.index(parts[1])
        if not isinstance(plugins[idx], dict):
            plugins[idx] = {"name": plugins[idx]}
        target, rest = plugins[idx], parts[2:]
    else:
        target, rest = raw, parts
    for part in rest[:-1]:
        nxt = target.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set '{'.'.join(parts)}': '{part}' is not a section")
        target = nxt
    if parts[0] in COMPONENT_SECTIONS and parts[1:] == ["name"] and target.get("name") != value:
        target.clear()  # another component: the previous one's keys do not apply (set its own keys after)
    if rest:
        target[rest[-1]] = value


def options_layer(
    *,
    seed: int | None = None,
    class_order_seed: int | None = None,
    device: str | None = None,
    memory: int | None = None,
    memory_budget: int | None = None,
    epochs: int | None = None,
    data_root: str | None = None,
    limit_per_class: int | None = None,
    imbalance: str | None = None,
    progress: bool | None = None,
    loggers: list[str] | None = None,
    plugins: list[str] | tuple[str, ...] = (),
    profiles: list[str] | tuple[str, ...] = (),
    out: str | None = None,
) -> dict[str, Any]:
    """The config layer of a run's options (``cil run`` / ``cil sweep`` flags, ``cil.api`` keywords): only what
    was given. ``imbalance`` is a profile of the training set (``exp:100``); ``memory`` is a growing memory
    (``--memory N``), ``memory_budget`` a fixed one; ``epochs`` scales the schedule (applied after validation);
    ``plugins`` are added to the strategy's; ``profiles`` are named profiles (configs/profiles/) applied over the
    strategy."""
    flags: dict[str, Any] = {}
    if memory is not None:
        flags["memory"] = {"per_class": memory, "budget": None}
    if memory_budget is not None:
        flags["memory"] = {"budget": memory_budget}
    for key, value in (
        ("seed", seed),
        ("class_order_seed", class_order_seed),
        ("device", device),
        ("progress", progress),
        ("epochs", epochs),
        ("out", out),
    ):
        if value is not None:
            flags[key] = value
    data = {
        k: v
        for k, v in (("root", data_root), ("limit_per_class", limit_per_class), ("imbalance", imbalance))
        if v is not None
    }
    if data:
        flags["data"] = data
    if loggers is not None:
        flags["logging"] = {"loggers": list(loggers)}
    if plugins:
        flags["add_plugins"] = list(plugins)
    if profiles:
        flags["profiles"] = list(profiles)
    return flags


def apply_command_line(
    raw: dict[str, Any],
    flags: dict[str, Any],
    sets: list[str],
    overrides: dict[str, Any] | None = None,
    plugin_settings: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], int | None]:
    """The command line's layer on top of ``raw``: its flags, ``add_plugins`` appended to the plugins, the
    named profiles' ``plugin_settings`` over the plugins of those names, then every ``--set``, then ``overrides``
    (the Python API's ``--set``s as a dict); returns the new raw config and ``--epochs`` (applied after
    validation)."""
    flags = dict(flags)
    epochs = flags.pop("epochs", None)
    added = flags.pop("add_plugins", None) or []
    if flags.pop("profiles", None):
        raise ConfigError("--profile applies when a run starts: a resumed run keeps its saved config")
    raw = deep_merge(raw, flags)
    if added:
        raw["plugins"] = list(raw.get("plugins") or []) + list(added)
    for name, settings in (plugin_settings or {}).items():  # a profile's values for a plugin, wherever it is
        plugins = raw.get("plugins") or []
        for i, plugin in enumerate(plugins):
            if (plugin.get("name") if isinstance(plugin, dict) else plugin) == name:
                plugins[i] = deep_merge(plugin if isinstance(plugin, dict) else {"name": plugin}, settings)
    for assignment in sets:
        parts, value = parse_set(assignment)
        apply_set(raw, parts, value)
    for key, value in dotted_items(overrides or {}):
        apply_set(raw, key.split("."), value)
    return raw, epochs


def dotted_items(overrides: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """{'optim': {'lr': 0.05}, 'loss.alpha': 2} -> [('optim.lr', 0.05), ('loss.alpha', 2)]; a nested
    section's ``name`` comes first, so that switching a component keeps the keys given with it."""
    items: list[tuple[str, Any]] = []
    for key, value in sorted(overrides.items(), key=lambda kv: kv[0] != "name"):
        if not isinstance(key, str) or not key:
            raise ConfigError(f"overrides: keys must be non-empty strings, got {key!r}")
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            items += dotted_items(value, path)
        else:
            items.append((path, value))
    return items

"""Typed run configuration: dataclasses, YAML layering, ``--set key=value`` overrides, validation.

A run's configuration is assembled from layers, each a nested dict, later ones winning:

    dataclass defaults < scenario YAML (dataset defaults) < strategy YAML (``extends`` chain)
    < the strategy's profile for the dataset (e.g. ImageNet schedules) < CLI flags < ``--set``

and then converted into dataclasses, checking every key and value on the way. Components
(method, loss, plugins) are validated against the config dataclass their plugin registered, so
``--set method.temperature=3`` is typed and ``--set method.temprature=3`` is an error that lists
the valid keys.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from cil.errors import UserError, did_you_mean


class ConfigError(UserError):
    """A configuration key or value is invalid."""


class IncompatibleConfigError(ConfigError):
    """Valid values that cannot work together (raised by ``validate_with``; a sweep lists these as invalid)."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class ComponentConfig:
    """Base of every method, loss and plugin config: ``name`` selects the registered component."""

    name: str = ""

    def validate(self, prefix: str) -> None:
        """Raise ConfigError for bad values; subclasses extend."""

    def validate_with(self, run: "RunConfig", prefix: str) -> None:
        """Raise IncompatibleConfigError when this component cannot work with the rest of ``run`` (e.g. it needs a memory)."""


@dataclass
class OptimConfig:
    """SGD with momentum and a per-epoch learning-rate schedule, rebuilt at every step."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    batch_size: int = 128
    epochs: int = 250
    schedule: Literal["multistep", "cosine", "constant"] = "multistep"
    milestones: list[int] = field(default_factory=lambda: [100, 150, 200])
    gamma: float = 0.1
    incremental_lr: float | None = None
    """Learning rate of the incremental steps when it differs from the base step's."""
    grad_clamp: float | None = None
    """Clamp every gradient element to [-c, c] before each update (the official PODNet code: 5)."""

    def validate(self, prefix: str) -> None:
        _check(self.lr > 0, prefix, "lr", "must be > 0")
        _check(self.incremental_lr is None or self.incremental_lr > 0, prefix, "incremental_lr", "must be > 0")
        _check(self.grad_clamp is None or self.grad_clamp > 0, prefix, "grad_clamp", "must be > 0")
        _check(0 <= self.momentum < 1, prefix, "momentum", "must be in [0, 1)")
        _check(self.weight_decay >= 0, prefix, "weight_decay", "must be >= 0")
        _check(self.batch_size >= 2, prefix, "batch_size", "must be >= 2 (BatchNorm needs 2 samples)")
        _check(self.epochs >= 1, prefix, "epochs", "must be >= 1")
        _check(0 < self.gamma <= 1, prefix, "gamma", "must be in (0, 1]")
        _check(
            all(m > 0 for m in self.milestones) and self.milestones == sorted(set(self.milestones)),
            prefix, "milestones", "must be increasing positive epochs",
        )

    def with_epochs(self, epochs: int) -> "OptimConfig":
        """The same schedule stretched to ``epochs``: milestones scale in proportion."""
        scale = epochs / self.epochs
        milestones = sorted({max(1, round(m * scale)) for m in self.milestones if round(m * scale) < epochs})
        return dataclasses.replace(self, epochs=epochs, milestones=milestones)


@dataclass
class MemoryConfig:
    """Rehearsal memory: ``per_class`` exemplars per class (growing) or a fixed total ``budget``."""

    per_class: int = 20
    budget: int | None = None
    selection: Literal["herding", "random"] = "herding"

    def validate(self, prefix: str) -> None:
        _check(self.per_class >= 0, prefix, "per_class", "must be >= 0 (0 = no exemplars)")
        _check(self.budget is None or self.budget > 0, prefix, "budget", "must be > 0")

    @property
    def enabled(self) -> bool:
        return self.budget is not None or self.per_class > 0

    def describe(self) -> str:
        if self.budget is not None:
            return f"fixed budget {self.budget} ({self.selection})"
        if self.per_class == 0:
            return "none (exemplar-free)"
        return f"{self.per_class} per class ({self.selection})"


@dataclass
class ModelConfig:
    """Backbone by name (``auto``: the dataset's default) and the incremental head."""

    backbone: str = "auto"
    head: str = "linear"
    """linear, cosine (LUCIR) or lsc (PODNet's local similarity classifier)."""
    last_relu: bool = True
    """False drops the backbone's final ReLU (LUCIR, PODNet)."""
    shortcut: Literal["A", "B"] = "A"
    """CIFAR ResNets: A = parameter-free strided identity (He et al.), B = 1x1 conv + BN."""
    proxies_per_class: int = 10
    """Proxies per class of the lsc head (PODNet: 10)."""
    lsc_similarity: Literal["cosine", "squared-distance"] = "cosine"
    """Proxy similarity of the lsc head: the paper's cosine, or the official code's negative squared
    distance of the normalised vectors, 2 cos - 2 (twice the logits' range, a sharper proxy softmax)."""

    def validate(self, prefix: str) -> None:
        from cil.models import BACKBONES, HEADS

        if self.backbone != "auto" and self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone '{self.backbone}' ({_join(prefix, 'backbone')})"
                              f"{did_you_mean(self.backbone, ['auto', *BACKBONES])}")
        if self.head not in HEADS:
            raise ConfigError(f"unknown head '{self.head}' ({_join(prefix, 'head')}){did_you_mean(self.head, list(HEADS))}")
        _check(self.proxies_per_class >= 1, prefix, "proxies_per_class", "must be >= 1")


@dataclass
class DataConfig:
    """Where the data lives and how much of it a run uses."""

    root: str | None = None
    limit_per_class: int | None = None
    """Cap on training images per class (the first N of each class), for quick experiments."""
    test_limit_per_class: int | None = None
    """Cap on test images per class; leave unset for benchmark numbers."""
    num_workers: int = 4
    """Worker processes decoding lazily loaded (large) images."""
    image_size: int | None = None
    """Side of the square input for folder/ImageNet data (default: 32 for small images, 224 else)."""
    brightness_jitter: float = 0.0
    """Training brightness jitter of small images: factor in [1 - b, 1 + b] (PODNet: 63/255)."""
    synthetic_classes: int = 100
    synthetic_seed: int = 0
    """Seed of the synthetic dataset's content; independent of the run's seeds."""

    def validate(self, prefix: str) -> None:
        _check(self.limit_per_class is None or self.limit_per_class >= 1, prefix, "limit_per_class", "must be >= 1")
        _check(self.test_limit_per_class is None or self.test_limit_per_class >= 1, prefix,
               "test_limit_per_class", "must be >= 1")
        _check(self.num_workers >= 0, prefix, "num_workers", "must be >= 0")
        _check(self.image_size is None or self.image_size >= 8, prefix, "image_size", "must be >= 8")
        _check(2 <= self.synthetic_classes <= 1000, prefix, "synthetic_classes", "must be in [2, 1000]")
        _check(0 <= self.brightness_jitter < 1, prefix, "brightness_jitter", "must be in [0, 1)")


@dataclass
class RuntimeConfig:
    """How a run executes on its device (cil/runtime.py): numeric precision, memory layout,
    compilation, evaluation batch size. ``auto`` picks per device (docs/performance.md)."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on CUDA devices that support it, fp32 elsewhere. bf16/fp16: autocast of the
    backbone's forward and the losses (the head always computes in fp32); fp16 adds loss scaling."""
    channels_last: Literal["auto"] | bool = "auto"
    """NHWC memory layout of the backbone and its inputs (auto: true; faster on GPUs and CPUs measured)."""
    compile: bool = False
    """torch.compile the backbone (the head grows every step and stays eager)."""
    eval_batch_size: int | None = None
    """Batch of evaluation, herding and feature extraction (None: 1024 on CUDA, 256 on the CPU)."""

    def validate(self, prefix: str) -> None:
        _check(self.eval_batch_size is None or self.eval_batch_size >= 1, prefix, "eval_batch_size", "must be >= 1")


@dataclass
class RunConfig:
    """Everything that determines a run; saved resolved in the run directory."""

    scenario: str
    strategy: str
    seed: int = 1993
    """Training seed: initialisation, data order, augmentation."""
    class_order_seed: int = 1993
    """Seed of numpy.random.RandomState(seed).permutation(n_classes), the class order."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = False
    """GPU runs bitwise repeatable (torch.use_deterministic_algorithms; slower). CPU runs always are."""
    out: str | None = None
    progress: bool = True
    tensorboard: bool = True
    """Write TensorBoard event files (losses per epoch, accuracies per step) in RUN_DIR/tensorboard."""
    method: ComponentConfig = field(default_factory=lambda: ComponentConfig(name="finetune"))
    loss: ComponentConfig = field(default_factory=lambda: ComponentConfig(name="ce"))
    plugins: list[ComponentConfig] = field(default_factory=list)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


COMPONENT_SECTIONS = ("method", "loss")
"""Top-level keys holding one component; ``plugins`` holds a list of them."""

ComponentLookup = Callable[[str, str], type]
"""(kind, name) -> the component's config dataclass; raises UserError for unknown names."""


def _check(ok: bool, prefix: str, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"invalid value for '{_join(prefix, key)}': {why}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


# --------------------------------------------------------------------------------------------
# YAML files and layering
# --------------------------------------------------------------------------------------------


def config_root() -> Path:
    """The repository's configs/ folder (the package is installed in editable mode)."""
    root = Path(__file__).resolve().parent.parent / "configs"
    if not root.is_dir():
        raise UserError(f"configs/ folder not found at {root}; install cil with 'pip install -e .'")
    return root


def available_strategies() -> list[str]:
    return sorted(p.stem for p in (config_root() / "strategies").glob("*.yaml"))


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of keys to values")
    return data


def strategy_layers(strategy: str) -> list[dict[str, Any]]:
    """The YAML layers of a named strategy (or a path to one), base first, following ``extends``."""
    layers: list[dict[str, Any]] = []
    seen: set[Path] = set()
    ref: str | None = strategy
    while ref is not None:
        path = Path(ref) if ref.endswith((".yaml", ".yml")) else config_root() / "strategies" / f"{ref}.yaml"
        if not path.is_file():
            if ref.endswith((".yaml", ".yml")):
                raise UserError(f"strategy file not found: {ref}")
            raise UserError(f"unknown strategy '{ref}'{did_you_mean(ref, available_strategies())}")
        if path.resolve() in seen:
            raise UserError(f"strategy '{strategy}': 'extends' forms a cycle at {path}")
        seen.add(path.resolve())
        data = load_yaml(path)
        ref = data.pop("extends", None)
        data.pop("description", None)
        layers.append(data)
    return layers[::-1]


def strategy_description(strategy: str) -> str:
    path = config_root() / "strategies" / f"{strategy}.yaml"
    return str(load_yaml(path).get("description", "")).strip()


def scenario_layer(dataset: str) -> dict[str, Any]:
    path = config_root() / "scenarios" / f"{dataset}.yaml"
    return load_yaml(path) if path.is_file() else {}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` on top of ``base``, merging nested mappings.

    A component section whose ``name`` changes is replaced, not merged, so that a strategy that
    swaps its loss does not inherit the previous loss's parameters.
    """
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        renamed = isinstance(old, dict) and isinstance(value, dict) and "name" in value and value["name"] != old.get("name")
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
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_set(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    """Write ``value`` at the dotted path; ``plugins.NAME.key`` addresses a plugin by name."""
    if parts[0] == "plugins" and len(parts) >= 2:
        plugins = raw.setdefault("plugins", [])
        names = [p.get("name") if isinstance(p, dict) else p for p in plugins]
        if parts[1] not in names:
            raise ConfigError(
                f"unknown key 'plugins.{parts[1]}': this strategy has plugins [{', '.join(map(str, names))}]"
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


# --------------------------------------------------------------------------------------------
# Dict -> dataclasses, with types checked
# --------------------------------------------------------------------------------------------


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
        components["plugins"] = [_component(p, "plugin", lookup, f"plugins.{i}") for i, p in enumerate(plugins)]
        names = [p.name for p in components["plugins"]]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"invalid value for 'plugins': {', '.join(dupes)} listed twice")
    cfg = _from_dict(RunConfig, raw, "")
    for key, value in components.items():
        setattr(cfg, key, value)
    for section in COMPONENT_SECTIONS:
        getattr(cfg, section).validate_with(cfg, section)
    for i, plugin in enumerate(cfg.plugins):
        plugin.validate_with(cfg, f"plugins.{i}")
    return cfg


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
        raise ConfigError(f"unknown key '{_join(prefix, key)}'{did_you_mean(key, list(fields))}")
    kwargs = {key: _coerce(value, hints[key], _join(prefix, key)) for key, value in data.items()}
    missing = [
        name for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing key '{_join(prefix, missing[0])}'")
    obj = cls(**kwargs)
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
        raise ConfigError(f"invalid value for '{key}': expected {' or '.join(_expectation(a) for a in args)}, "
                          f"got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"invalid value for '{key}': '{value}'; valid: {', '.join(map(str, args))}")
        return value
    if origin is list:
        if isinstance(value, str):  # "10,20" from the command line
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"invalid value for '{key}': expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}.{i}") for i, v in enumerate(value)] if args else list(value)
    if dataclasses.is_dataclass(hint):
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-4' as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"invalid value for '{key}': expected a number, got {value!r}")
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


def assemble(
    *,
    scenario: str,
    strategy: str,
    dataset: str,
    flags: dict[str, Any],
    sets: list[str],
    lookup: ComponentLookup,
) -> RunConfig:
    """Resolve a run's config from its layers (see the module docstring)."""
    scenario_defaults = scenario_layer(dataset)
    profile = scenario_defaults.pop("profile", None)
    raw: dict[str, Any] = {"scenario": scenario, "strategy": strategy}
    raw = deep_merge(raw, scenario_defaults)
    for layer in strategy_layers(strategy):
        profiles = layer.pop("profiles", {}) or {}
        raw = deep_merge(raw, layer)
        if profile and profile in profiles:
            raw = deep_merge(raw, profiles[profile])
    epochs = flags.pop("epochs", None)
    added = flags.pop("add_plugins", [])
    raw = deep_merge(raw, flags)
    if added:
        raw["plugins"] = list(raw.get("plugins") or []) + list(added)
    for assignment in sets:
        parts, value = parse_set(assignment)
        apply_set(raw, parts, value)
    cfg = build_run_config(raw, lookup)
    if epochs is not None:
        if epochs < 1:
            raise ConfigError("invalid value for '--epochs': must be >= 1")
        cfg.optim = cfg.optim.with_epochs(epochs)
    return cfg


# --------------------------------------------------------------------------------------------
# Comparing configurations (resume, sweeps, reports)
# --------------------------------------------------------------------------------------------

RUNTIME_KEYS = ("out", "progress", "device", "tensorboard", "data.root", "data.num_workers", "runtime.compile",
                "runtime.eval_batch_size")
"""Keys that say where and how a run executes, not what it computes: free to differ on resume
(precision and memory layout change the arithmetic, so a resumed run keeps them)."""


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; plugins are addressed by name (plugins.NAME.key)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = _join(prefix, key)
        if key == "plugins" and not prefix and isinstance(value, list):
            flat[path] = [p["name"] if isinstance(p, dict) else p for p in value]
            for plugin in value:
                if isinstance(plugin, dict):
                    flat.update(flatten({k: v for k, v in plugin.items() if k != "name"}, f"plugins.{plugin['name']}"))
        elif isinstance(value, dict):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def config_differences(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...] = RUNTIME_KEYS) -> list[str]:
    """Sorted dotted keys whose values differ between two config dicts (``ignore`` left out)."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in set(fa) | set(fb) if k not in ignore and fa.get(k, "<unset>") != fb.get(k, "<unset>"))


def resume_config(saved: dict[str, Any], *, flags: dict[str, Any], sets: list[str],
                  lookup: ComponentLookup) -> RunConfig:
    """The saved (resolved) config of a run with this command line's flags and ``--set``s on top."""
    raw = deep_merge(copy.deepcopy(saved), {k: v for k, v in flags.items() if k not in ("epochs", "add_plugins")})
    if flags.get("add_plugins"):
        raw["plugins"] = list(raw.get("plugins") or []) + list(flags["add_plugins"])
    for assignment in sets:
        parts, value = parse_set(assignment)
        apply_set(raw, parts, value)
    cfg = build_run_config(raw, lookup)
    epochs = flags.get("epochs")
    if epochs is not None and epochs != cfg.optim.epochs:
        cfg.optim = cfg.optim.with_epochs(epochs)
    return cfg


def describe_differences(saved: dict[str, Any], given: dict[str, Any], keys: list[str]) -> str:
    """'optim.epochs (saved 10, given 20), ...' for error messages."""
    fs, fg = flatten(saved), flatten(given)
    return ", ".join(f"{k} (saved {fs.get(k, '<unset>')}, given {fg.get(k, '<unset>')})" for k in keys)

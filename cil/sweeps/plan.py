"""A sweep's plan: the Cartesian product of scenarios, strategies, grid values and seeds.

Every combination gets its own run directory,

    OUT/SCENARIO/STRATEGY[/KEY=VALUE,...]/seedS

so a sweep can be run again to continue: complete runs are skipped, interrupted ones resumed
from their last checkpoint, missing ones started. Combinations a strategy refuses (Meta BSCE with
one exemplar per class) are listed as invalid and left out, as in the paper's tables.

A sweep file (configs/sweeps/NAME.yaml, or a path) holds ``description``, ``seeds``,
``scenarios``, ``set`` (a list of KEY=VALUE), ``profiles`` (named profiles, configs/profiles/) and either
``strategies`` + ``grid`` or ``sweeps``: a list of blocks, each with its own ``strategies``, ``grid`` and
optionally ``scenarios``.
Command-line options apply on top (``--scenario``/``--strategy`` replace the file's lists,
``--grid`` adds a key to every block, ``--seeds`` replaces the seeds).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cil.config.layers import strategy_label
from cil.config.schema import DEFAULT_SEED
from cil.errors import UserError, did_you_mean

GRID_ALIASES = {
    "imbalance": "data.imbalance",
    "memory": "memory.per_class",
    "memory_budget": "memory.budget",
    "memory-budget": "memory.budget",
}
DEFAULT_SEEDS = [DEFAULT_SEED]


def sweeps_root() -> Path:
    from cil.config import config_root

    return config_root() / "sweeps"


def available_sweeps() -> list[str]:
    return sorted(p.stem for p in sweeps_root().glob("*.yaml"))


def sweep_description(name: str) -> str:
    from cil.config import load_yaml

    return " ".join(str(load_yaml(sweeps_root() / f"{name}.yaml").get("description", "")).split())


@dataclass
class SweepBlock:
    scenarios: list[str]
    strategies: list[str]
    grid: dict[str, list[Any]] = field(default_factory=dict)

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]


@dataclass
class RunSpec:
    scenario: str
    strategy: str
    point: dict[str, Any]
    seed: int
    out: Path
    label: str  # the strategy with its added plugins, as the run is filed and reported

    @property
    def sets(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.point.items()]

    def describe(self) -> str:
        point = f" {' '.join(self.sets)}" if self.point else ""
        return f"{self.scenario} {self.label}{point} seed {self.seed}"


@dataclass
class SweepPlan:
    name: str
    blocks: list[SweepBlock]
    seeds: list[int]
    sets: list[str]
    plugins: list[str] = field(default_factory=list)  # --plugin: added to every strategy
    profiles: list[str] = field(default_factory=list)  # the file's 'profiles' and --profile: applied to every run

    def sets_for(self, strategy: str) -> list[str]:
        """The sweep's ``--set``s for one strategy: one addressing a plugin (``plugins.NAME.KEY=V``) applies to the
        strategies that have it and is left out for the others, so that one sweep can tune EEIL's finetuning beside
        methods without one; a plugin no strategy of the sweep has stays, and is refused naming the strategy."""
        from cil.config.layers import set_plugin_name, strategy_plugin_names

        everyone = {name for block in self.blocks for s in block.strategies for name in strategy_plugin_names(s)}
        own = set(strategy_plugin_names(strategy)) | set(self.plugins)
        kept = []
        for assignment in self.sets:
            name = set_plugin_name(assignment)
            if name is None or name in own or name not in everyone | set(self.plugins):
                kept.append(assignment)
        return kept

    @classmethod
    def from_args(cls, args, seeds: list[int]) -> SweepPlan:
        """The plan of a ``cil sweep`` command line (``seeds`` parsed from --seeds)."""
        raw: dict[str, Any] = {}
        name = "adhoc"
        if args.plan:
            raw, name = load_plan(args.plan)
        blocks_raw = raw.get("sweeps") or [{k: raw[k] for k in ("strategies", "grid") if k in raw}]
        scenarios = _names(args.scenario) or _as_list(raw.get("scenarios"), "scenarios")
        strategies = _names(args.strategy)
        extra_grid = parse_grid(args.grid)
        blocks = []
        for i, block in enumerate(blocks_raw):
            if not isinstance(block, dict):
                raise UserError(f"sweep '{name}': sweeps.{i} must be a mapping")
            grid = {_grid_key(k): _as_list(v, f"grid.{k}") for k, v in (block.get("grid") or {}).items()}
            blocks.append(
                SweepBlock(
                    scenarios=_names(args.scenario) or _as_list(block.get("scenarios"), "scenarios") or scenarios,
                    strategies=strategies or _as_list(block.get("strategies"), "strategies"),
                    grid={**grid, **extra_grid},
                )
            )
        for block in blocks:
            if not block.scenarios:
                raise UserError("cil sweep needs scenarios: --scenario S1,S2 or a sweep file with 'scenarios'")
            if not block.strategies:
                raise UserError("cil sweep needs strategies: --strategy T1,T2 or a sweep file with 'strategies'")
        seeds = seeds or [int(s) for s in _as_list(raw.get("seeds"), "seeds")] or DEFAULT_SEEDS
        sets = [str(s) for s in _as_list(raw.get("set"), "set")] + list(args.sets)
        profiles = [str(p) for p in _as_list(raw.get("profiles"), "profiles")] + list(
            getattr(args, "profiles", None) or []
        )
        return cls(name, blocks, seeds, sets, list(getattr(args, "plugins", None) or []), profiles)

    def runs(self, out: Path) -> list[RunSpec]:
        specs = []
        for block in self.blocks:
            for scenario, strategy, point, seed in itertools.product(
                block.scenarios, block.strategies, block.points(), self.seeds
            ):
                label = strategy_label(strategy, self.plugins)
                folder = out / scenario / label
                if point:
                    folder = folder / ",".join(f"{k}={v}" for k, v in point.items()).replace("/", "-")
                specs.append(RunSpec(scenario, strategy, point, seed, folder / f"seed{seed}", label))
        return specs


def load_plan(ref: str) -> tuple[dict[str, Any], str]:
    from cil.config import load_yaml
    from cil.files import is_file, looks_like_path

    if looks_like_path(ref):
        path = Path(ref)
        if not is_file(path):
            raise UserError(f"sweep file not found: {ref}")
    elif ref in available_sweeps():
        path = sweeps_root() / f"{ref}.yaml"
    else:
        raise UserError(f"unknown sweep '{ref}'{did_you_mean(ref, available_sweeps())}")
    from cil.config.shapes import SWEEP_FILE

    return load_yaml(path, SWEEP_FILE, "sweep file"), path.stem


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """['loss.alpha=0.1,0.5'] -> {'loss.alpha': [0.1, 0.5]} (values read as YAML scalars)."""
    from cil.config.layers import yaml_value

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise UserError(f"--grid expects KEY=V1,V2,..., got '{item}'")
        grid[_grid_key(key.strip())] = [yaml_value(v) for v in values.split(",") if v.strip()]
        if not grid[_grid_key(key.strip())]:
            raise UserError(f"--grid {key.strip()}: no values (a sweep over an empty list runs nothing), got '{item}'")
    return grid


def _grid_key(key: str) -> str:
    return GRID_ALIASES.get(key, key)


def _names(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    if not isinstance(value, list):
        raise UserError(f"sweep file: '{what}' must be a list")
    return value


# ------------------------------------------------------------------------------------------------

"""Typed run configuration, in four parts:

* ``schema``: the dataclasses of every section, with declared value ranges (``fields``);
* ``layers``: the YAML files, their merging and the command line's ``--set`` assignments;
* ``coerce``: the merged dict into validated dataclasses (types, ranges, unknown keys);
* ``compare``: which keys differ between two configs (resume, sweeps, reports);

and ``resolve``, which puts them together for a new run (``assemble``) or a resumed one.
Components (method, loss, plugins) are validated against the config dataclass their plugin
registered, so ``--set method.temperature=3`` is typed and ``--set method.temprature=3`` is an
error that lists the valid keys.
"""

from cil.config.coerce import ComponentLookup, build_run_config
from cil.config.compare import RUNTIME_KEYS, config_differences, describe_differences, flatten
from cil.config.fields import ConfigError, IncompatibleConfigError, check, join_key, milestones_field, ranged
from cil.config.layers import (
    apply_command_line,
    apply_set,
    available_strategies,
    config_root,
    deep_merge,
    load_yaml,
    options_layer,
    parse_set,
    scenario_layer,
    split_strategy,
    strategy_description,
    strategy_label,
    strategy_layers,
)
from cil.config.resolve import assemble, resume_config
from cil.config.schema import (
    COMPONENT_SECTIONS,
    DEFAULT_SEED,
    MAX_SEED,
    ComponentConfig,
    DataConfig,
    LoggingConfig,
    MemoryConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    RuntimeConfig,
)

__all__ = [
    "COMPONENT_SECTIONS",
    "DEFAULT_SEED",
    "MAX_SEED",
    "RUNTIME_KEYS",
    "ComponentConfig",
    "ComponentLookup",
    "ConfigError",
    "DataConfig",
    "IncompatibleConfigError",
    "MemoryConfig",
    "ModelConfig",
    "OptimConfig",
    "LoggingConfig",
    "RunConfig",
    "RuntimeConfig",
    "apply_command_line",
    "apply_set",
    "assemble",
    "available_strategies",
    "build_run_config",
    "check",
    "config_differences",
    "config_root",
    "deep_merge",
    "describe_differences",
    "flatten",
    "join_key",
    "load_yaml",
    "options_layer",
    "parse_set",
    "milestones_field",
    "ranged",
    "resume_config",
    "scenario_layer",
    "strategy_description",
    "split_strategy",
    "strategy_label",
    "strategy_layers",
]

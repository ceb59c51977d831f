"""What a method, loss or plugin author imports: the contract and the names to register with.

    from cil.plugin import CilPlugin, ClassificationLoss, ComponentConfig, Engine, ranged, register

The contract itself is declared in cil/training/contract.py (the ``Engine`` protocol, the hooks
and their meaning); this module is its stable public face, for cil's own methods in
``cil.strategies`` as for anyone's.
"""

from cil.config import ComponentConfig, ConfigError, IncompatibleConfigError, RunConfig, milestones_field, ranged
from cil.errors import UserError
from cil.models.net import NetOutput
from cil.registry import register
from cil.training.contract import (
    Batch,
    CilPlugin,
    ClassificationLoss,
    ConfigT,
    Engine,
    StageLoss,
    TrainingStage,
    require_head,
    without_parameters,
)
from cil.training.training_set import TrainingSet

__all__ = [
    "Batch",
    "CilPlugin",
    "ClassificationLoss",
    "ComponentConfig",
    "ConfigT",
    "ConfigError",
    "Engine",
    "IncompatibleConfigError",
    "NetOutput",
    "RunConfig",
    "StageLoss",
    "TrainingSet",
    "TrainingStage",
    "UserError",
    "milestones_field",
    "ranged",
    "register",
    "require_head",
    "without_parameters",
]

"""Experiment loggers of a run, chosen with ``--logger tensorboard,csv,wandb`` (``logging.loggers``).

Every logger receives the same values (cil/runs/loggers/scalars.py): the resolved config once, the loss
parts, learning rate and learned values after every epoch, the accuracies and step records after
every step, and the summary (AIA, final accuracy, forgetting, status) when the run ends. They are
observers: which ones run never changes a result, and a resumed run may use others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cil.registry import Registry


@dataclass(frozen=True)
class LogContext:
    """What a logger is opened with besides the run directory."""

    run_name: str
    """SCENARIO/STRATEGY/seedS."""
    first_epoch: int = 0
    """A resumed run continues after this many epochs: what a logger holds from later ones is dropped."""
    first_step: int = 0
    """Likewise for steps."""
    options: dict[str, Any] = field(default_factory=dict)
    """The ``logging`` section of the run's config (wandb_project, wandb_entity, wandb_mode)."""


LOGGERS: Registry[Any] = Registry("logger", "--logger / logging.loggers")
"""Loggers by name: each a class ``Logger(run_dir, context)`` with a ``folder`` attribute (where it writes,
named when the OS refuses a write); its module is imported when it is opened."""
LOGGERS.declare("tensorboard", "cil.runs.loggers.tensorboard", "event files in RUN_DIR/tensorboard (the default)")
LOGGERS.declare("csv", "cil.runs.loggers.csv_log", "long-form CSV files in RUN_DIR/logs")
LOGGERS.declare("wandb", "cil.runs.loggers.wandb_log", "a Weights & Biases run, online or offline")


def check_loggers(names: Sequence[str], options: dict[str, Any]) -> None:
    """Ask each logger named whether it can start here (``Logger.check(options)``, when it has one), before a
    run creates its directory or loads data: a W&B run online without an API key is one line up front."""
    for name in names:
        check = getattr(LOGGERS[name], "check", None)
        if check is not None:
            check(options)


def open_loggers(names: Sequence[str], run_dir: Path, config: dict[str, Any], context: LogContext) -> list:
    """The loggers named, each opened on ``run_dir`` and given the resolved ``config``; a write the OS refuses is
    one StorageError naming the path."""
    from cil.files import refused_writes

    loggers = []
    for name in names:
        with refused_writes(run_dir):
            loggers.append(LOGGERS[name](run_dir, context))
    for logger in loggers:
        with refused_writes(getattr(logger, "folder", "a logger's files")):
            logger.log_config(config)
    return loggers

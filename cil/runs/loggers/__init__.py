"""Experiment loggers of a run, chosen with ``--logger tensorboard,csv,wandb`` (``logging.loggers``).

Every logger receives the same values (cil/runs/loggers/scalars.py): the resolved config once, the loss
parts, learning rate and learned values after every epoch, the accuracies and step records after
every step, and the summary (AIA, final accuracy, forgetting, status) when the run ends. They are
observers: which ones run never changes a result, and a resumed run may use others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LOGGERS = ("tensorboard", "csv", "wandb")
"""What ``logging.loggers`` may name; tensorboard is the default."""


def open_loggers(names: list[str], run_dir: Path, config: dict[str, Any], *, run_name: str, first_epoch: int,
                 first_step: int, wandb_options: dict[str, Any] | None = None) -> list:
    """The loggers named, each opened on ``run_dir`` (a resumed run drops what they logged after
    ``first_epoch`` / ``first_step``, the point it continues from)."""
    loggers: list = []
    for name in names:
        if name == "tensorboard":
            from cil.runs.loggers.tensorboard import TensorBoardLogger

            loggers.append(TensorBoardLogger(run_dir, first_epoch=first_epoch, first_step=first_step))
        elif name == "csv":
            from cil.runs.loggers.csv_log import CsvLogger

            loggers.append(CsvLogger(run_dir, first_epoch=first_epoch, first_step=first_step))
        elif name == "wandb":
            from cil.runs.loggers.wandb_log import WandbLogger

            loggers.append(WandbLogger(run_dir, run_name=run_name, **(wandb_options or {})))
        else:  # pragma: no cover - the config's Literal refuses other names first
            raise ValueError(f"unknown logger {name!r}; valid: {', '.join(LOGGERS)}")
    for logger in loggers:
        logger.log_config(config)
    return loggers

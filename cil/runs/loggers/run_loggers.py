"""The run's loggers as one: every epoch's, every step's and the final values fanned out to each of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cil.files import refused_writes
from cil.runs.loggers.scalars import epoch_scalars, step_scalars, summary_scalars

if TYPE_CHECKING:
    from cil.training.engine import EpochResult


class RunLoggers:
    """Fans the run's values out to its loggers: per epoch from the engine, per step and at the end from the
    runner."""

    def __init__(self, loggers: list):
        self.loggers = loggers

    def log_epoch(self, result: EpochResult) -> None:
        values = epoch_scalars(result)
        for logger in self.loggers:
            with refused_writes(getattr(logger, "folder", "a logger's files")):
                logger.log_epoch(result.epochs_done, result.step, values)

    def log_step(self, record: dict[str, Any], results: dict[str, Any]) -> None:
        values = step_scalars(record, results)
        for logger in self.loggers:
            with refused_writes(getattr(logger, "folder", "a logger's files")):
                logger.log_step(record["step"], values)

    def finish(self, results: dict[str, Any]) -> None:
        """The run ended (complete, interrupted or failed): its summary, then every logger closed (each one,
        even when another could not write; the first refusal is raised at the end)."""
        summary = summary_scalars(results)
        refused: list[Exception] = []
        for logger in self.loggers:
            try:
                with refused_writes(getattr(logger, "folder", "a logger's files")):
                    logger.finish(summary, results.get("status", "complete"))
            except Exception as exc:
                refused.append(exc)
        self.loggers = []
        if refused:
            raise refused[0]

"""The Avalanche plugin that hands every epoch's values to the run's loggers."""

from __future__ import annotations

from typing import Any

from avalanche.core import SupervisedPlugin

from cil.runs.loggers.scalars import epoch_scalars, step_scalars, summary_scalars


class RunLoggers(SupervisedPlugin):
    """Fans the run's values out to its loggers: per epoch here, per step and at the end from the runner."""

    def __init__(self, loggers: list):
        super().__init__()
        self.loggers = loggers

    def after_training_epoch(self, strategy, **kwargs):
        values = epoch_scalars(strategy)
        for logger in self.loggers:
            logger.log_epoch(strategy.epochs_done, strategy.step, values)

    def log_step(self, record: dict[str, Any], results: dict[str, Any]) -> None:
        values = step_scalars(record, results)
        for logger in self.loggers:
            logger.log_step(record["step"], values)

    def finish(self, results: dict[str, Any]) -> None:
        """The run ended (complete, interrupted or failed): its summary, then every logger closed."""
        summary = summary_scalars(results)
        for logger in self.loggers:
            logger.finish(summary, results.get("status", "complete"))

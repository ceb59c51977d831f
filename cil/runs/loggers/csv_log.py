"""CSV logs of a run in long form (one value per row), ``RUN_DIR/logs/{epochs,steps}.csv``.

``epochs.csv``: ``epoch,step,metric,value`` (``train/loss/<part>``, ``train/lr``, ``train/learned/<name>``
after every epoch); ``steps.csv``: ``step,metric,value`` (``test/accuracy``, ..., ``test/avg_incremental_accuracy``,
``test/forgetting``, ``step/<key>``): the names of every logger (``cil.runs.loggers.scalars``).
Long form keeps one header however the metrics change between steps (distillation starts at step
1) and reads into pandas as ``pd.read_csv(...).pivot_table(index="epoch", columns="metric")``. Rows
are appended and flushed as they come; a resumed run first drops the rows at or after the epoch
and step it continues from (rewritten atomically).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from cil.files import atomic_write_text, open_append
from cil.runs.loggers import LOGGERS, LogContext

EPOCH_HEADER = ["epoch", "step", "metric", "value"]
STEP_HEADER = ["step", "metric", "value"]


def _keep_before(path: Path, header: list[str], column: str, limit: int) -> None:
    """Rewrite ``path`` with the complete rows whose ``column`` is below ``limit`` (or start it)."""
    rows = []
    if path.exists():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                try:
                    if None not in row.values() and int(row[column]) < limit:
                        float(row["value"])  # a row cut short by a kill is dropped
                        rows.append(row)
                except (TypeError, ValueError):
                    continue
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


@LOGGERS.register("csv")
class CsvLogger:
    def __init__(self, run_dir: Path, context: LogContext):
        first_epoch, first_step = context.first_epoch, context.first_step
        self.folder = folder = run_dir / "logs"
        self.epochs_path, self.steps_path = folder / "epochs.csv", folder / "steps.csv"
        _keep_before(self.epochs_path, EPOCH_HEADER, "epoch", first_epoch + 1)
        _keep_before(self.steps_path, STEP_HEADER, "step", first_step)
        self.epochs = open_append(self.epochs_path)
        self.steps = open_append(self.steps_path)

    def log_config(self, config: dict[str, Any]) -> None:
        """The resolved config is config.yaml of the run directory already."""

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        csv.writer(self.epochs, lineterminator="\n").writerows([epoch, step, k, repr(v)] for k, v in values.items())
        self.epochs.flush()

    def log_step(self, step: int, values: dict[str, float]) -> None:
        csv.writer(self.steps, lineterminator="\n").writerows([step, k, repr(v)] for k, v in values.items())
        self.steps.flush()

    def finish(self, summary: dict[str, float], status: str) -> None:
        self.epochs.close()
        self.steps.close()

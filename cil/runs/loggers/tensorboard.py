"""TensorBoard event files of a run (``RUN_DIR/tensorboard``; the default logger).

Three event folders, one per x axis, so that a resumed run can drop what an interrupted step had
logged (``purge_step``) on each axis separately:

* ``tensorboard/epochs``: ``train/loss/<part>`` (every weighted loss term, mean over the epoch's
  mini-batches, and ``train/loss/total``), ``train/lr``, and ``train/learned/<name>`` for values
  plugins report in ``strategy.epoch_scalars`` (Meta BSCE's alpha), against the number of epochs
  trained so far;
* ``tensorboard/steps``: ``test/{accuracy,top5,accuracy_base,accuracy_old,accuracy_new,accuracy_many,...}``,
  ``test/avg_incremental_accuracy`` and ``test/forgetting`` so far, and every number a plugin put in
  the step's record (``step/memory_size``, ``step/rho``, ...), against the step index;
* ``tensorboard/hparams``: the resolved config as hyper-parameters with the run's
  ``avg_incremental_accuracy``, ``final_accuracy`` and ``forgetting`` as its metrics (TensorBoard's
  HPARAMS tab), rewritten when the run ends.

The names are those of results.json (``cil.runs.loggers.scalars``), the same in every logger.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from cil.runs.loggers import LOGGERS, LogContext
from cil.runs.loggers.scalars import hyperparameters

_REFUSED: list[OSError] = []
"""Writes TensorBoard's background writer threads could not make (a full disk): raised in the run's thread."""


def _hand_over_writer_errors() -> None:
    """Install (once) a thread exception hook that keeps an OSError of TensorBoard's event-writer thread for the
    run's own thread (``_raise_refused``) instead of printing the thread's traceback; others go on as before."""
    previous = threading.excepthook
    if getattr(previous, "cil_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            _REFUSED.append(args.exc_value)
            return
        previous(args)

    hook.cil_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _raise_refused() -> None:
    if _REFUSED:
        error = _REFUSED[0]
        _REFUSED.clear()
        raise error


@LOGGERS.register("tensorboard")
class TensorBoardLogger:
    def __init__(self, run_dir: Path, context: LogContext):
        first_epoch, first_step = context.first_epoch, context.first_step
        from torch.utils.tensorboard import SummaryWriter

        _hand_over_writer_errors()
        _REFUSED.clear()

        self.folder = run_dir / "tensorboard"
        # a resumed run hides what came after its checkpoint: epochs are logged at their 1-based count
        self.epochs = SummaryWriter(str(self.folder / "epochs"), purge_step=first_epoch + 1)
        self.steps = SummaryWriter(str(self.folder / "steps"), purge_step=first_step)
        self.config: dict[str, Any] = {}

    def log_config(self, config: dict[str, Any]) -> None:
        self.config = config

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.epochs.add_scalar(tag, value, epoch)
        _raise_refused()

    def log_step(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.steps.add_scalar(tag, value, step)
        self.epochs.flush()
        self.steps.flush()
        _raise_refused()

    def finish(self, summary: dict[str, float], status: str) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.epochs.close()
        self.steps.close()
        _raise_refused()
        folder = self.folder / "hparams"
        shutil.rmtree(folder, ignore_errors=True)  # one session per run, its latest numbers
        metrics = dict(summary)
        writer = SummaryWriter(str(folder))
        hparam_dict = {**hyperparameters(self.config), "status": status}
        for event in hparams(hparam_dict, metrics):
            writer.file_writer.add_summary(event)  # type: ignore[attr-defined]
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, 0)
        writer.close()
        _raise_refused()

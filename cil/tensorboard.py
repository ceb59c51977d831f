"""TensorBoard event files of a run (``RUN_DIR/tensorboard``; ``--no-tensorboard`` turns them off).

Two event folders, one per x axis, so that a resumed run can drop what an interrupted step had
logged (``purge_step``) on each axis separately:

* ``tensorboard/epochs``: ``loss/<part>`` (every weighted loss term, mean over the epoch's
  mini-batches, and ``loss/total``), ``lr``, and ``learned/<name>`` for values plugins report in
  ``strategy.epoch_scalars`` (Meta BSCE's alpha), against the number of epochs trained so far;
* ``tensorboard/steps``: ``accuracy/{all,top5,base,old,new}``, ``forgetting`` and every number a
  plugin put in the step's record (``step/memory_size``, ``step/rho``, ``step/alpha``, ...),
  against the step index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avalanche.core import SupervisedPlugin

ACCURACY_KEYS = {"accuracy": "all", "top5": "top5", "accuracy_base": "base", "accuracy_old": "old",
                 "accuracy_new": "new"}


class TensorBoardLogger(SupervisedPlugin):
    """Avalanche plugin logging per-epoch losses; the runner calls ``log_step`` after each evaluation."""

    def __init__(self, run_dir: Path, first_epoch: int = 0, first_step: int = 0):
        super().__init__()
        from torch.utils.tensorboard import SummaryWriter

        self.epochs = SummaryWriter(str(run_dir / "tensorboard" / "epochs"), purge_step=first_epoch or None)
        self.steps = SummaryWriter(str(run_dir / "tensorboard" / "steps"), purge_step=first_step or None)

    def after_training_epoch(self, strategy, **kwargs):
        x = strategy.epochs_done
        for name, value in strategy.loss_parts.items():
            self.epochs.add_scalar(f"loss/{name}", value, x)
        if strategy.loss_parts:
            self.epochs.add_scalar("loss/total", sum(strategy.loss_parts.values()), x)
        self.epochs.add_scalar("lr", strategy.optimizer.param_groups[0]["lr"], x)
        for name, value in strategy.epoch_scalars.items():
            self.epochs.add_scalar(f"learned/{name}", value, x)

    def log_step(self, record: dict[str, Any], forgetting: float | None) -> None:
        step = record["step"]
        for key, tag in ACCURACY_KEYS.items():
            if record.get(key) is not None:
                self.steps.add_scalar(f"accuracy/{tag}", record[key], step)
        if forgetting is not None:
            self.steps.add_scalar("forgetting", forgetting, step)
        for key, value in record.items():
            if key not in ACCURACY_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and key not in ("step", "n_test"):
                self.steps.add_scalar(f"step/{key}", value, step)
        self.flush()

    def flush(self) -> None:
        self.epochs.flush()
        self.steps.flush()

    def close(self) -> None:
        self.epochs.close()
        self.steps.close()

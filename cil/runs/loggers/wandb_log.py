"""Weights & Biases logging of a run (``--logger wandb``), online or offline.

The run is named ``SCENARIO/STRATEGY/seedS`` in project ``logging.wandb_project``, its config is the resolved
config, and its files go to ``RUN_DIR/wandb``. Epoch values are logged against ``epoch``
(``train/loss/<part>``, ``train/lr``, ...), step values against ``cil_step`` (``test/accuracy``,
``test/avg_incremental_accuracy``, ...; the step's own numbers as ``step/n_train``, ``step/memory_size``,
...): the names of ``cil.runs.loggers.scalars``, the same in every logger. The group is
``logging.wandb_group`` (default SCENARIO/STRATEGY, so seeds group), with ``logging.wandb_tags`` and
``logging.wandb_job_type``; the config holds the hyperparameters only; the summary holds
``avg_incremental_accuracy``, ``final_accuracy``, ``forgetting`` and ``status``. ``logging.wandb_mode``:
``offline`` writes only local files (sync later with ``wandb sync RUN_DIR/wandb/offline-run-*``), ``online``
needs ``wandb login``, ``auto`` follows ``WANDB_MODE`` and wandb's own settings. A resumed cil run continues
the same wandb run (its id is kept in ``RUN_DIR/logs/wandb-id``).
"""

from __future__ import annotations

import secrets
import string
from pathlib import Path
from typing import Any

from cil.errors import UserError
from cil.files import atomic_write_text
from cil.runs.loggers import LOGGERS, LogContext
from cil.runs.loggers.scalars import hyperparameters


@LOGGERS.register("wandb")
class WandbLogger:
    def __init__(self, run_dir: Path, context: LogContext):
        settings = context.options
        mode = settings.get("wandb_mode", "auto")
        self.run_dir, self.run_name = run_dir, context.run_name
        self.folder = run_dir / "wandb"
        self.options = {
            "project": settings.get("wandb_project", "cil"),
            "entity": settings.get("wandb_entity"),
            "mode": None if mode == "auto" else mode,
            "group": settings.get("wandb_group") or context.run_name.rsplit("/", 1)[0],
            "tags": list(settings.get("wandb_tags") or []),
            "job_type": settings.get("wandb_job_type", "train"),
        }
        self.run: Any = None

    @staticmethod
    def check(options: dict[str, Any]) -> None:
        """Refuse, before any work, a W&B run that would have to go online without an API key (``wandb login``
        writes one to ~/.netrc; ``WANDB_API_KEY`` gives one): wandb itself fails only once it starts."""
        import netrc
        import os
        from urllib.parse import urlparse

        mode = options.get("wandb_mode", "auto")
        if mode == "auto":
            mode = os.environ.get("WANDB_MODE", "online")
        if mode in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
            return
        host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
        try:
            if netrc.netrc().authenticators(host):
                return
        except (OSError, netrc.NetrcParseError):
            pass
        raise UserError(
            f"wandb logger: no W&B API key for {host} (run 'wandb login' or set WANDB_API_KEY), "
            f"or log offline: --set logging.wandb_mode=offline"
        )

    def _run_id(self) -> str:
        path = self.run_dir / "logs" / "wandb-id"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        atomic_write_text(path, run_id + "\n")
        return run_id

    def log_config(self, config: dict[str, Any]) -> None:
        import wandb

        run_id = self._run_id()
        try:
            self.run = wandb.init(
                name=self.run_name,
                dir=str(self.run_dir),
                config=hyperparameters(config),
                id=run_id,
                resume="allow",
                settings=wandb.Settings(silent=True, console="off"),
                **self.options,
            )
        except Exception as exc:  # not logged in, no network in online mode, a bad entity...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"wandb logger: {reason} (or log offline: --set logging.wandb_mode=offline)") from None
        self.run.define_metric("epoch")
        self.run.define_metric("train/*", step_metric="epoch")
        self.run.define_metric("cil_step")
        self.run.define_metric("test/*", step_metric="cil_step")
        self.run.define_metric("step/*", step_metric="cil_step")

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        self.run.log({"epoch": epoch, **values})

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self.run.log({"cil_step": step, **values})

    def finish(self, summary: dict[str, float], status: str) -> None:
        if self.run is None:
            return
        self.run.summary.update({**summary, "status": status})
        self.run.finish(exit_code=0 if status == "complete" else 1)
        self.run = None

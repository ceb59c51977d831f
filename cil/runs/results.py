"""The run directory, written so that no result is ever half-written or lost.

    RUN_DIR/
      results.json          the contract (docs/results.md): per-step accuracies, config, env
      metrics.csv           one row per step
      config.yaml           the resolved configuration
      confusion/step_XX.npy integer confusion matrix after step XX (rows: true, columns: predicted)
      checkpoints/last.pt   what a resumed run needs (cil/runs/checkpoint.py)
      tensorboard/          event files (cil/tensorboard.py)

Every file is written to a temporary file in the same folder and renamed over the target, and
results.json is rewritten after every step (``status`` says "running", "complete", "interrupted"
or "failed"; a run killed outright stays "running").
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cil.config.shapes import RESULTS_FILE, check
from cil.errors import UserError
from cil.files import atomic_save_npy, atomic_write_text, refused_writes
from cil.runs.metrics import average_incremental_accuracy, forgetting

RESULTS = "results.json"


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN to null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def environment(device: str) -> dict[str, str]:
    """Library versions and the machine, saved with every run."""
    from importlib.metadata import PackageNotFoundError, version

    import cil

    env = {
        "cil": cil.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
    }
    for package, key in [
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("avalanche-lib", "avalanche"),
        ("numpy", "numpy"),
        ("higher", "higher"),
    ]:
        try:
            env[key] = version(package)
        except PackageNotFoundError:
            env[key] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        if commit.returncode == 0:
            env["cil_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return env


class RunWriter:
    """Creates a run directory and keeps its files current after every step.

    ``previous`` continues a run: the results saved with its last checkpoint (steps after it, if
    an interrupted step got as far as writing them, are dropped and will be redone).
    """

    def __init__(
        self,
        out: Path,
        header: dict[str, Any],
        overwrite: bool = False,
        previous: dict[str, Any] | None = None,
        write: bool = True,
    ):
        self.out, self.write = out, write
        """``write=False``: the same results kept in memory only (ranks other than 0 of a data-parallel run)."""
        if write and previous is None and (out / RESULTS).exists() and not overwrite:
            raise UserError(f"{out} already holds a run ({RESULTS}); choose another --out or pass --overwrite")
        if previous is not None:
            self.results = {**previous, "status": "running", "env": header["env"]}
            self.results.pop("error", None)
            self.results.setdefault("resumed", []).append(
                {"after_step": len(previous["steps"]) - 1, "env": header["env"]}
            )
        else:
            self.results = {
                **header,
                "status": "running",
                "steps": [],
                "avg_incremental_accuracy": None,
                "final_accuracy": None,
                "forgetting": None,
            }
        if not write:
            return
        with refused_writes(out):
            out.mkdir(parents=True, exist_ok=True)
        done = len(self.results["steps"])
        for old in (out / "confusion").glob("step_*.npy"):
            if int(old.stem.split("_")[1]) >= done:
                with refused_writes(old):
                    old.unlink()
        atomic_write_text(out / "config.yaml", yaml.safe_dump(self.results["config"], sort_keys=False))
        self._flush()

    def add_step(self, record: dict[str, Any], confusion: np.ndarray) -> None:
        if self.write:
            atomic_save_npy(self.out / "confusion" / f"step_{record['step']:02d}.npy", confusion)
        self.results["steps"].append(_clean(record))
        accuracies = [s["accuracy"] for s in self.results["steps"]]
        self.results["avg_incremental_accuracy"] = average_incremental_accuracy(accuracies)
        self.results["final_accuracy"] = accuracies[-1]
        groups = [s.get("accuracy_per_group") for s in self.results["steps"]]
        self.results["forgetting"] = forgetting(groups) if all(g is not None for g in groups) else None
        self._flush()

    def finish(self, status: str = "complete", error: str | None = None) -> None:
        self.results["status"] = status
        if error:
            self.results["error"] = error
        self._flush()

    def _flush(self) -> None:
        if not self.write:
            return
        atomic_write_text(self.out / RESULTS, json.dumps(_clean(self.results), indent=2) + "\n")
        steps = self.results["steps"]
        if steps:  # the csv module, not pandas: nothing is imported for the first time in the middle of a run
            rows = [{k: v for k, v in s.items() if not isinstance(v, (list, dict))} for s in steps]
            columns = list(dict.fromkeys(k for row in rows for k in row))
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(self.out / "metrics.csv", buffer.getvalue())


def load_results(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RESULTS if run_dir.is_dir() else run_dir
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"cannot read {path}: not a text (UTF-8) file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    check(results, RESULTS_FILE, f"results file {path}")
    return results

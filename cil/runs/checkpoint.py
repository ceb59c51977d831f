"""Step checkpoints: what a run needs to continue after its last completed step.

``RUN_DIR/checkpoints/last.pt`` is rewritten (atomically) after every step. It holds the model,
every plugin's state (exemplars by dataset index, class statistics), all random number generator
states, the step's results and the resolved config, so that ``cil run --resume RUN_DIR`` on the
same device repeats exactly what an uninterrupted run would have done. It loads with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from cil.config.shapes import INT, RESOLVED_CONFIG, RESULTS_FILE, Mapping, check
from cil.errors import UserError

CHECKPOINT = Path("checkpoints") / "last.pt"
FORMAT_VERSION = 1
DAMAGED_ADVICE = "restore it from a backup, or start the run again with --overwrite (nothing was deleted)"


def checkpoint_shape() -> Mapping:
    """What a checkpoint file holds: the format, the engine's state, the results so far and the resolved config."""
    from cil.training.engine import TrainingEngine

    return Mapping(
        required=("format", "state", "results", "config"),
        fields={"format": INT, "state": TrainingEngine.STATE, "results": RESULTS_FILE, "config": RESOLVED_CONFIG},
        what="a cil checkpoint",
    )


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format version) to RUN_DIR/checkpoints/last.pt atomically."""
    from cil.files import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **payload}, buffer)
    atomic_write_bytes(run_dir / CHECKPOINT, buffer.getvalue())


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint of ``run_dir``; None when there is none; UserError when it cannot be used."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any unpickling or zip error: the file is damaged (torch's message is pages long)
        raise UserError(
            f"cannot resume {run_dir}: checkpoint {path} is unreadable (damaged, or not a torch file); {DAMAGED_ADVICE}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise UserError(
            f"cannot resume {run_dir}: {path} is not a cil checkpoint of format {FORMAT_VERSION}; {DAMAGED_ADVICE}"
        )
    try:
        check(payload, checkpoint_shape(), f"checkpoint {path}")
    except UserError as exc:
        raise UserError(f"cannot resume {run_dir}: {exc}; {DAMAGED_ADVICE}") from None
    return payload

"""Step checkpoints: what a run needs to continue after its last completed step.

``RUN_DIR/checkpoints/last.pt`` is rewritten (atomically) after every step. It holds the model,
every plugin's state (exemplars by dataset index, class statistics), all random number generator
states, the step's results and the resolved config, so that ``cil run --resume RUN_DIR`` on the
same device repeats exactly what an uninterrupted run would have done. It loads with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cil.errors import UserError
from cil.shapes import CHECKPOINT_FILE, check

CHECKPOINT = Path("checkpoints") / "last.pt"
FORMAT_VERSION = 1
DAMAGED_ADVICE = "restore it from a backup, or start the run again with --overwrite (nothing was deleted)"


def capture_rng(*generators: torch.Generator) -> dict[str, Any]:
    """The global Python, numpy and torch (CPU and CUDA) states and those of ``generators``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": _tuples_to_lists(random.getstate()),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() for g in generators],
    }


def restore_rng(state: dict[str, Any], *generators: torch.Generator) -> None:
    """Undo ``capture_rng`` (the same generators, in the same order)."""
    random.setstate(_lists_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for generator, saved in zip(generators, state["generators"], strict=True):
        try:
            generator.set_state(saved)
        except RuntimeError:  # saved on another device type: keep the seeded generator
            pass


def _tuples_to_lists(value: Any) -> Any:
    return [_tuples_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _lists_to_tuples(value: Any) -> Any:
    return tuple(_lists_to_tuples(v) for v in value) if isinstance(value, list) else value


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format version) to RUN_DIR/checkpoints/last.pt atomically."""
    from cil.results import atomic_write_bytes

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
        raise UserError(f"cannot resume {run_dir}: checkpoint {path} is unreadable (damaged, or not a torch "
                        f"file); {DAMAGED_ADVICE}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise UserError(f"cannot resume {run_dir}: {path} is not a cil checkpoint of format {FORMAT_VERSION}; "
                        f"{DAMAGED_ADVICE}")
    try:
        check(payload, CHECKPOINT_FILE, f"checkpoint {path}")
    except UserError as exc:
        raise UserError(f"cannot resume {run_dir}: {exc}; {DAMAGED_ADVICE}") from None
    return payload

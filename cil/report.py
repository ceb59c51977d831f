"""Tables from run results."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def step_table(results: dict[str, Any]) -> str:
    """The per-step table a run prints at its end: accuracy over seen, base, old and new classes."""
    header = ["step", "classes", "n_train", "acc", "top5", "base", "old", "new", "memory", "train_s"]
    rows = []
    for s in results["steps"]:
        labels = s.get("labels") or []
        span = f"{labels[0]}-{labels[-1]}" if labels else "-"
        rows.append([str(s["step"]), span, str(s["n_train"]), _fmt(s["accuracy"]), _fmt(s["top5"]),
                     _fmt(s["accuracy_base"]), _fmt(s["accuracy_old"]), _fmt(s["accuracy_new"]),
                     _fmt(s.get("memory_size")), _fmt(s["train_seconds"], 1)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    summary = (f"{results['scenario']}  {results['strategy']}  seed {results['seed']}:  "
               f"average incremental accuracy {_fmt(results['avg_incremental_accuracy'])}  "
               f"final accuracy {_fmt(results['final_accuracy'])}  ({results['status']})")
    return "\n".join(lines + [summary])

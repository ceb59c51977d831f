"""Tables from run results: one run's steps (printed after a run) and many runs over seeds (``cil report``)."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cil.config import RUNTIME_KEYS, flatten, strategy_label
from cil.errors import UserError, did_you_mean
from cil.runs.metrics import forgetting
from cil.runs.results import RESULTS, load_results

if TYPE_CHECKING:
    import pandas as pd


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN: nothing to show
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


SHOT_COLUMNS = (("many", "accuracy_many"), ("medium", "accuracy_medium"), ("few", "accuracy_few"))


def step_table(results: dict[str, Any]) -> str:
    """The per-step table a run prints at its end: accuracy over seen, base, old and new classes, and over the
    many-, medium- and few-shot classes when the training set holds more than one of those groups."""
    steps = results["steps"]
    shots = [c for c in SHOT_COLUMNS if steps and any(s.get(c[1]) is not None for s in steps)]
    shots = shots if len(shots) > 1 else []
    header = ["step", "classes", "n_train", "acc", "top5", "base", "old", "new", *(n for n, _ in shots)]
    header += ["memory", "train_s"]
    rows = []
    for s in steps:
        labels = s.get("labels") or []
        span = f"{labels[0]}-{labels[-1]}" if labels else "-"
        rows.append(
            [
                str(s["step"]),
                span,
                str(s["n_train"]),
                _fmt(s["accuracy"]),
                _fmt(s["top5"]),
                _fmt(s["accuracy_base"]),
                _fmt(s["accuracy_old"]),
                _fmt(s["accuracy_new"]),
                *(_fmt(s.get(key)) for _, key in shots),
                _fmt(s.get("memory_size")),
                _fmt(s["train_seconds"], 1),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    summary = (
        f"{results['scenario']}  {results['strategy']}  seed {results['seed']}:  "
        f"average incremental accuracy {_fmt(results['avg_incremental_accuracy'])}  "
        f"final accuracy {_fmt(results['final_accuracy'])}  ({results['status']})"
    )
    return "\n".join(lines + [summary])


# --------------------------------------------------------------------------------------------
# Tables over many runs (``cil report``)
# --------------------------------------------------------------------------------------------

METRICS = {
    "avg_incremental_accuracy": "average incremental accuracy (mean of the accuracy after every step, base step "
    "included)",
    "final_accuracy": "accuracy on all classes after the last step",
    "final_accuracy_base": "accuracy on the base classes after the last step",
    "final_accuracy_new": "accuracy on the last step's classes after the last step",
    "final_accuracy_many": "accuracy on the many-shot classes (more than data.many_shot_above = 100 training "
    "images) after the last step",
    "final_accuracy_medium": "accuracy on the medium-shot classes (20 to 100 training images) after the last step",
    "final_accuracy_few": "accuracy on the few-shot classes (fewer than data.few_shot_below = 20 training images) "
    "after the last step",
    "avg_incremental_top5": "average incremental top-5 accuracy",
    "forgetting": "average forgetting after the last step (per step's class group: best accuracy before "
    "the last step minus accuracy after it; lower is better)",
    "avg_incremental_classifier_accuracy": "average incremental accuracy of the classifier before the run's post-hoc "
    "correction (bic-bias-layer, weight-aligning, balanced-finetuning, nme, lws, ...; a step it left alone counts "
    "its accuracy)",
    "final_classifier_accuracy": "accuracy of the classifier before the post-hoc correction after the last step",
    "train_minutes": "wall time of the run's training, every step's (memory updates and second stages included, "
    "evaluation not), in minutes",
}
"""The run-level numbers of every table, frame and logger, named as in results.json (``avg_incremental_accuracy``,
``final_accuracy``, ``forgetting``) and, for the derived ones, after the step keys they come from
(``accuracy_base``, ``accuracy_new``, ``top5``)."""

RENAMED_METRICS = {
    "aia": "avg_incremental_accuracy",
    "final": "final_accuracy",
    "final-base": "final_accuracy_base",
    "final-new": "final_accuracy_new",
    "top5-aia": "avg_incremental_top5",
}
"""Names used before cil had one vocabulary: asked for by one of them, cil names the new one."""


LOWER_IS_BETTER = frozenset({"forgetting", "train_minutes"})
"""Metrics ``--sort`` ranks smallest first (every other one: largest first)."""


def check_metrics(text: str) -> list[str]:
    """``--metric``: one name, several comma-separated, or ``all``."""
    if text == "all":
        return list(METRICS)
    names = [check_metric(name.strip()) for name in text.split(",")]
    return list(dict.fromkeys(names))


def check_metric(name: str) -> str:
    """``name`` when it is a metric; otherwise one error line naming the valid ones (or the new name)."""
    if name in METRICS:
        return name
    if name in RENAMED_METRICS:
        raise UserError(f"metric '{name}' is now called '{RENAMED_METRICS[name]}' (valid: {', '.join(METRICS)})")
    raise UserError(f"unknown metric '{name}'{did_you_mean(name, list(METRICS))}")


IGNORED_FOR_VARIANTS = ("seed",)
"""Config keys that never make two runs different experiments (besides the runtime keys)."""


@dataclass
class Run:
    """One run directory's results, as the report sees them."""

    path: Path
    results: dict[str, Any]

    @property
    def complete(self) -> bool:
        r = self.results
        return r.get("status") == "complete" and len(r.get("steps", [])) == r.get("n_steps", -1)

    @property
    def label(self) -> str:
        if self.results.get("status", "").startswith("unreadable"):
            return "?"
        return strategy_label(str(self.results.get("strategy", "?")))

    def metric(self, name: str) -> float | None:
        r, steps = self.results, self.results.get("steps", [])
        if not steps:
            return None
        if name in ("avg_incremental_accuracy", "final_accuracy"):
            return r.get(name)
        if name.startswith("final_accuracy_"):  # the last step's accuracy_base, _new, _many, _medium, _few
            return steps[-1].get(name.removeprefix("final_"))
        if name == "avg_incremental_top5":
            return float(np.mean([s["top5"] for s in steps]))
        if name in ("avg_incremental_classifier_accuracy", "final_classifier_accuracy"):
            if not any("classifier_accuracy" in s for s in steps):
                return None  # no correction: the plain accuracies are the classifier's
            own = [s.get("classifier_accuracy", s["accuracy"]) for s in steps]
            return float(np.mean(own)) if name.startswith("avg") else float(own[-1])
        if name == "train_minutes":
            seconds = [s.get("train_seconds") for s in steps]
            return None if any(v is None for v in seconds) else float(sum(seconds)) / 60
        if name == "forgetting":
            if "forgetting" in r:
                return r["forgetting"]
            groups = [s.get("accuracy_per_group") for s in steps]
            return forgetting(groups) if all(g is not None for g in groups) else None
        raise KeyError(name)


def completed_steps(run: Run) -> list[dict]:
    """The run's steps, or one error line (with its status when it is unreadable)."""
    steps = run.results.get("steps", [])
    if not steps:
        status = run.results.get("status", "")
        raise UserError(
            f"{run.path} has no completed step to plot"
            + (f": results.json is {status}" if status.startswith("unreadable") else "")
        )
    return steps


def collect(paths: list[Path]) -> list[Run]:
    """Every run under ``paths`` (a run directory, or any folder holding some), sorted by path."""
    files: set[Path] = set()
    from cil.files import usable_path

    for path in paths:
        path = usable_path(path, "run directory")
        if not path.exists():
            raise UserError(f"no such run directory or folder: {path}")
        if (path / RESULTS).is_file():
            files.add(path / RESULTS)
        elif path.is_file() and path.name == RESULTS:
            files.add(path)
        else:
            files.update(path.rglob(RESULTS))
    if not files:
        raise UserError(f"no {RESULTS} found under {', '.join(map(str, paths))}")
    return [Run(f.parent, _readable_results(f)) for f in sorted(files)]


def _readable_results(path: Path) -> dict[str, Any]:
    """A run's results, or a stand-in whose status says why they cannot be used (listed, never averaged)."""
    try:
        results = load_results(path)
        strategy_label(str(results.get("strategy", "?")))
        return results
    except UserError as exc:  # "cannot read PATH: why", "results file PATH: what is wrong", an odd strategy label
        return {"status": f"unreadable ({str(exc).split(': ', 1)[-1][:100]})", "steps": []}


def variant_labels(runs: list[Run]) -> dict[Path, str]:
    """Per run, 'key=value, ...' for the config keys that tell runs of one scenario and strategy apart (a grid's
    keys), the same keys for every run of the table, so that rows read alike (``memory.per_class=2`` on every
    row of a ``--grid memory=2,4`` sweep, whichever strategy). Keys a strategy itself sets differently (its
    loss, its schedule) are not listed: the strategy's name says them; nor are keys the run's config lacks (the
    options of a plugin only another strategy of the table has)."""
    flats = {run.path: _defaults_filled(flatten(run.results.get("config", {}))) for run in runs}
    groups: dict[tuple[str | None, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.results.get("scenario"), run.label), []).append(run)
    varying: set[str] = set()
    for group in groups.values():
        members = [flats[r.path] for r in group]
        keys = {k for f in members for k in f} - set(RUNTIME_KEYS) - set(IGNORED_FOR_VARIANTS)
        varying |= {k for k in keys if len({repr(f.get(k)) for f in members}) > 1}
    ordered = sorted(varying)
    # a key a run's config does not have (a plugin another strategy of the table uses) is not the run's variant
    return {run.path: ", ".join(f"{k}={flats[run.path][k]}" for k in ordered if k in flats[run.path]) for run in runs}


LATER_KEYS = {"runtime.precision": "auto", "runtime.channels_last": "auto"}
"""Config keys added after the first results layout, with the value those runs effectively had (they were
saved as null then): an old run is not a variant of a new one for lacking them."""


def _defaults_filled(flat: dict[str, Any]) -> dict[str, Any]:
    return {**flat, **{k: v for k, v in LATER_KEYS.items() if flat.get(k, v) is None}}


def _natural(text: str) -> list:
    """Sort key reading digit runs as numbers: b50-5 < b50-10, memory=5 < memory=20."""
    return [(0, float(t), "") if _is_number(t) else (1, 0.0, t) for t in re.split(r"(-?\d+(?:\.\d+)?)", text) if t]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run: scenario, row label (strategy [variant]), seed, status, steps done and every metric."""
    import pandas as pd

    variants = variant_labels(runs)
    rows = []
    for run in runs:
        r = run.results
        variant = variants[run.path]
        rows.append(
            {
                "scenario": r.get("scenario"),
                "strategy": run.label,
                "variant": variant,
                "row": f"{run.label} [{variant}]" if variant else run.label,
                "seed": r.get("seed"),
                "status": r.get("status"),
                "complete": run.complete,
                "steps_done": len(r.get("steps", [])),
                "n_steps": r.get("n_steps"),
                "path": str(run.path),
                **{m: run.metric(m) for m in METRICS},
            }
        )
    return pd.DataFrame(rows)


def summary_frame(runs: list[Run], metric: str) -> pd.DataFrame:
    """mean, std (sample, ddof 1) and n of ``metric`` over the complete runs of each (row, scenario)."""
    frame = runs_frame(runs)
    done = frame[frame["complete"] & frame[metric].notna()]
    stats = done.groupby(["row", "scenario"], sort=False)[metric].agg(["mean", "std", "count"]).reset_index()
    seeds = done.groupby(["row", "scenario"], sort=False)["seed"].agg(lambda s: " ".join(map(str, sorted(s))))
    return stats.merge(seeds.rename("seeds").reset_index(), on=["row", "scenario"])


def _cell(mean: float, std: float, n: int, uniform_n: bool, fmt: str) -> str:
    pm = " $\\pm$ " if fmt == "latex" else " ± "
    text = f"{mean:.2f}" if n < 2 else f"{mean:.2f}{pm}{std:.2f}"
    return text if uniform_n else f"{text} (n={n})"


def ranked_rows(runs: list[Run], rows: list[str], sort: str | None) -> list[str]:
    """``rows`` by name, or by ``sort``'s mean over seeds (and scenarios), best first; rows without it last."""
    if sort is None:
        return rows
    stats = summary_frame(runs, sort).groupby("row")["mean"].mean()
    sign = 1 if sort in LOWER_IS_BETTER else -1
    return sorted(rows, key=lambda r: (r not in stats.index, sign * stats.get(r, 0.0), _natural(r)))


def summary_table(
    runs: list[Run],
    metrics: Sequence[str] = ("avg_incremental_accuracy",),
    fmt: str = "markdown",
    sort: str | None = None,
) -> str:
    """Strategies (and variants) as rows, scenarios as columns (or, for one scenario and several metrics, the
    metrics as columns), mean ± std over seeds, rows by name or ranked by ``sort``; incomplete runs listed."""
    import pandas as pd

    frame = runs_frame(runs)
    scenarios = sorted(frame["scenario"].dropna().unique(), key=_natural)
    rows = ranked_rows(runs, sorted(frame["row"].unique(), key=_natural), sort)
    out: list[str] = []
    if fmt != "csv" and len(scenarios) == 1 and len(metrics) > 1:
        out.append(metrics_table(runs, rows, scenarios[0], metrics, fmt))
    elif fmt == "csv":
        parts = [summary_frame(runs, m).assign(metric=m) for m in metrics]
        tidy = pd.concat(parts)[["metric", "row", "scenario", "mean", "std", "count", "seeds"]]
        tidy = tidy.rename(columns={"row": "strategy", "count": "n"})
        out.append(tidy.to_csv(index=False, float_format="%.4f").rstrip("\n"))
    else:
        for metric in metrics:
            stats = summary_frame(runs, metric)
            counts = set(stats["count"])
            table = [[row] + ["-"] * len(scenarios) for row in rows]
            for _, s in stats.iterrows():
                table[rows.index(s["row"])][1 + scenarios.index(s["scenario"])] = _cell(
                    s["mean"], s["std"], int(s["count"]), len(counts) == 1, fmt
                )
            n_note = f"{counts.pop()} run(s) per cell" if len(counts) == 1 else "n = runs per cell"
            caption = f"{metric}: {METRICS[metric]}; mean ± sample std over seeds, {n_note}"
            out.append(render_table(["strategy", *scenarios], table, fmt, caption))
    out.append(_incomplete_note(frame, fmt))
    return "\n\n".join(part for part in out if part)


def metrics_table(runs: list[Run], rows: list[str], scenario: str, metrics: Sequence[str], fmt: str) -> str:
    """One scenario: strategies as rows, one column per metric (accuracies, forgetting, wall time side by side)."""
    table = [[row] + ["-"] * len(metrics) for row in rows]
    every = [summary_frame(runs, metric) for metric in metrics]
    runs_per_cell = {int(n) for stats in every for n in stats["count"]}
    for column, stats in enumerate(every, start=1):
        for _, s in stats.iterrows():
            table[rows.index(s["row"])][column] = _cell(
                s["mean"], s["std"], int(s["count"]), len(runs_per_cell) == 1, fmt
            )
    n_note = f"{runs_per_cell.pop()} run(s) per cell" if len(runs_per_cell) == 1 else "n = runs per cell"
    caption = f"{scenario}: mean ± sample std over seeds, {n_note}; " + "; ".join(f"{m}: {METRICS[m]}" for m in metrics)
    return render_table(["strategy", *metrics], table, fmt, caption)


def _incomplete_note(frame: pd.DataFrame, fmt: str) -> str:
    bad = frame[~frame["complete"]]
    if bad.empty:
        return ""
    import pandas as pd

    lines = [
        f"{r.path}: {r.status}" + (f", {r.steps_done} of {int(r.n_steps)} steps" if pd.notna(r.n_steps) else "")
        for r in bad.itertuples()
    ]
    if fmt == "csv":
        print("not averaged (incomplete or failed): " + "; ".join(lines), file=sys.stderr)
        return ""
    prefix = "% " if fmt == "latex" else "- "
    head = "% " if fmt == "latex" else ""
    return "\n".join([f"{head}Not averaged (incomplete or failed runs):"] + [prefix + line for line in lines])


def per_step_table(runs: list[Run], fmt: str = "markdown") -> str:
    """The accuracy after every step, one row per run."""
    frame = runs_frame(runs)
    width = max(len(r.results.get("steps", [])) for r in runs)
    header = [
        "scenario",
        "strategy",
        "seed",
        "status",
        *[f"step {i}" for i in range(width)],
        "avg_incremental_accuracy",
    ]
    table = []
    order = sorted(
        range(len(runs)),
        key=lambda i: (_natural(str(frame.at[i, "scenario"])), _natural(frame.at[i, "row"]), frame.at[i, "seed"] or 0),
    )
    for i in order:
        steps = runs[i].results.get("steps", [])
        accs = [f"{s['accuracy']:.2f}" for s in steps] + ["-"] * (width - len(steps))
        table.append(
            [
                str(frame.at[i, "scenario"]),
                frame.at[i, "row"],
                str(frame.at[i, "seed"]),
                str(frame.at[i, "status"]),
                *accs,
                _fmt(frame.at[i, "avg_incremental_accuracy"]),
            ]
        )
    return render_table(header, table, fmt, "accuracy (%) on all seen classes after each step")


def render_table(header: list[str], rows: list[list[str]], fmt: str, caption: str = "") -> str:
    """A table as markdown (default), csv or a LaTeX tabular (booktabs)."""
    if fmt == "csv":
        import csv

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    if fmt == "latex":
        esc = _latex_escape
        lines = [
            f"% {caption}" if caption else "",
            "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
            "\\toprule",
            " & ".join(esc(h) for h in header) + " \\\\",
            "\\midrule",
        ]
        lines += [" & ".join(esc(c) for c in row) + " \\\\" for row in rows]
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(line for line in lines if line)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    numeric = [
        bool(rows) and all(_is_number(r[i].split(" ")[0]) or r[i] == "-" for r in rows) for i in range(len(header))
    ]
    lines = [f"{caption}\n" if caption else ""]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    lines.append("| " + " | ".join("-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric)) + " |")
    lines += [
        "| " + " | ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)) + " |"
        for r in rows
    ]
    return "\n".join(line for line in lines if line)


def _latex_escape(text: str) -> str:
    """Escape LaTeX's special characters outside $...$ math."""
    parts = re.split(r"(\$[^$]*\$)", text)
    return "".join(p if p.startswith("$") else re.sub(r"([_&%#{}])", r"\\\1", p) for p in parts)

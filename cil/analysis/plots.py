"""Figures from run directories (``cil plot``), written as PNG files atomically.

* ``confusion``: the confusion matrix of one step, counts transformed by log(1 + x) as in
  Jodelet et al.'s Figures 2, 3 and 5, with lines between the class groups of the steps (base first);
* ``curves``: accuracy on all seen classes after each step, one line per run;
* ``base-new``: accuracy on the base, old and newest classes after each step of one run, the
  stability/plasticity picture of Jodelet et al.'s Table 5;
* ``mean-curves``, ``accuracy-matrix``, ``forgetting``: cil/analysis/plots_steps.py;
* ``per-class``: each class's accuracy against its training images (imbalanced data), cil/analysis/plots_classes.py.

The confusion matrix of an imbalanced run lists the classes of each step by training images, most first.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cil.analysis import plots_classes, plots_steps
from cil.analysis.plots_steps import classes_seen, finish_step_axes, new_figure
from cil.analysis.report import Run, collect, completed_steps, variant_labels
from cil.errors import UserError
from cil.files import atomic_write_bytes, writable_folder

KINDS = ("confusion", "curves", "mean-curves", "base-new", "accuracy-matrix", "forgetting", "per-class")
DPI = 100
CONFUSION_INCHES = (7.5, 6.5)
CONFUSION_COLUMNS = 3
"""Confusion matrices of several runs: at most this many side by side, then a new row."""
CURVE_INCHES = (8.0, 5.0)


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _title(run: Run, variant: str = "") -> str:
    r = run.results
    return f"{run.label}{f' [{variant}]' if variant else ''} on {r.get('scenario')} (seed {r.get('seed')})"


def _confusion_of(run: Run, step: int | None) -> tuple[int, np.ndarray]:
    steps = completed_steps(run)
    step = len(steps) - 1 if step is None else step
    if not 0 <= step < len(steps):
        raise UserError(f"--step {step}: {run.path} has steps 0 to {len(steps) - 1}")
    path = run.path / "confusion" / f"step_{step:02d}.npy"
    try:
        return step, np.load(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _draw_confusion(ax, run: Run, step: int, matrix: np.ndarray, vmax: float, variant: str = ""):
    steps = run.results["steps"]
    record = steps[step]
    imbalanced = plots_classes.is_imbalanced(run)
    if imbalanced:  # each step's classes by training images, most first
        order = plots_classes.count_order(run, matrix.shape[0])
        matrix = matrix[np.ix_(order, order)]
    image = ax.imshow(np.log1p(matrix), cmap="viridis", interpolation="nearest", vmin=0, vmax=vmax)
    bounds = np.cumsum([len(s["labels"]) for s in steps[: step + 1]])
    for b in bounds[:-1]:
        ax.axhline(b - 0.5, color="white", linewidth=0.8, alpha=0.8)
        ax.axvline(b - 0.5, color="white", linewidth=0.8, alpha=0.8)
    starts = np.concatenate([[0], bounds[:-1]])
    centres = (starts + bounds - 1) / 2
    names = [
        f"{'base' if i == 0 else f'step {i}'}\n{start}-{end - 1}" for i, (start, end) in enumerate(zip(starts, bounds))
    ]
    ax.set_xticks(centres, names, rotation=90 if step > 6 else 0, fontsize=8)
    ax.set_yticks(centres, names, fontsize=8)
    within = "by training images, most first" if imbalanced else "in class order"
    ax.set_xlabel(f"predicted class (grouped by the step that introduced them; {within})", fontsize=9)
    ax.set_ylabel("true class")
    ax.set_title(
        f"{_title(run, variant)}\nafter step {step}, {matrix.shape[0]} classes: accuracy "
        f"{record['accuracy']:.2f}% (base {record['accuracy_base']:.2f}%, new {record['accuracy_new']:.2f}%)",
        fontsize=10,
    )
    return image


def plot_confusion(runs: list[Run], step: int | None, out: Path) -> Path:
    """``confusion_figure`` written to ``out``."""
    steps = {_confusion_of(run, step)[0] for run in runs}
    name = f"confusion_step_{steps.pop():02d}.png" if len(steps) == 1 else "confusion_last_step.png"
    return _save(confusion_figure(runs, step), out / name)


def confusion_figure(runs: list[Run], step: int | None = None):
    """Confusion matrices of ``step`` (default: each run's last) as log(1 + count), side by side on one colour scale."""
    panels = [(run, *_confusion_of(run, step)) for run in runs]
    vmax = max(float(np.log1p(m.max())) for _, _, m in panels)
    width, height = CONFUSION_INCHES
    columns = min(int(np.ceil(np.sqrt(len(panels)))), CONFUSION_COLUMNS)  # a grid, not one very wide row
    rows = -(-len(panels) // columns)
    fig = new_figure((width * columns, height * rows))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    variants = variant_labels(runs)
    for ax, (run, s, matrix) in zip(axes.flat, panels):
        image = _draw_confusion(ax, run, s, matrix, vmax, variants.get(run.path, ""))
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    bar = fig.colorbar(image, ax=list(axes.flat), shrink=0.8 if rows > 1 else 1.0)
    bar.set_label("log(1 + number of test images) (same scale in every panel)")
    return fig


def plot_curves(runs: list[Run], out: Path) -> Path:
    """``curves_figure`` written to ``out``."""
    return _save(curves_figure(runs), out / "accuracy_curves.png")


def curves_figure(runs: list[Run]):
    """Accuracy on all seen classes after each step, one line per run; AIA in the legend."""
    fig = new_figure(CURVE_INCHES)
    ax = fig.subplots()
    variants = variant_labels(runs)
    scenarios = {run.results.get("scenario") for run in runs}
    drawn = [run for run in runs if run.results.get("steps")]
    same_seed = plots_steps.shared_seed(drawn)
    counts: list[int] = []
    values: list[float] = []
    for run in sorted(drawn, key=lambda r: -float(np.mean([s["accuracy"] for s in r.results["steps"]]))):
        accs = [s["accuracy"] for s in run.results["steps"]]
        status = "" if run.complete else f", {run.results.get('status')}"
        name = f"{run.label} [{variants[run.path]}]" if variants[run.path] else run.label
        where = f" on {run.results.get('scenario')}" if len(scenarios) > 1 else ""
        seed = "" if same_seed else f" seed {run.results.get('seed')}"
        counts += classes_seen(run)
        values += accs
        ax.plot(
            classes_seen(run),
            accs,
            marker="o",
            markersize=3,
            label=f"{name}{where}{seed}: avg inc. acc. {np.mean(accs):.2f}{status}",
        )
    plots_steps.fitted_ylim(ax, values)
    return finish_step_axes(
        fig,
        ax,
        "top-1 accuracy on all seen classes (%)",
        f"Accuracy after each incremental step{same_seed}",
        None,
        counts,
    )


def plot_base_new(run: Run, out: Path) -> Path:
    """``base_new_figure`` written to ``out``."""
    return _save(base_new_figure(run), out / "base_vs_new.png")


def base_new_figure(run: Run):
    """Accuracy on the base classes, the old classes and the newest step's classes after each step."""
    steps = completed_steps(run)
    x = classes_seen(run)
    fig = new_figure(CURVE_INCHES)
    ax = fig.subplots()
    series: list[tuple[str, str, dict[str, Any]]] = [
        ("accuracy", "all seen classes", {"color": "black", "linewidth": 2}),
        ("accuracy_base", "base classes (step 0)", {"color": "tab:blue"}),
        ("accuracy_old", "old classes (all earlier steps)", {"color": "tab:green", "linestyle": "--"}),
        ("accuracy_new", "new classes (this step)", {"color": "tab:red"}),
    ]
    for key, name, style in series:
        points = [(xi, s[key]) for xi, s in zip(x, steps) if s.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=name, **style)
    plots_steps.fitted_ylim(ax, [v for key, _, _ in series for v in (s.get(key) for s in steps) if v is not None])
    return finish_step_axes(fig, ax, "top-1 accuracy (%)", f"Stability and plasticity: {_title(run)}", counts=x)


def _beside(paths: list[Path]) -> Path:
    """Where figures of several runs go by default: ``plots/`` in the folder that holds them all (a sweep's
    folder, a strategy's seeds), never the current folder."""
    import os

    common = Path(os.path.commonpath([str(Path(p).resolve()) for p in paths]))
    return (common if common.is_dir() else common.parent) / "plots"


def plot_runs(
    paths: list[Path], kind: str | None = None, step: int | None = None, out: Path | None = None
) -> list[Path]:
    """Write the requested figures and return their paths.

    Default kinds: confusion and base-new for one run; for several, mean-curves when some share their
    scenario, strategy and variant (seeds), else curves. Curves and the confusion matrices (side by side
    when several runs are given) go to ``out`` (default: RUN_DIR/plots for one run, FOLDER/plots for
    several, FOLDER holding them all); base-new figures go to ``out`` for one run, else to each
    RUN_DIR/plots.
    """
    if out is not None:
        writable_folder(out, "--out")  # before any run is read
    runs = collect(paths)  # a folder stands for every run under it (e.g. the seeds of a strategy)
    unreadable = [r for r in runs if str(r.results.get("status", "")).startswith("unreadable")]
    if unreadable and len(unreadable) < len(runs):  # the others are drawn; the damaged ones named, not drawn
        for run in unreadable:
            print(f"cil: skipped {run.path}: results.json is {run.results['status']}", file=sys.stderr)
        runs = [r for r in runs if r not in unreadable]
    if kind == "all":
        kinds = list(KINDS)
    elif kind:
        kinds = [kind]
    elif len(runs) == 1:
        kinds = ["confusion", "base-new"] + (["per-class"] if plots_classes.is_imbalanced(runs[0]) else [])
    else:  # seeds of one variant (a sweep's) are averaged into a mean and a band
        variants = variant_labels(runs)
        keys = [(r.results.get("scenario"), r.label, variants[r.path]) for r in runs]
        kinds = ["mean-curves"] if len(set(keys)) < len(keys) else ["curves"]
    single = len(runs) == 1
    shared = out or (runs[0].path / "plots" if single else _beside(paths))
    own = lambda run: run.path / "plots" if out is None else out  # noqa: E731
    written = []
    for k in kinds:
        if k == "curves":
            written.append(plot_curves(runs, shared))
        elif k == "confusion":
            written.append(plot_confusion(runs, step, shared))
        elif k == "mean-curves":
            written.append(_save(plots_steps.mean_curves_figure(runs), shared / "accuracy_mean_over_seeds.png"))
        elif k == "forgetting":
            written.append(_save(plots_steps.forgetting_figure(runs), shared / "forgetting_per_step.png"))
        elif k == "per-class":
            written.append(_save(plots_classes.per_class_figure(runs, step), shared / "per_class_accuracy.png"))
        elif k == "accuracy-matrix":
            written += [
                _save(plots_steps.accuracy_matrix_figure(run), own(run) / _per_run("accuracy_matrix", run, runs, out))
                for run in runs
            ]
        else:
            written += [_save(base_new_figure(run), own(run) / _per_run("base_vs_new", run, runs, out)) for run in runs]
    return written


def _per_run(stem: str, run: Run, runs: list[Run], out: Path | None) -> str:
    """A one-run figure's file name: ``stem.png`` in the run's own plots/, or, when several runs share ``--out``,
    named after the run (strategy, seed, folder) so that none overwrites another."""
    if out is None or len(runs) == 1:
        return f"{stem}.png"
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"{run.label}_seed{run.results.get('seed')}_{run.path.name}")
    return f"{stem}_{safe}.png"

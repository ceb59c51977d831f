"""Per-class figures for imbalanced data (``cil plot --kind per-class``): each class's test accuracy against
its number of training images, the many-/medium-/few-shot thresholds marked.

The accuracy of class c after a step is the diagonal of that step's confusion matrix over its row sum (the
test sets are class-balanced); the training count is results.json's ``train_counts`` (per label, the
imbalance profile applied). A long-tailed run that corrects nothing shows accuracy rising with the count; a
correction flattens the cloud.
"""

from __future__ import annotations

import numpy as np

from cil.analysis.plots_steps import LEGEND_POINTS, new_figure
from cil.analysis.report import Run, completed_steps
from cil.errors import UserError

PER_CLASS_INCHES = (8.0, 5.0)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Top-1 accuracy (%) of every class of a confusion matrix M[true, predicted] (NaN for a class without test
    images)."""
    totals = matrix.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, 100.0 * np.diag(matrix) / totals, np.nan)


def train_counts(run: Run) -> list[int]:
    """The run's training images per label, or one error line for a run recorded before cil counted them."""
    counts = run.results.get("train_counts")
    if not counts:
        raise UserError(f"{run.path}: results.json has no train_counts (a run from before cil recorded them)")
    return [int(c) for c in counts]


def count_order(run: Run, n_seen: int) -> np.ndarray:
    """Labels 0..n_seen-1 sorted by training images (most first) within each step's classes, steps kept in order:
    how the confusion matrix of an imbalanced run is drawn (identity for a balanced one)."""
    counts = train_counts(run)[:n_seen] if run.results.get("train_counts") else [0] * n_seen
    order = []
    for step in run.results["steps"]:
        labels = [label for label in step["labels"] if label < n_seen]
        order += sorted(labels, key=lambda label: (-counts[label], label))
    return np.asarray(order, dtype=np.int64)


def is_imbalanced(run: Run) -> bool:
    counts = run.results.get("train_counts") or []
    return len(set(counts)) > 1


def per_class_figure(runs: list[Run], step: int | None = None):
    """Per-class test accuracy against training images (log scale) after ``step`` (default: the last), one
    series per run; the many-shot and few-shot thresholds of each run's config as dotted lines."""
    fig = new_figure(PER_CLASS_INCHES)
    fig.set_layout_engine("constrained")  # room for the legend outside the axes
    ax = fig.subplots()
    thresholds = set()
    for run in runs:
        steps = completed_steps(run)
        at = len(steps) - 1 if step is None else step
        if not 0 <= at < len(steps):
            raise UserError(f"--step {at}: {run.path} has steps 0 to {len(steps) - 1}")
        path = run.path / "confusion" / f"step_{at:02d}.npy"
        try:
            matrix = np.load(path)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
        accuracy = per_class_accuracy(matrix)
        counts = np.asarray(train_counts(run)[: len(accuracy)])
        ax.scatter(counts, accuracy, s=14, alpha=0.7, label=f"{run.label} seed {run.results.get('seed')}")
        data = run.results.get("config", {}).get("data", {})
        thresholds.add((data.get("many_shot_above", 100), data.get("few_shot_below", 20)))
    for many, few in thresholds:
        ax.axvline(many + 0.5, color="grey", linestyle=":", linewidth=1)
        ax.axvline(few - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.text(few - 0.5, 101, f"few < {few} ", ha="right", va="bottom", fontsize=8, color="grey")
        ax.text(many + 0.5, 101, f" many > {many}", ha="left", va="bottom", fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("top-1 accuracy of the class (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(
        "Per-class accuracy against training-set size" + ("" if step is None else f" after step {step}"), pad=16
    )
    ax.grid(alpha=0.3, which="both")
    fig.legend(fontsize=LEGEND_POINTS, loc="outside lower center", ncols=min(3, len(runs)))
    return fig

"""Per-step figures over runs and seeds: mean accuracy curves with a std band, the accuracy matrix,
forgetting after each step (``cil plot --kind mean-curves|accuracy-matrix|forgetting``).

Each function returns a matplotlib Figure (cil/analysis/plots.py writes them as PNGs; cil/api.py returns
them). The accuracy matrix A[t, g] is the accuracy on the classes of step g after step t
(``accuracy_per_group`` of results.json, g <= t); forgetting after step t is the mean over the
groups g < t of max_{g <= t' < t} A[t', g] - A[t, g] (Chaudhry et al. 2018, per class group, as
``cil report --metric forgetting`` reports it after the last step).
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

from cil.analysis.report import Run, completed_steps, variant_labels
from cil.errors import UserError
from cil.runs.metrics import forgetting

CURVE_INCHES = (8.0, 5.0)


class NotebookFigure(Figure):
    """A matplotlib Figure that shows itself in a notebook as a PNG (``_repr_png_``): a figure made without
    pyplot has no notebook display of its own unless ``%matplotlib inline`` ran first."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def new_figure(size: tuple[float, float]) -> NotebookFigure:
    """A figure outside pyplot's global state: no backend switched, nothing left open; it shows in a
    notebook as a plain last expression or with ``display()``."""
    return NotebookFigure(figsize=size)


def classes_seen(run: Run) -> list[int]:
    """The number of classes seen after each step (the x axis of per-step figures)."""
    return [int(n) for n in np.cumsum([len(s["labels"]) for s in run.results["steps"]])]


LEGEND_POINTS = 9
"""Legend text size: legible in a PNG at its default size (7 pt was not)."""


def step_ticks(ax, counts: list[int]) -> None:
    """Ticks of the x axis on the step boundaries (numbers of classes seen), whole numbers only."""
    from matplotlib.ticker import MaxNLocator

    ticks = sorted(set(counts))
    if 0 < len(ticks) <= 12:
        ax.set_xticks(ticks)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def fitted_ylim(ax, values: list[float], margin: float = 5.0) -> None:
    """The accuracy axis around the data (to the next multiple of 5 beyond a 5-point margin, within 0-100):
    values in 10-40 no longer sit in a quarter of a 0-100 axis."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        ax.set_ylim(0, 100)
        return
    low = max(0.0, 5 * np.floor((min(finite) - margin) / 5))
    high = min(100.0, 5 * np.ceil((max(finite) + margin) / 5))
    ax.set_ylim(low, high if high > low else low + 5)


def finish_step_axes(fig, ax, ylabel: str, title: str, legend: dict | None = None, counts: list[int] | None = None):
    """Labels, ticks on the step boundaries (``counts``: classes seen after each step), grid and legend of a
    per-step figure, the legend below the axes (never over the data), in the order the lines were drawn;
    returns the laid-out figure."""
    ax.set_xlabel("number of classes seen")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    step_ticks(ax, counts or [])
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.set_layout_engine("constrained")
    if handles:
        columns = 1 if max(len(label) for label in labels) > 45 or len(labels) < 4 else 2
        fig.legend(
            handles, labels, loc="outside lower center", ncols=columns, **{"fontsize": LEGEND_POINTS, **(legend or {})}
        )
    return fig


def shared_seed(runs: list[Run]) -> str:
    """' (seed S)' when every run has the same seed (said once in the title, not in every legend entry)."""
    seeds = {r.results.get("seed") for r in runs}
    return f" (seed {seeds.pop()})" if len(seeds) == 1 else ""


def group_matrix(run: Run) -> np.ndarray:
    """A[t, g] (NaN above the diagonal and where a step did not record it)."""
    steps = completed_steps(run)
    matrix = np.full((len(steps), len(steps)), np.nan)
    for t, step in enumerate(steps):
        for g, value in enumerate(step.get("accuracy_per_group") or []):
            if value is not None:
                matrix[t, g] = value
    return matrix


def forgetting_per_step(run: Run) -> list[float | None]:
    """Average forgetting after each step (None at the base step)."""
    matrix = group_matrix(run)
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in matrix]
    return [forgetting(rows[: t + 1]) for t in range(len(rows))]


def mean_curves_figure(runs: list[Run]):
    """Accuracy after each step, mean over the seeds of each strategy (and variant) and scenario, with a
    band of one sample standard deviation; the legend gives the mean AIA and the number of seeds."""
    groups: dict[tuple[str, str], list[Run]] = {}
    labels = variant_labels(runs)
    for run in runs:
        if run.complete:
            label = f"{run.label} [{labels[run.path]}]" if labels[run.path] else run.label
            groups.setdefault((str(run.results.get("scenario")), label), []).append(run)
    if not groups:
        raise UserError("no complete run to average")
    fig = new_figure(CURVE_INCHES)
    ax = fig.subplots()
    counts: list[int] = []
    values: list[float] = []
    scenarios = {scenario for scenario, _ in groups}
    sizes = {len(members) for members in groups.values()}

    def ranking(item: tuple[tuple[str, str], list[Run]]) -> float:  # best average incremental accuracy first
        return -float(np.mean([[s["accuracy"] for s in r.results["steps"]] for r in item[1]]))

    for (scenario, label), members in sorted(groups.items(), key=ranking):
        curves = np.array([[s["accuracy"] for s in r.results["steps"]] for r in members])
        x = classes_seen(members[0])
        counts += x
        mean = curves.mean(axis=0)
        std = curves.std(axis=0, ddof=1) if len(members) > 1 else np.zeros_like(mean)
        values += list(mean - std) + list(mean + std)
        aia = curves.mean(axis=1)
        spread = f" ± {aia.std(ddof=1):.2f}" if len(members) > 1 else ""
        n = f" (n={len(members)})" if len(sizes) > 1 else ""
        (line,) = ax.plot(
            x,
            mean,
            marker="o",
            markersize=3,
            label=f"{label}{f' on {scenario}' if len(scenarios) > 1 else ''}: avg inc. acc. {aia.mean():.2f}"
            f"{spread}{n}",
        )
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    banded = any(len(members) > 1 for members in groups.values())
    fitted_ylim(ax, values)
    over = f"mean over {sizes.pop()} seeds" if len(sizes) == 1 else "mean over seeds"
    return finish_step_axes(
        fig,
        ax,
        "top-1 accuracy on all seen classes (%)",
        f"Accuracy after each step, {over}" + (", band = ± 1 std" if banded else ""),
        None,
        counts,
    )


def accuracy_matrix_figure(run: Run):
    """Heatmap of A[t, g]: rows are the steps after which it is measured, columns the steps whose classes."""
    matrix = group_matrix(run)
    if np.isnan(matrix).all():
        raise UserError(
            f"{run.path} records no accuracy per step's classes (accuracy_per_group: results written before it "
            "was recorded), so there is no accuracy matrix to draw"
        )
    n = len(matrix)
    fig = new_figure((max(4.5, 0.75 * n + 3), max(3.8, 0.6 * n + 2.4)))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", vmin=0, vmax=100)
    if n <= 12:
        for t in range(n):
            for g in range(t + 1):
                if not np.isnan(matrix[t, g]):
                    ax.text(
                        g,
                        t,
                        f"{matrix[t, g]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if matrix[t, g] < 60 else "black",
                    )
    names = ["base" if i == 0 else f"step {i}" for i in range(n)]
    ax.set_xticks(range(n), names, rotation=90 if n > 6 else 0, fontsize=8)
    ax.set_yticks(range(n), [f"after {name}" for name in names], fontsize=8)
    ax.set_xlabel("classes of")
    r = run.results
    ax.set_title(
        f"Accuracy (%) on each step's classes\n{run.label} on {r.get('scenario')} (seed {r.get('seed')})", fontsize=10
    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label("top-1 accuracy (%)")
    fig.tight_layout()
    return fig


def forgetting_figure(runs: list[Run]):
    """Average forgetting after each incremental step, one line per run."""
    fig = new_figure(CURVE_INCHES)
    ax = fig.subplots()
    drawn = 0
    labels = variant_labels(runs)
    counts: list[int] = []
    for run in runs:
        if not run.results.get("steps"):
            continue
        counts += classes_seen(run)
        points = [(x, f) for x, f in zip(classes_seen(run), forgetting_per_step(run)) if f is not None]
        if points:
            r = run.results
            name = f"{run.label} [{labels[run.path]}]" if labels[run.path] else run.label
            ax.plot(
                *zip(*points),
                marker="o",
                markersize=3,
                label=f"{name} on {r.get('scenario')} seed {r.get('seed')} (final {points[-1][1]:.2f})",
            )
            drawn += 1
    if not drawn:
        raise UserError("forgetting needs runs with at least one incremental step")
    return finish_step_axes(
        fig,
        ax,
        "average forgetting (accuracy points)",
        "Forgetting after each step (best earlier accuracy of a step's classes minus now)",
        counts=counts,
    )

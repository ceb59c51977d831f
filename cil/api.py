"""cil from Python (a notebook, a script): the command line's names, results as dicts and DataFrames,
figures as matplotlib Figures. docs/python-api.md shows it in use.

    from cil import api

    results = api.run_experiment("synthetic-b50-5", "il-baseline-bsce", epochs=8, limit_per_class=200,
                                 overrides={"model.backbone": "resnet8"}, out="runs/nb")
    api.steps_frame(results)               # one row per step
    api.collect_runs(["runs"])             # one row per run directory found (what ``cil report`` reads)
    api.confusion_figure(results)          # a Figure; .savefig(...) or shown by the notebook

``overrides`` holds what ``--set`` would, as a dict of dotted keys (``{"optim.lr": 0.05}``) or
nested sections (``{"optim": {"lr": 0.05}}``), values as Python objects. Mistakes raise
``cil.errors.UserError`` with the same one-line message the command line prints.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

RunRef = str | Path | dict
"""A run: its directory, or the dict ``run_experiment`` returned."""

OPTIONS = (
    "seed",
    "memory",
    "memory_budget",
    "epochs",
    "limit_per_class",
    "imbalance",
    "plugins",
    "profiles",
    "overrides",
    "device",
    "data_root",
    "progress",
    "loggers",
)
"""``experiment_config``'s keyword arguments: the command line's options, spelled as Python names."""

OTHER_SPELLINGS = {
    "no_progress": "progress=False",
    "logger": "loggers=[...]",
    "set": "overrides={...}",
    "sets": "overrides={...}",
    "plugin": "plugins=[...]",
    "profile": "profiles=[...]",
    "seeds": "run_seeds(scenario, strategy, seeds, out=...)",
    "tensorboard": "loggers=['tensorboard'] (or () for none)",
    "no_tensorboard": "loggers=()",
    "memory_per_class": "memory=N",
    "out_dir": "out=...",
    "resume": "cil run --resume RUN_DIR (the API starts new runs)",
}
"""Spellings of other surfaces (the CLI's flags) and what the API calls them."""


def _check_options(options: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
    """One UserError for a keyword argument the API does not take (saying what it is called here), instead of
    a TypeError from deep inside."""
    from cil.errors import UserError, did_you_mean

    for name in options:
        if name in OPTIONS or name in extra:
            continue
        if name in OTHER_SPELLINGS:
            raise UserError(f"'{name}' is not an argument of cil.api: write {OTHER_SPELLINGS[name]}")
        raise UserError(f"unknown argument '{name}'{did_you_mean(name, [*OPTIONS, *extra])}")


def _check_types(**arguments: Any) -> None:
    """One UserError, as the command line's, for an argument of the wrong type (a traceback from deep inside
    otherwise, or a value silently read as something else)."""
    from cil.errors import UserError

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def names(v: Any) -> bool:
        return not isinstance(v, (str, bytes, dict)) and isinstance(v, Iterable) and all(isinstance(n, str) for n in v)

    rules: dict[str, tuple[Callable[[Any], bool], str]] = {
        "scenario": (lambda v: isinstance(v, str), "a scenario name such as 'cifar100-b50-5'"),
        "strategy": (lambda v: isinstance(v, (str, Path)), "a strategy name or a strategy file's path"),
        "seed": (lambda v: v is None or integer(v), "an integer"),
        "memory": (lambda v: v is None or integer(v), "an integer (exemplars per class)"),
        "memory_budget": (lambda v: v is None or integer(v), "an integer (exemplars in all)"),
        "epochs": (lambda v: v is None or integer(v), "an integer"),
        "limit_per_class": (lambda v: v is None or integer(v), "an integer"),
        "imbalance": (lambda v: v is None or isinstance(v, str), "a profile such as 'exp:100'"),
        "plugins": (lambda v: isinstance(v, str) or names(v), "a list of plugin names, e.g. ['nme'] (or one name)"),
        "profiles": (lambda v: isinstance(v, str) or names(v), "a list of profile names (or one name)"),
        "overrides": (lambda v: v is None or isinstance(v, dict), "a dict of config keys, e.g. {'optim.lr': 0.05}"),
        "device": (lambda v: v is None or isinstance(v, str), "'auto', 'cpu' or 'cuda'"),
        "data_root": (lambda v: v is None or isinstance(v, (str, Path)), "a folder"),
        "progress": (lambda v: isinstance(v, bool), "True or False"),
        "loggers": (lambda v: v is None or isinstance(v, str) or names(v), "a list of logger names, or ()"),
        "log": (lambda v: v is None or callable(v), "a function taking one line of text"),
        "out": (lambda v: v is None or isinstance(v, (str, Path)), "a folder"),
        "overwrite": (lambda v: isinstance(v, bool), "True or False"),
    }
    for name, value in arguments.items():
        ok, expected = rules[name]
        if not ok(value):
            raise UserError(f"{name} must be {expected}, got {value!r}")
    if arguments.get("memory") is not None and arguments.get("memory_budget") is not None:
        raise UserError("give memory (per class) or memory_budget (in all), not both")


def _items(value: Any) -> list:
    """A list of ``value``'s items; a single string or path is one item, never split into characters."""
    if isinstance(value, (str, Path, dict)):
        return [value]
    return list(value)


def experiment_config(
    scenario: str,
    strategy: str,
    *,
    seed: int | None = None,
    memory: int | None = None,
    memory_budget: int | None = None,
    epochs: int | None = None,
    limit_per_class: int | None = None,
    imbalance: str | None = None,
    plugins: Iterable[str] | str = (),
    profiles: Iterable[str] | str = (),
    overrides: dict[str, Any] | None = None,
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = True,
    loggers: Iterable[str] | str | None = None,
    **unknown: Any,
):
    """The validated RunConfig these arguments give, exactly as ``cil run`` would build it.

    ``loggers``: names of ``--logger`` (tensorboard, csv, wandb; () for none; one name alone is one logger);
    None keeps the default. Another spelling (``no_progress``, ``set``, ``logger``) is one UserError saying
    what it is called here.
    """
    from cil.config import options_layer

    _check_options(unknown)
    _check_types(
        scenario=scenario,
        strategy=strategy,
        seed=seed,
        memory=memory,
        memory_budget=memory_budget,
        epochs=epochs,
        limit_per_class=limit_per_class,
        imbalance=imbalance,
        plugins=plugins,
        profiles=profiles,
        overrides=overrides,
        device=device,
        data_root=data_root,
        progress=progress,
        loggers=loggers,
    )
    from cil.runs.assemble import build_config

    flags = options_layer(
        seed=seed,
        device=device,
        memory=memory,
        memory_budget=memory_budget,
        epochs=epochs,
        data_root=None if data_root is None else str(data_root),
        limit_per_class=limit_per_class,
        imbalance=imbalance,
        progress=progress,
        loggers=None if loggers is None else _items(loggers),
        plugins=tuple(_items(plugins)),
        profiles=tuple(_items(profiles)),
    )
    return build_config(scenario, str(strategy), flags, [], overrides=overrides)


def run_experiment(
    scenario: str,
    strategy: str,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    extra_plugins: list | None = None,
    **options: Any,
) -> dict:
    """Run every step of ``scenario`` with ``strategy``; the results (results.json's content) plus ``run_dir``.

    ``options`` are ``experiment_config``'s (seed, memory, memory_budget, epochs, limit_per_class, imbalance,
    plugins, profiles, overrides, device, data_root, progress, loggers). ``out`` is the run directory
    (default: runs/SCENARIO/STRATEGY/seedS-TIME, as the CLI); ``extra_plugins`` are plugin objects
    built in code (Avalanche or cil plugins), appended to the configured ones.
    """
    from cil.runs.run import run
    from cil.runs.run_directory import default_run_dir

    _check_options(options)
    _check_types(out=out, overwrite=overwrite, log=log)
    cfg = experiment_config(scenario, strategy, **options)
    run_dir = Path(out) if out is not None else default_run_dir(cfg.scenario, cfg.strategy, cfg.seed)
    results = run(
        cfg,
        out=run_dir,
        overwrite=overwrite,
        extra_plugins=extra_plugins,
        log=log if log is not None else (lambda line: print(line, file=sys.stderr)),
    )
    return {**copy.deepcopy(results), "run_dir": str(run_dir)}


def run_seeds(
    scenario: str, strategy: str, seeds: Iterable[int] | int, *, out: str | Path, **kwargs: Any
) -> list[dict]:
    """``run_experiment`` once per training seed, in OUT/seedS (every config checked before the first run)."""
    from cil.errors import UserError
    from cil.runs.run import run_seeds as run_each

    _check_options(kwargs, extra=("overwrite", "log", "extra_plugins"))
    if "seed" in kwargs:
        raise UserError("run_seeds takes seeds=[...], not seed=")
    running = {k: kwargs.pop(k) for k in ("overwrite", "log", "extra_plugins") if k in kwargs}
    seeds = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise UserError(f"seeds must be a list of integers, got {seeds!r}")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise UserError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must be distinct, got {seeds!r}")
    _check_types(out=out, **{k: v for k, v in running.items() if k in ("overwrite", "log")})
    configs = [experiment_config(scenario, strategy, seed=seed, **kwargs) for seed in seeds]
    log = running.pop("log", None) or (lambda line: print(line, file=sys.stderr))
    results = run_each(configs, Path(out), log=log, **running)
    return [{**copy.deepcopy(r), "run_dir": cfg.out} for r, cfg in zip(results, configs)]


def steps_frame(results: RunRef) -> pd.DataFrame:
    """One row per step: classes seen, accuracies (all, top-5, base, old, new), train size and time, and
    whatever the strategy recorded (memory size, rho, alpha, ...)."""
    import pandas as pd

    r = _results(results)
    rows = []
    seen = 0
    for step in r.get("steps", []):
        seen += len(step.get("labels", step.get("classes", [])))
        row = {"step": step["step"], "classes_seen": seen}
        row.update(
            {
                k: v
                for k, v in step.items()
                if k not in ("step", "classes", "labels", "accuracy_per_group") and not isinstance(v, (list, dict))
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def collect_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run directory found under ``paths``: scenario, strategy (and the config keys that make
    it a variant), seed, status and every metric of ``cil report``."""
    from cil.analysis.report import collect, runs_frame

    return runs_frame(collect([Path(p) for p in _items(paths)]))


def report(
    paths: Iterable[str | Path],
    metrics: str = "avg_incremental_accuracy",
    sort: str | None = None,
    fmt: str = "markdown",
) -> str:
    """The table ``cil report`` prints (``metrics``: one name, several comma-separated, or 'all'; ``sort``: a metric
    to rank the rows by, best first; ``fmt``: markdown, csv or latex), as a string: no extra package needed
    (pandas' ``to_markdown`` wants ``tabulate``)."""
    from cil.analysis.report import check_metric, check_metrics, collect, summary_table
    from cil.errors import UserError

    if fmt not in ("markdown", "csv", "latex"):
        raise UserError(f"fmt must be markdown, csv or latex, got {fmt!r}")
    chosen = check_metrics(metrics)
    ranking = None if sort is None else check_metric(sort)
    return summary_table(collect([Path(p) for p in _items(paths)]), metrics=chosen, fmt=fmt, sort=ranking)


def summary(paths: Iterable[str | Path], metric: str = "avg_incremental_accuracy") -> pd.DataFrame:
    """Mean, sample std and count of ``metric`` (a name of ``cil report --metric``) over the complete runs of
    each strategy and scenario."""
    from cil.analysis.report import check_metric, collect, summary_frame

    return summary_frame(collect([Path(p) for p in _items(paths)]), check_metric(metric))


def confusion_figure(runs: RunRef | list[RunRef], step: int | None = None):
    """The confusion matrix of ``step`` (default: the last) of one run, or several side by side."""
    from cil.analysis.plots import confusion_figure as figure

    return figure(_runs(runs), step)


def curves_figure(runs: RunRef | list[RunRef]):
    """Accuracy on all seen classes after each step, one line per run."""
    from cil.analysis.plots import curves_figure as figure

    return figure(_runs(runs))


def per_class_figure(runs: RunRef | list[RunRef], step: int | None = None):
    """Each class's test accuracy against its training images (log scale) after ``step`` (default: the last)."""
    from cil.analysis.plots_classes import per_class_figure as figure

    return figure(_runs(runs), step)


def base_new_figure(run: RunRef):
    """Accuracy on the base, old and newest classes after each step of one run."""
    from cil.analysis.plots import base_new_figure as figure

    return figure(_runs(run)[0])


def mean_curves_figure(runs: RunRef | list[RunRef]):
    """Accuracy after each step, mean over seeds per strategy and scenario, with a ± 1 std band."""
    from cil.analysis.plots_steps import mean_curves_figure as figure

    return figure(_runs(runs))


def accuracy_matrix_figure(run: RunRef):
    """Heatmap of the accuracy on each step's classes after each step."""
    from cil.analysis.plots_steps import accuracy_matrix_figure as figure

    return figure(_runs(run)[0])


def forgetting_figure(runs: RunRef | list[RunRef]):
    """Average forgetting after each step, one line per run."""
    from cil.analysis.plots_steps import forgetting_figure as figure

    return figure(_runs(runs))


def _results(ref: RunRef) -> dict:
    if isinstance(ref, dict):
        return ref
    from cil.runs.results import load_results

    return load_results(Path(ref))


def _runs(refs: RunRef | list[RunRef]) -> list:
    from cil.analysis.report import collect
    from cil.errors import UserError

    runs = []
    for ref in _items(refs):
        path = Path(ref["run_dir"]) if isinstance(ref, dict) and "run_dir" in ref else ref
        if isinstance(path, dict):
            raise UserError("a results dict without 'run_dir' has no confusion matrices: pass its run directory")
        found = collect([Path(path)])
        if len(found) != 1 or found[0].path != Path(path):
            raise UserError(f"{path} is not a run directory (it should hold results.json)")
        runs.append(found[0])
    return runs

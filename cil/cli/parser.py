"""The ``cil`` command line: every sub-command and option, and a parser that reports a mistake on one line."""

from __future__ import annotations

import argparse
from typing import NoReturn

from cil.config.schema import DEFAULT_SEED
from cil.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake on one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _add_scenario(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--scenario", required=required, help="DATASET-bBASE-STEPS, e.g. cifar100-b50-5 (see 'cil list')")
    p.add_argument("--data-root", help="folder holding the dataset (CIFAR: where to find or download it)")
    p.add_argument("--class-order-seed", type=int, help=f"seed of the class order permutation (default {DEFAULT_SEED})")
    _add_imbalance(p)


def _add_imbalance(p: argparse.ArgumentParser, several: bool = False) -> None:
    p.add_argument(
        "--imbalance",
        metavar="PROFILE" + (",..." if several else ""),
        help="make the training set imbalanced: exp:100 (long-tailed, head classes first), exp:100:shuffled "
        "(LDAM-DRW's CIFAR-LT counts by class id), step:100, step:10:minor=0.3; test sets stay balanced"
        + ("; several, comma-separated, are a grid axis" if several else ""),
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """What a run computes and where it runs (shared by run and sweep)."""
    memory = p.add_mutually_exclusive_group()
    memory.add_argument("--memory", type=int, metavar="N", help="growing memory: N exemplars per class (0: none)")
    memory.add_argument(
        "--memory-budget", type=int, metavar="M", help="fixed memory: M exemplars shared by all classes"
    )
    p.add_argument(
        "--seeds", metavar="S1,S2,...", help="training seeds, one run each (the class order stays --class-order-seed's)"
    )
    p.add_argument(
        "--epochs",
        type=int,
        metavar="E",
        help="epochs per step; the LR milestones and every second stage (balanced finetuning, BiC's bias layer, "
        "lws) scale in proportion, each at least 1 epoch (a stage's --set epochs wins)",
    )
    p.add_argument("--limit-per-class", type=int, metavar="N", help="use only the first N training images per class")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto (cuda when available)")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="NAME",
        dest="plugins",
        help="add a plugin to the strategy's, e.g. --plugin gala (repeatable; see 'cil list')",
    )
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME",
        dest="profiles",
        help="apply a named profile over the strategy, e.g. --profile lt-cifar (the long-tailed papers' schedule; "
        "see 'cil list')",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="sets",
        help="override any config key, e.g. --set optim.lr=0.05 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")
    p.add_argument(
        "--logger",
        metavar="NAME,...",
        dest="loggers",
        help="experiment loggers: tensorboard (default), csv, wandb, comma-separated; none for none",
    )
    p.add_argument("--no-tensorboard", action="store_true", help="leave tensorboard out of the loggers")


def build_parser() -> argparse.ArgumentParser:
    from cil import __version__

    parser = _Parser(prog="cil", description="Class-incremental learning runs, by scenario and strategy name.")
    parser.add_argument("--version", action="version", version=f"cil {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="train and evaluate a strategy on a scenario, step by step")
    _add_scenario(run, required=False)
    run.add_argument("--strategy", help="a name from configs/strategies (see 'cil list') or a YAML path")
    run.add_argument("--seed", type=int, help=f"training seed (default {DEFAULT_SEED})")
    _add_run_options(run)
    run.add_argument(
        "--out",
        help="run directory (default runs/SCENARIO/STRATEGY/seedS-TIME); "
        "with --seeds, the parent of one seedS folder per seed",
    )
    run.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    run.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="data-parallel on N processes of this machine (one per GPU), as torchrun would start "
        "them; the global batch and learning rate stay as configured",
    )
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run after its last completed step (its saved config; other "
        "options must agree with it)",
    )

    sweep = sub.add_parser(
        "sweep",
        help="the Cartesian product of scenarios, strategies, --grid values and seeds; "
        "complete runs are skipped, interrupted ones resumed",
    )
    sweep.add_argument("plan", nargs="?", help="a sweep file: a name from configs/sweeps (see 'cil list') or a path")
    sweep.add_argument("--scenario", help="scenario names, comma-separated")
    sweep.add_argument("--strategy", help="strategy names, comma-separated")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a config key and its values (repeatable); 'memory' means memory.per_class",
    )
    sweep.add_argument("--data-root", help="folder holding the dataset")
    sweep.add_argument(
        "--class-order-seed", type=int, help=f"seed of the class order permutation (default {DEFAULT_SEED})"
    )
    _add_imbalance(sweep, several=True)
    _add_run_options(sweep)
    sweep.add_argument("--out", help="parent folder of the sweep's runs (default runs/sweeps/PLAN)")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and what would happen to each")
    sweep.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run up to N runs at once in worker processes (several share a GPU well)",
    )
    sweep.add_argument(
        "--devices",
        metavar="D1,D2,...",
        help="devices of the workers, e.g. cuda:0,cuda:1 (worker i uses the i-th, cyclically)",
    )
    sweep.add_argument(
        "--launcher",
        default="local",
        choices=["local", "slurm", "submitit-local"],
        help="local (default): this machine; slurm: one Slurm job per run (a job array, requeued "
        "and resumed when preempted); submitit-local: the same jobs as local processes",
    )
    sweep.add_argument("--slurm-partition", metavar="P")
    sweep.add_argument("--slurm-gpus-per-job", type=int, default=1, metavar="G")
    sweep.add_argument("--slurm-cpus-per-job", type=int, metavar="C")
    sweep.add_argument("--slurm-time", type=int, default=24 * 60, metavar="MIN", help="time limit of a job")
    sweep.add_argument("--slurm-mem-gb", type=int, metavar="GB")
    sweep.add_argument(
        "--slurm-array-parallelism", type=int, default=64, metavar="K", help="at most K jobs of the array at once"
    )
    sweep.add_argument("--wait", action="store_true", help="with a submitit launcher: wait for the jobs, report them")
    sweep.add_argument(
        "--status",
        metavar="DIR",
        help="the state of every run under DIR (complete, running, queued, failed, ...) and nothing else",
    )

    report = sub.add_parser("report", help="a table of results over seeds: strategies as rows, scenarios as columns")
    report.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_PARENT", help="run directories or folders holding them")
    report.add_argument(
        "--metric",
        default="avg_incremental_accuracy",
        help="avg_incremental_accuracy (default), final_accuracy, final_accuracy_base, final_accuracy_new, "
        "final_accuracy_many, final_accuracy_medium, final_accuracy_few, avg_incremental_top5, forgetting, "
        "train_minutes; several comma-separated, or 'all' (one scenario: one table, a column each)",
    )
    report.add_argument(
        "--sort",
        metavar="METRIC",
        help="rank the rows by this metric's mean, best first (forgetting and train_minutes: smallest first); "
        "default: by name",
    )
    report.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    report.add_argument("--per-step", action="store_true", help="the accuracy after every step of every run")

    plot = sub.add_parser("plot", help="confusion matrix, accuracy per step, base vs new accuracy (PNG)")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or folders holding runs")
    plot.add_argument(
        "--kind",
        choices=["confusion", "curves", "mean-curves", "base-new", "accuracy-matrix", "forgetting", "per-class", "all"],
        help="default: confusion and base-new (and per-class on imbalanced data) for one run, curves for several; "
        "mean-curves: mean over seeds with a std band; accuracy-matrix: accuracy on each step's classes "
        "after each step; forgetting: average forgetting after each step; per-class: each class's accuracy "
        "against its training images",
    )
    plot.add_argument("--step", type=int, help="confusion matrix of this step (default: the last)")
    plot.add_argument(
        "--out", help="folder for the PNGs (default: RUN_DIR/plots for one run, FOLDER/plots for several in FOLDER)"
    )

    sub.add_parser("list", help="datasets, scenario grammar, strategies, sweeps and components")

    describe = sub.add_parser("describe", help="a scenario's class order and per-step classes (no images loaded)")
    _add_scenario(describe)
    describe.add_argument("--json", action="store_true", help="machine-readable output")
    return parser

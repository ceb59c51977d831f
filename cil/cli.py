"""The ``cil`` command: argument parsing and sub-commands only (no training logic here).

Every user mistake ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from cil.config.schema import DEFAULT_SEED
from cil.errors import ReportedInterrupt, RunDiverged, UserError
from cil.output_place import writable_folder
from cil.user_paths import usable_path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_DIVERGED = 3
"""A run stopped because its loss became NaN or infinite (its completed steps are saved)."""
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what a shell reports for a command whose output pipe closed."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake on one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _add_scenario(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--scenario", required=required, help="DATASET-bBASE-STEPS, e.g. cifar100-b50-5 (see 'cil list')")
    p.add_argument("--data-root", help="folder holding the dataset (CIFAR: where to find or download it)")
    p.add_argument("--class-order-seed", type=int, help=f"seed of the class order permutation (default {DEFAULT_SEED})")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """What a run computes and where it runs (shared by run and sweep)."""
    memory = p.add_mutually_exclusive_group()
    memory.add_argument("--memory", type=int, metavar="N", help="growing memory: N exemplars per class (0: none)")
    memory.add_argument("--memory-budget", type=int, metavar="M", help="fixed memory: M exemplars shared by all classes")
    p.add_argument("--seeds", metavar="S1,S2,...",
                   help="training seeds, one run each (the class order stays --class-order-seed's)")
    p.add_argument("--epochs", type=int, metavar="E", help="epochs per step; LR milestones scale in proportion")
    p.add_argument("--limit-per-class", type=int, metavar="N", help="use only the first N training images per class")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto (cuda when available)")
    p.add_argument("--plugin", action="append", default=[], metavar="NAME", dest="plugins",
                   help="add a plugin to the strategy's, e.g. --plugin gala (repeatable; see 'cil list')")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override any config key, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")
    p.add_argument("--logger", metavar="NAME,...", dest="loggers",
                   help="experiment loggers: tensorboard (default), csv, wandb, comma-separated; none for none")
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
    run.add_argument("--out", help="run directory (default runs/SCENARIO/STRATEGY/seedS-TIME); "
                                   "with --seeds, the parent of one seedS folder per seed")
    run.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    run.add_argument("--nproc", type=int, metavar="N",
                     help="data-parallel on N processes of this machine (one per GPU), as torchrun would start "
                          "them; the global batch and learning rate stay as configured")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue an interrupted run after its last completed step (its saved config; other "
                          "options must agree with it)")

    sweep = sub.add_parser("sweep", help="the Cartesian product of scenarios, strategies, --grid values and seeds; "
                                         "complete runs are skipped, interrupted ones resumed")
    sweep.add_argument("plan", nargs="?", help="a sweep file: a name from configs/sweeps (see 'cil list') or a path")
    sweep.add_argument("--scenario", help="scenario names, comma-separated")
    sweep.add_argument("--strategy", help="strategy names, comma-separated")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a config key and its values (repeatable); 'memory' means memory.per_class")
    sweep.add_argument("--data-root", help="folder holding the dataset")
    sweep.add_argument("--class-order-seed", type=int, help=f"seed of the class order permutation (default {DEFAULT_SEED})")
    _add_run_options(sweep)
    sweep.add_argument("--out", help="parent folder of the sweep's runs (default runs/sweeps/PLAN)")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and what would happen to each")
    sweep.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="run up to N runs at once in worker processes (several share a GPU well)")
    sweep.add_argument("--devices", metavar="D1,D2,...",
                       help="devices of the workers, e.g. cuda:0,cuda:1 (worker i uses the i-th, cyclically)")
    sweep.add_argument("--launcher", default="local", choices=["local", "slurm", "submitit-local"],
                       help="local (default): this machine; slurm: one Slurm job per run (a job array, requeued "
                            "and resumed when preempted); submitit-local: the same jobs as local processes")
    sweep.add_argument("--slurm-partition", metavar="P")
    sweep.add_argument("--slurm-gpus-per-job", type=int, default=1, metavar="G")
    sweep.add_argument("--slurm-cpus-per-job", type=int, metavar="C")
    sweep.add_argument("--slurm-time", type=int, default=24 * 60, metavar="MIN", help="time limit of a job")
    sweep.add_argument("--slurm-mem-gb", type=int, metavar="GB")
    sweep.add_argument("--slurm-array-parallelism", type=int, default=64, metavar="K",
                       help="at most K jobs of the array at once")
    sweep.add_argument("--wait", action="store_true", help="with a submitit launcher: wait for the jobs, report them")
    sweep.add_argument("--status", metavar="DIR", help="the state of every run under DIR (complete, running, "
                                                       "queued, failed, ...) and nothing else")

    report = sub.add_parser("report", help="a table of results over seeds: strategies as rows, scenarios as columns")
    report.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_PARENT", help="run directories or folders holding them")
    report.add_argument("--metric", default="aia", help="aia (default), final, final-base, final-new, top5-aia, "
                                                         "forgetting; or 'all'")
    report.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    report.add_argument("--per-step", action="store_true", help="the accuracy after every step of every run")

    plot = sub.add_parser("plot", help="confusion matrix, accuracy per step, base vs new accuracy (PNG)")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or folders holding runs")
    plot.add_argument("--kind", choices=["confusion", "curves", "mean-curves", "base-new", "accuracy-matrix",
                                         "forgetting", "all"],
                      help="default: confusion and base-new for one run, curves for several; mean-curves: "
                           "mean over seeds with a std band; accuracy-matrix: accuracy on each step's classes "
                           "after each step; forgetting: average forgetting after each step")
    plot.add_argument("--step", type=int, help="confusion matrix of this step (default: the last)")
    plot.add_argument("--out", help="folder for the PNGs (default: RUN_DIR/plots for one run, . for several)")

    sub.add_parser("list", help="datasets, scenario grammar, strategies, sweeps and components")

    describe = sub.add_parser("describe", help="a scenario's class order and per-step classes (no images loaded)")
    _add_scenario(describe)
    describe.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


# ------------------------------------------------------------------------------------------------


def _data_config(args):
    from cil.config import DataConfig

    return DataConfig(root=args.data_root)


def _plan(args):
    from cil.data import DATASETS
    from cil.scenarios import ScenarioName, ScenarioPlan

    name = ScenarioName.parse(args.scenario, list(DATASETS))
    seed = _class_order_seed(args)
    spec = DATASETS[name.dataset]
    return ScenarioPlan.make(name, spec.count_classes(_data_config(args)), seed), spec


def _class_order_seed(args) -> int:
    from cil.config import RunConfig
    from cil.config.fields import check_field

    seed = DEFAULT_SEED if args.class_order_seed is None else args.class_order_seed
    check_field(RunConfig, "class_order_seed", seed, "--class-order-seed")
    return seed


def cmd_describe(args) -> int:
    plan, spec = _plan(args)
    names = spec.class_names(_data_config(args)) if spec.class_names is not None and args.data_root else None
    info = plan.to_dict(names)
    if args.json:
        print(compact_json(info))
        return 0
    print(f"{info['scenario']}: {plan.n_classes} classes in {plan.n_steps} steps, "
          f"class order seed {_class_order_seed(args)}")
    print(f"class order: {' '.join(map(str, plan.order))}")
    for step in info["steps"]:
        kind = "base" if step["step"] == 0 and plan.name.base > 0 else "step"
        print(f"{kind} {step['step']}: labels {step['labels'][0]}-{step['labels'][-1]} = classes "
              f"{' '.join(map(str, step['classes']))}")
    return 0


def compact_json(value: Any, indent: int = 0) -> str:
    """Indented JSON with every list of plain values on one line (a class order is one line, not 100)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {compact_json(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + compact_json(v, indent + 2) for v in value) + f"\n{pad}]"
    return json.dumps(value)


def cmd_list(args) -> int:
    from cil import registry
    from cil.config import available_strategies, strategy_description
    from cil.data import DATASETS
    from cil.models import BACKBONES
    from cil.scenarios import GRAMMAR

    print("Scenarios: " + GRAMMAR)
    print("  bBASE: classes of the base step (b0: equal steps, no large base step); STEPS: incremental steps")
    print("\nDatasets:")
    for spec in DATASETS.values():
        print(f"  {spec.name:<16} {spec.summary}")
    print("\nStrategies (configs/strategies/*.yaml; --strategy also takes a path):")
    names = available_strategies()
    width = max(map(len, names)) + 1
    for name in names:
        print(f"  {name:<{width}} {strategy_description(name)}")
    print("\nComponents (for strategy files and --set):")
    for kind, name, summary in registry.summaries():
        print(f"  {kind:<7} {name:<20} {summary}")
    print(f"\nBackbones (model.backbone): {', '.join(BACKBONES)}")
    from cil.sweep import available_sweeps, sweep_description

    print("\nSweeps (configs/sweeps/*.yaml, for 'cil sweep NAME'):")
    for name in available_sweeps():
        first_sentence = re.split(r"[.;]\s+(?=[A-Z])", sweep_description(name))[0]
        print(f"  {name:<{width}} {first_sentence}")
    return 0


def parse_seeds(text: str | None) -> list[int]:
    if text is None:
        return []
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--seeds expects comma-separated integers, got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds expects distinct integers, got '{text}'")
    return seeds


def parse_loggers(text: str | None) -> list[str] | None:
    """``--logger tensorboard,csv`` as a list ([] for 'none'); None when not given."""
    from cil.loggers import LOGGERS

    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return []
    unknown = [name for name in names if name not in LOGGERS]
    if unknown or not names:
        raise UserError(f"--logger: unknown logger '{unknown[0] if unknown else text}'; valid: "
                        f"{', '.join(LOGGERS)}, comma-separated, or none")
    if len(set(names)) != len(names):
        raise UserError(f"--logger names a logger twice: '{text}'")
    return names


def run_flags(args, seed: int | None = None) -> dict[str, Any]:
    """The config layer of the command-line options shared by run and sweep."""
    flags: dict[str, Any] = {}
    if args.memory is not None:
        flags["memory"] = {"per_class": args.memory, "budget": None}
    if args.memory_budget is not None:
        flags["memory"] = {"budget": args.memory_budget}
    for key, value in [("seed", seed), ("class_order_seed", args.class_order_seed), ("device", args.device)]:
        if value is not None:
            flags[key] = value
    data = {k: v for k, v in [("root", args.data_root), ("limit_per_class", args.limit_per_class)] if v is not None}
    if data:
        flags["data"] = data
    if args.no_progress:
        flags["progress"] = False
    loggers = parse_loggers(args.loggers)
    if args.no_tensorboard:
        loggers = [name for name in (loggers or []) if name != "tensorboard"]
    if loggers is not None:
        flags["logging"] = {"loggers": loggers}
    if args.epochs is not None:
        flags["epochs"] = args.epochs
    if args.plugins:
        flags["add_plugins"] = list(args.plugins)
    return flags


def run_config_from_args(args, seed: int | None = None):
    """The validated RunConfig of a ``cil run`` command line."""
    from cil.runner import build_config

    flags = run_flags(args, seed if seed is not None else args.seed)
    if args.out is not None:
        flags["out"] = args.out
    return build_config(args.scenario, args.strategy, flags, args.sets)


def cmd_run(args) -> int:
    from cil.report import step_table
    from cil.runner import run

    if args.nproc is not None and "RANK" not in os.environ:
        return launch_data_parallel(args)
    if args.resume:
        return resume(args)
    if not args.scenario or not args.strategy:
        raise UserError("cil run needs --scenario and --strategy (or --resume RUN_DIR)")
    seeds = parse_seeds(args.seeds)
    if seeds and args.seed is not None:
        raise UserError("give --seed or --seeds, not both")
    if not seeds:
        cfg = run_config_from_args(args)
        if cfg.out:
            writable_folder(Path(cfg.out), "--out")  # before any data is loaded
        results = run(cfg, out=Path(cfg.out) if cfg.out else None, overwrite=args.overwrite)
        print(step_table(results))
        return 0
    return run_seeds(args, seeds)


def launch_data_parallel(args) -> int:
    """``cil run --nproc N``: check the command here, then run it in N processes (cil/distributed.py)."""
    from cil.distributed import launch
    from cil.runner import check_data_parallel

    if args.nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {args.nproc}")
    if args.seeds:
        raise UserError("--nproc runs one run on several processes: it takes no --seeds (use cil sweep)")
    if not args.resume:
        if not args.scenario or not args.strategy:
            raise UserError("cil run needs --scenario and --strategy (or --resume RUN_DIR)")
        cfg = run_config_from_args(args)
        check_data_parallel(cfg)
        if cfg.out:
            writable_folder(Path(cfg.out), "--out")
    argv = list(args.argv)
    at = next(i for i, a in enumerate(argv) if a == "--nproc" or a.startswith("--nproc="))
    del argv[at: at + (1 if "=" in argv[at] else 2)]
    return launch(args.nproc, argv)


def run_seeds(args, seeds: list[int]) -> int:
    """One run per training seed under one parent folder, then their mean and std."""
    from datetime import datetime

    from cil.report import collect, summary_table
    from cil.runner import run

    configs = [run_config_from_args(args, seed) for seed in seeds]  # every config is checked before any run
    if args.out:
        parent = writable_folder(Path(args.out), "--out")
    else:
        parent = Path("runs") / args.scenario / Path(args.strategy).stem / datetime.now().strftime("seeds-%Y%m%d-%H%M%S")
    for seed, cfg in zip(seeds, configs):
        cfg.out = str(parent / f"seed{seed}")
        print(f"--- seed {seed}: {cfg.out}", file=sys.stderr)
        run(cfg, out=Path(cfg.out), overwrite=args.overwrite)
    print(summary_table(collect([parent]), metrics=["aia", "final", "final-base", "final-new", "forgetting"]))
    return 0


def resume(args) -> int:
    """``cil run --resume RUN_DIR``: the saved config, the given options on top, refused if they change it."""
    from cil import registry
    from cil.config import config_differences, describe_differences, resume_config
    from cil.report import step_table
    from cil.runner import run, saved_results_to_resume

    if args.seeds or args.overwrite:
        raise UserError("--resume continues one run: it takes neither --seeds nor --overwrite")
    run_dir = usable_path(args.resume, "--resume")
    saved = saved_results_to_resume(run_dir)
    flags = run_flags(args, args.seed)
    for key in ("scenario", "strategy", "out"):
        if getattr(args, key) is not None:
            flags[key] = getattr(args, key)
    cfg = resume_config(saved["config"], flags=flags, sets=args.sets, lookup=registry.config_class)
    differing = config_differences(saved["config"], cfg.to_dict())
    if differing:
        raise UserError(f"cannot resume {run_dir}: the given options change its saved config: "
                        f"{describe_differences(saved['config'], cfg.to_dict(), differing)}")
    if saved.get("status") == "complete":
        print(f"{run_dir} is already complete", file=sys.stderr)
        print(step_table(saved))
        return 0
    results = run(cfg, out=run_dir, resume=True)
    print(step_table(results))
    return 0


def cmd_sweep(args) -> int:
    from cil.sweep import SweepPlan, execute

    from cil.sweep_slurm import SlurmOptions, print_status
    from cil.sweep_workers import parse_devices

    if args.status:
        return print_status(usable_path(args.status, "--status"))
    plan = SweepPlan.from_args(args, parse_seeds(args.seeds))
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    devices = parse_devices(args.devices)
    slurm = SlurmOptions(partition=args.slurm_partition, gpus_per_job=args.slurm_gpus_per_job,
                         cpus_per_job=args.slurm_cpus_per_job, time_min=args.slurm_time, mem_gb=args.slurm_mem_gb,
                         array_parallelism=args.slurm_array_parallelism)
    slurm.check()
    return execute(plan, lambda seed: run_flags(args, seed), out=args.out, dry_run=args.dry_run, jobs=args.jobs,
                   devices=devices, launcher=args.launcher, slurm=slurm, wait=args.wait)


def cmd_report(args) -> int:
    from cil.report import METRICS, collect, per_step_table, summary_table

    metrics = list(METRICS) if args.metric == "all" else [args.metric]
    for metric in metrics:
        if metric not in METRICS:
            raise UserError(f"unknown metric '{metric}'; valid: {', '.join(METRICS)}, all")
    runs = collect([Path(p) for p in args.paths])
    if args.per_step:
        print(per_step_table(runs, args.format))
    else:
        print(summary_table(runs, metrics=metrics, fmt=args.format))
    return 0


def cmd_plot(args) -> int:
    from cil.plots import plot_runs

    for path in plot_runs([Path(r) for r in args.runs], kind=args.kind, step=args.step,
                          out=Path(args.out) if args.out else None):
        print(path)
    return 0


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "report": cmd_report, "plot": cmd_plot, "list": cmd_list,
            "describe": cmd_describe}


def _one_line(exc: BaseException) -> str:
    """The user-facing line of an error (DataLoader workers wrap the original message)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    last = lines[-1]
    if "UserError: " in last:  # re-raised from a worker: keep the original message
        return last.split("UserError: ", 1)[1]
    return lines[0]


def main(argv: list[str] | None = None) -> int:
    from cil.distributed import is_secondary_rank

    if is_secondary_rank():  # torchrun's other processes: rank 0 prints for the run
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        args.argv = argv
        return COMMANDS[args.command](args)
    except RunDiverged as exc:
        if not is_secondary_rank():
            print(f"cil: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_DIVERGED
    except UserError as exc:
        if not is_secondary_rank():
            print(f"cil: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ReportedInterrupt:  # what was saved and how to continue is printed already
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("cil: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (``cil list | head``): stop quietly, as Unix tools do
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())

"""One function per ``cil`` sub-command (``COMMANDS``): each turns its parsed options into calls to
cil.runs, cil.sweeps or cil.analysis and prints what the user asked for."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cil.config.schema import DEFAULT_SEED
from cil.errors import UserError
from cil.files import usable_path, writable_folder

if TYPE_CHECKING:
    from cil.config import RunConfig

# ------------------------------------------------------------------------------------------------


def _data_config(args):
    from cil.config import DataConfig
    from cil.config.imbalance import ImbalanceProfile

    profile = ImbalanceProfile.parse(getattr(args, "imbalance", None), "--imbalance")
    return DataConfig(root=args.data_root, imbalance=None if profile is None else str(profile))


def _plan(args):
    from cil.data import parse_scenario, scenario_plan

    return scenario_plan(args.scenario, _data_config(args), _class_order_seed(args)), parse_scenario(args.scenario)[1]


def _class_order_seed(args) -> int:
    from cil.config import RunConfig
    from cil.config.fields import check_field

    seed = DEFAULT_SEED if args.class_order_seed is None else args.class_order_seed
    check_field(RunConfig, "class_order_seed", seed, "--class-order-seed")
    return seed


def cmd_describe(args) -> int:
    from cil.data import planned_train_counts

    plan, spec = _plan(args)
    data = _data_config(args)
    names = spec.class_names(data) if spec.class_names is not None and args.data_root else None
    info = plan.to_dict(names)
    # folders are counted (a scan of every class folder) only when an imbalance profile needs it
    counts = planned_train_counts(spec, data, plan) if not spec.takes_lists or data.imbalance else None
    if counts is not None:  # training images per step and per label, imbalance applied (no image is read)
        info["imbalance"] = data.imbalance
        for step in info["steps"]:
            step["train_counts"] = [counts[label] for label in step["labels"]]
            step["n_train"] = sum(step["train_counts"])
    if args.json:
        print(compact_json(info))
        return 0
    print(
        f"{info['scenario']}: {plan.n_classes} classes in {plan.n_steps} steps, "
        f"class order seed {_class_order_seed(args)}"
    )
    print(f"class order: {' '.join(map(str, plan.order))}")
    if counts is not None:
        print(
            f"training images: {sum(counts)} ({data.imbalance or 'as the dataset is'}; per class {max(counts)} down "
            f"to {min(counts)}, test sets unchanged)"
        )
    for step in info["steps"]:
        kind = "base" if step["step"] == 0 and plan.name.base > 0 else "step"
        images = ""
        if counts is not None:
            per_class = step["train_counts"]
            spread = f"{per_class[0]}" if min(per_class) == max(per_class) else f"{max(per_class)}-{min(per_class)}"
            images = f", {step['n_train']} images ({spread} per class)"
        print(
            f"{kind} {step['step']}: labels {step['labels'][0]}-{step['labels'][-1]}{images} = classes "
            f"{' '.join(map(str, step['classes']))}"
        )
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
    from cil.data.scenarios import GRAMMAR
    from cil.models import BACKBONES

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
    components = registry.summaries()
    name_width = max(len(name) for _, name, _ in components) + 1
    for kind, name, summary in components:
        print(f"  {kind:<7} {name:<{name_width}} {summary}")
    print(f"\nBackbones (model.backbone): {', '.join(BACKBONES)}")
    from cil.config.layers import available_profiles, profile_description

    print("\nProfiles (configs/profiles/*.yaml, for --profile NAME):")
    for name in available_profiles():
        print(f"  {name:<{width}} {profile_description(name)}")
    from cil.sweeps.plan import available_sweeps, sweep_description

    print("\nSweeps (configs/sweeps/*.yaml, for 'cil sweep NAME'):")
    for name in available_sweeps():
        first_sentence = re.split(r"[.;]\s+(?=[A-Z])", sweep_description(name))[0]
        print(f"  {name:<{width}} {first_sentence}")
    return 0


def parse_seeds(text: str | None) -> list[int]:
    if text is None:
        return []
    try:
        seeds = [int(v) for v in text.split(",")]  # an empty item ('1,,2') is a typo, not nothing
    except ValueError:
        raise UserError(f"--seeds expects comma-separated integers, got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds expects distinct integers, got '{text}'")
    return seeds


def parse_loggers(text: str | None) -> list[str] | None:
    """``--logger tensorboard,csv`` as a list ([] for 'none'); None when not given."""
    from cil.runs.loggers import LOGGERS

    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return []
    unknown = [name for name in names if name not in LOGGERS]
    if unknown or not names:
        raise UserError(
            f"--logger: unknown logger '{unknown[0] if unknown else text}'; valid: "
            f"{', '.join(LOGGERS)}, comma-separated, or none"
        )
    if len(set(names)) != len(names):
        raise UserError(f"--logger names a logger twice: '{text}'")
    return names


def run_flags(args, seed: int | None = None) -> dict[str, Any]:
    """The config layer of the command-line options shared by run and sweep."""
    from cil.config import options_layer

    loggers = parse_loggers(args.loggers)
    if args.no_tensorboard:
        loggers = [name for name in (loggers or []) if name != "tensorboard"]
    return options_layer(
        seed=seed,
        class_order_seed=args.class_order_seed,
        device=args.device,
        memory=args.memory,
        memory_budget=args.memory_budget,
        epochs=args.epochs,
        data_root=args.data_root,
        limit_per_class=args.limit_per_class,
        imbalance=getattr(args, "imbalance", None),
        progress=False if args.no_progress else None,
        loggers=loggers,
        plugins=args.plugins,
        profiles=getattr(args, "profiles", None) or (),
    )


def run_config_from_args(args, seed: int | None = None):
    """The validated RunConfig of a ``cil run`` command line."""
    from cil.runs.assemble import build_config

    flags = run_flags(args, seed if seed is not None else args.seed)
    if args.out is not None:
        flags["out"] = args.out
    return build_config(args.scenario, args.strategy, flags, args.sets)


def _require_scenario_and_strategy(args) -> None:
    if not args.scenario or not args.strategy:
        raise UserError("cil run needs --scenario and --strategy (or --resume RUN_DIR)")


def cmd_run(args) -> int:
    from cil.analysis.report import step_table
    from cil.runs.run import run

    if args.nproc is not None and "RANK" not in os.environ:
        return launch_data_parallel(args)
    if args.resume:
        return resume(args)
    _require_scenario_and_strategy(args)
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
    """``cil run --nproc N``: check the command here, then run it in N processes (cil/training/distributed.py)."""
    from cil.runs.assemble import check_data_parallel, resolve_device
    from cil.runs.data_parallel import launch
    from cil.runs.run_directory import default_run_dir

    if args.nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {args.nproc}")
    if args.seeds:
        raise UserError("--nproc runs one run on several processes: it takes no --seeds (use cil sweep)")
    argv = list(args.argv)
    at = next(i for i, a in enumerate(argv) if a == "--nproc" or a.startswith("--nproc="))
    del argv[at : at + (1 if "=" in argv[at] else 2)]
    if args.resume:  # every check of a resume, here, before any process starts
        out, _, cfg = checked_resume(args)
    else:
        _require_scenario_and_strategy(args)
        cfg = run_config_from_args(args)
        out = Path(cfg.out) if cfg.out else default_run_dir(cfg.scenario, cfg.strategy, cfg.seed)
        writable_folder(out, "--out")
        if not cfg.out:  # the ranks run in the folder named here, so that the launcher knows where the run is
            argv += ["--out", str(out)]
    check_data_parallel(cfg)
    device = resolve_device(cfg.device)
    available = torch_devices(device.type)
    if args.nproc > available:
        raise UserError(
            f"--nproc {args.nproc}: this machine has {available} {device.type.upper()} "
            f"{'device' if device.type == 'cuda' else 'core'}{'' if available == 1 else 's'} for one process each"
        )
    return launch(args.nproc, argv, out)


def torch_devices(kind: str) -> int:
    """How many processes of one run this machine can give a device each: its GPUs, or its CPU cores."""
    import torch

    return torch.cuda.device_count() if kind == "cuda" else max(1, os.cpu_count() or 1)


def run_seeds(args, seeds: list[int]) -> int:
    """One run per training seed under one parent folder, then their mean and std."""
    from cil.analysis.report import collect, summary_table
    from cil.runs.run import run_seeds as run_each
    from cil.runs.run_directory import default_run_dir

    configs = [run_config_from_args(args, seed) for seed in seeds]  # every config is checked before any run
    default = default_run_dir(args.scenario, configs[0].strategy)
    parent = writable_folder(Path(args.out) if args.out else default, "--out")
    run_each(configs, parent, overwrite=args.overwrite)
    print(
        summary_table(
            collect([parent]),
            metrics=[
                "avg_incremental_accuracy",
                "final_accuracy",
                "final_accuracy_base",
                "final_accuracy_new",
                "forgetting",
            ],
        )
    )
    return 0


def checked_resume(args) -> tuple[Path, dict, RunConfig]:
    """The run directory of ``--resume``, its saved results and the config to continue with (the saved one, the
    given options on top); one UserError if it cannot be resumed or the options change it."""
    from cil import registry
    from cil.config import config_differences, describe_differences, resume_config
    from cil.runs.run_directory import saved_results_to_resume

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
        raise UserError(
            f"cannot resume {run_dir}: the given options change its saved config: "
            f"{describe_differences(saved['config'], cfg.to_dict(), differing)}"
        )
    return run_dir, saved, cfg


def resume(args) -> int:
    """``cil run --resume RUN_DIR``: the saved config, the given options on top, refused if they change it."""
    from cil.analysis.report import step_table
    from cil.runs.run import run

    run_dir, saved, cfg = checked_resume(args)
    if saved.get("status") == "complete":
        print(f"{run_dir} is already complete", file=sys.stderr)
        print(step_table(saved))
        return 0
    results = run(cfg, out=run_dir, resume=True)
    print(step_table(results))
    return 0


def cmd_sweep(args) -> int:
    from cil.sweeps.execute import execute
    from cil.sweeps.plan import SweepPlan
    from cil.sweeps.slurm import SlurmOptions, print_status
    from cil.sweeps.workers import parse_devices

    if args.status:
        return print_status(usable_path(args.status, "--status"))
    if args.imbalance:  # a grid axis: each profile's runs in a folder of their own
        args.grid = [*args.grid, f"data.imbalance={args.imbalance}"]
        args.imbalance = None
    plan = SweepPlan.from_args(args, parse_seeds(args.seeds))
    devices = parse_devices(args.devices)
    slurm = SlurmOptions(
        partition=args.slurm_partition,
        gpus_per_job=args.slurm_gpus_per_job,
        cpus_per_job=args.slurm_cpus_per_job,
        time_min=args.slurm_time,
        mem_gb=args.slurm_mem_gb,
        array_parallelism=args.slurm_array_parallelism,
    )
    slurm.check(args.launcher, args.wait)
    return execute(
        plan,
        lambda seed: run_flags(args, seed),
        out=args.out,
        dry_run=args.dry_run,
        jobs=args.jobs,
        devices=devices,
        launcher=args.launcher,
        slurm=slurm,
        wait=args.wait,
    )


def cmd_report(args) -> int:
    from cil.analysis.report import check_metric, check_metrics, collect, per_step_table, summary_table

    metrics = check_metrics(args.metric)
    sort = None if args.sort in (None, "name") else check_metric(args.sort)
    runs = collect([Path(p) for p in args.paths])
    if args.per_step:
        print(per_step_table(runs, args.format))
    else:
        print(summary_table(runs, metrics=metrics, fmt=args.format, sort=sort))
    return 0


def cmd_plot(args) -> int:
    from cil.analysis.plots import plot_runs

    for path in plot_runs(
        [Path(r) for r in args.runs], kind=args.kind, step=args.step, out=Path(args.out) if args.out else None
    ):
        print(path)
    return 0


COMMANDS = {
    "run": cmd_run,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "plot": cmd_plot,
    "list": cmd_list,
    "describe": cmd_describe,
}

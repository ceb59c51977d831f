"""The ``cil`` command: argument parsing and sub-commands only (no training logic here).

Every user mistake ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from cil.errors import UserError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake on one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _add_scenario(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", required=True, help="DATASET-bBASE-STEPS, e.g. cifar100-b50-5 (see 'cil list')")
    p.add_argument("--data-root", help="folder holding the dataset (CIFAR: where to find or download it)")
    p.add_argument("--class-order-seed", type=int, help="seed of the class order permutation (default 1993)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cil", description="Class-incremental learning runs, by scenario and strategy name.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="train and evaluate a strategy on a scenario, step by step")
    _add_scenario(run)
    run.add_argument("--strategy", required=True, help="a name from configs/strategies (see 'cil list') or a YAML path")
    memory = run.add_mutually_exclusive_group()
    memory.add_argument("--memory", type=int, metavar="N", help="growing memory: N exemplars per class (0: none)")
    memory.add_argument("--memory-budget", type=int, metavar="M", help="fixed memory: M exemplars shared by all classes")
    run.add_argument("--seed", type=int, help="training seed (default 1993)")
    run.add_argument("--epochs", type=int, metavar="E", help="epochs per step; LR milestones scale in proportion")
    run.add_argument("--limit-per-class", type=int, metavar="N", help="use only the first N training images per class")
    run.add_argument("--out", help="run directory (default runs/SCENARIO/STRATEGY/seedS-TIME)")
    run.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto (cuda when available)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                     help="override any config key, e.g. --set optim.lr=0.05 (repeatable)")
    run.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")

    sub.add_parser("list", help="datasets, scenario grammar, strategies and components")

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
    seed = 1993 if args.class_order_seed is None else args.class_order_seed
    spec = DATASETS[name.dataset]
    return ScenarioPlan.make(name, spec.count_classes(_data_config(args)), seed), spec


def cmd_describe(args) -> int:
    plan, spec = _plan(args)
    names = None
    if spec.name in ("folder", "imagenet", "imagenet-subset") and args.data_root:
        from cil.data import folder

        names = folder.class_folders(Path(args.data_root) / "train")[: plan.n_classes]
    info = plan.to_dict(names)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['scenario']}: {plan.n_classes} classes in {plan.n_steps} steps, "
          f"class order seed {1993 if args.class_order_seed is None else args.class_order_seed}")
    print(f"class order: {' '.join(map(str, plan.order))}")
    for step in info["steps"]:
        kind = "base" if step["step"] == 0 and plan.name.base > 0 else "step"
        print(f"{kind} {step['step']}: labels {step['labels'][0]}-{step['labels'][-1]} = classes "
              f"{' '.join(map(str, step['classes']))}")
    return 0


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
    for name in available_strategies():
        print(f"  {name:<24} {strategy_description(name)}")
    print("\nComponents (for strategy files and --set):")
    for c in registry.all_components():
        print(f"  {c.kind:<7} {c.name:<20} {c.summary}")
    print(f"\nBackbones (model.backbone): {', '.join(BACKBONES)}")
    return 0


def run_config_from_args(args):
    """The validated RunConfig of a ``cil run`` command line; impossible scenarios fail before any data loads."""
    from cil import registry
    from cil.config import assemble, strategy_layers
    from cil.data import DATASETS
    from cil.scenarios import ScenarioName, ScenarioPlan

    name = ScenarioName.parse(args.scenario, list(DATASETS))
    strategy_layers(args.strategy)  # an unknown strategy is reported before loading the plugins
    flags: dict[str, Any] = {}
    if args.memory is not None:
        flags["memory"] = {"per_class": args.memory, "budget": None}
    if args.memory_budget is not None:
        flags["memory"] = {"budget": args.memory_budget}
    for key, value in [("seed", args.seed), ("class_order_seed", args.class_order_seed), ("device", args.device),
                       ("out", args.out)]:
        if value is not None:
            flags[key] = value
    data = {k: v for k, v in [("root", args.data_root), ("limit_per_class", args.limit_per_class)] if v is not None}
    if data:
        flags["data"] = data
    if args.no_progress:
        flags["progress"] = False
    if args.epochs is not None:
        flags["epochs"] = args.epochs
    cfg = assemble(scenario=args.scenario, strategy=args.strategy, dataset=name.dataset, flags=flags, sets=args.sets,
                   lookup=registry.config_class)
    ScenarioPlan.make(name, DATASETS[name.dataset].count_classes(cfg.data), cfg.class_order_seed)
    return cfg


def cmd_run(args) -> int:
    from cil.report import step_table
    from cil.runner import run

    cfg = run_config_from_args(args)
    results = run(cfg, out=Path(cfg.out) if cfg.out else None, overwrite=args.overwrite)
    print(step_table(results))
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "describe": cmd_describe}


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
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="No loggers specified")
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"cil: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cil: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

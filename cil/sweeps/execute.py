"""Carrying out a sweep's plan: what to do with each run (run, resume, skip, invalid), then the runs,
here, in worker processes (cil/sweeps/workers.py) or as Slurm jobs (cil/sweeps/slurm.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cil.errors import ReportedInterrupt, UserError
from cil.files import writable_folder
from cil.sweeps.plan import RunSpec, SweepPlan


@dataclass
class Planned:
    spec: RunSpec
    action: str  # run, resume, skip, invalid
    detail: str = ""
    config: Any = None


def plan_actions(plan: SweepPlan, flags_of: Callable[[int], dict], out: Path) -> list[Planned]:
    """What to do with every run of the sweep; a folder holding a different experiment stops everything.

    ``flags_of(seed)``: the config layer of the command-line options for a seed.
    """
    from cil.config import IncompatibleConfigError, config_differences
    from cil.runs.assemble import build_config
    from cil.runs.results import RESULTS, load_results
    from cil.runs.run_directory import comparable_config

    planned = []
    for spec in plan.runs(out):
        try:
            flags = {**flags_of(spec.seed), **({"profiles": plan.profiles} if plan.profiles else {})}
            cfg = build_config(spec.scenario, spec.strategy, flags, plan.sets_for(spec.strategy) + spec.sets)
        except IncompatibleConfigError as exc:
            planned.append(Planned(spec, "invalid", str(exc)))
            continue
        cfg.out = str(spec.out)
        if not (spec.out / RESULTS).exists():
            planned.append(Planned(spec, "run", config=cfg))
            continue
        try:
            saved = load_results(spec.out)
        except UserError as exc:  # a damaged run directory is left as it is, and listed
            planned.append(Planned(spec, "invalid", f"{exc}; remove the folder to run it again"))
            continue
        differing = config_differences(saved.get("config", {}), comparable_config(cfg, saved.get("config", {})))
        if differing:
            raise UserError(
                f"{spec.out} holds a run with another config (differs in {', '.join(differing[:5])}); "
                f"give the sweep another --out"
            )
        done = len(saved.get("steps", []))
        if saved.get("status") in ("complete", "diverged"):  # a diverged run would diverge again
            planned.append(Planned(spec, "skip", saved["status"], cfg))
        else:
            planned.append(
                Planned(spec, "resume", f"{saved.get('status')}, {done} of {saved.get('n_steps')} steps", cfg)
            )
    return planned


def execute(
    plan: SweepPlan,
    flags_of: Callable[[int], dict],
    out: str | None = None,
    dry_run: bool = False,
    jobs: int = 1,
    devices: list[str] | None = None,
    launcher: str = "local",
    slurm=None,
    wait: bool = False,
) -> int:
    """Run (or with ``dry_run`` only list) the sweep under ``out``; exit code 1 if any run failed.

    ``jobs`` > 1 or ``devices`` run in worker processes (cil/sweeps/workers.py), one run at a time
    in this process otherwise.
    """
    from cil.analysis.report import collect, summary_table

    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    from cil.runs.run_directory import default_sweep_dir

    folder = writable_folder(Path(out) if out else default_sweep_dir(plan.name), "--out")
    planned = plan_actions(plan, flags_of, folder)
    counts = {a: sum(p.action == a for p in planned) for a in ("run", "resume", "skip", "invalid")}
    print(
        f"sweep {plan.name}: {len(planned)} runs in {folder}: {counts['run']} to run, {counts['resume']} to resume, "
        f"{counts['skip']} complete, {counts['invalid']} invalid",
        file=sys.stderr,
    )
    for p in planned:
        if p.action == "invalid" or dry_run:
            print(f"  {p.action:<8} {p.spec.describe()}{': ' + p.detail if p.detail else ''}", file=sys.stderr)
    if dry_run:
        return 0
    todo = [p for p in planned if p.action in ("run", "resume")]
    outcomes: dict[str, list[str]] = {"failed": [], "diverged": [], "elsewhere": []}

    def report(kind: str, task, where: str, detail: str) -> None:
        head = f"[{task.index + 1}/{len(todo)}]"
        if kind == "start":
            print(f"{head} start {task.description} ({where}) -> {task.out}", file=sys.stderr)
            return
        print(f"{head} {kind}: {task.description}{': ' + detail if detail else ''}", file=sys.stderr)
        if kind in outcomes:
            outcomes[kind].append(f"{task.out}: {detail}")

    from cil.sweeps.workers import Task, run_in_workers

    tasks = [Task(i, p.spec.out, p.config, p.spec.describe()) for i, p in enumerate(todo)]
    if launcher != "local":
        from cil.sweeps.slurm import SlurmOptions, submit

        return submit(tasks, folder, launcher, slurm or SlurmOptions(), wait)
    if jobs > 1 or devices:
        run_in_workers(tasks, jobs, devices or [], report)
    else:
        run_here(tasks, report)
    done = [p.spec.out for p in planned if p.action != "invalid" and (p.spec.out / "results.json").exists()]
    if done:
        print(summary_table(collect(done), metrics=["avg_incremental_accuracy", "final_accuracy"]))
    for line in outcomes["elsewhere"]:
        print(f"running elsewhere: {line}", file=sys.stderr)
    for kind in ("diverged", "failed"):
        for line in outcomes[kind]:
            print(f"{kind}: {line}", file=sys.stderr)
    return 1 if outcomes["failed"] or outcomes["diverged"] else 0


def run_here(tasks: list, report: Callable) -> None:
    """One run after another in this process (``--jobs 1``); a run that fails, even for a user error found
    only once it started, is listed at the end and the sweep goes on."""
    from cil.sweeps.workers import failure_detail, run_claimed

    for task in tasks:
        report("start", task, "this process", "")
        try:
            outcome, detail = run_claimed(task.config, task.out, log=lambda line: print(line, file=sys.stderr))
        except KeyboardInterrupt:
            print("sweep interrupted; run the same 'cil sweep' command again to continue", file=sys.stderr)
            raise ReportedInterrupt from None
        except Exception as exc:  # one run failing does not stop the others; it is listed at the end
            outcome, detail = "failed", failure_detail(exc)
        report(outcome, task, "this process", detail)

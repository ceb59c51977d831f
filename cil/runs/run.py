"""Running one run: a validated RunConfig trained step by step into its run directory."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch

from cil.config import RunConfig, strategy_label
from cil.data.scenarios import build_streams
from cil.errors import ReportedInterrupt, RunDiverged, StorageError, TrainingDiverged, UserError
from cil.files import writable_folder
from cil.runs.assemble import (
    build_strategy,
    device_description,
    prepare,
    resolve_device,
    seed_everything,
    step_notes,
)
from cil.runs.checkpoint import load_checkpoint
from cil.runs.loggers import LogContext, check_loggers, open_loggers
from cil.runs.metrics import shot_groups
from cil.runs.results import RESULTS, RunWriter, environment
from cil.runs.run_directory import default_run_dir, open_run_directory
from cil.runs.step_report import StepReporter
from cil.training.distributed import SINGLE, World, launched_by_cil


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM stops a run the way Ctrl-C does (completed steps kept, resume command printed)."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_command(out: Path) -> str:
    """The command that continues the run in ``out``, as this shell can type it."""
    from cil.processes import command_line

    return command_line("run", "--resume", out)


def run(
    cfg: RunConfig,
    *,
    out: Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    extra_plugins: list | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    claim: bool = True,
    loaded: dict | None = None,
) -> dict:
    """Run every step of the scenario and return the final results (also in ``out``/results.json).

    ``resume`` continues the run in ``out`` after its last checkpoint (a fresh start when it has
    none and no completed step). ``extra_plugins`` are appended to the configured ones (Avalanche
    or cil plugins built in code). The run directory is claimed for the run's duration
    (cil/runs/claims.py; ``claim=False`` when the caller holds the claim), so no other process runs it.
    """
    import cil.training.engine  # noqa: F401 - Avalanche first: it refuses to build its loggers once a process group exists
    from cil.runs.claims import claimed
    from cil.training.distributed import join
    from cil.training.runtime import Runtime

    check_loggers(cfg.logging.loggers, cfg.to_dict()["logging"])
    device = resolve_device(cfg.device)
    world = join(device.type)
    if world.active and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    runtime = Runtime.resolve(cfg.runtime, device, deterministic=cfg.deterministic)
    if cfg.runtime.threads is not None:
        torch.set_num_threads(cfg.runtime.threads)
    out = world.share(
        writable_folder(
            Path(out) if out is not None else default_run_dir(cfg.scenario, cfg.strategy, cfg.seed), "--out"
        )
    )
    options: dict[str, Any] = dict(
        overwrite=overwrite, resume=resume, extra_plugins=extra_plugins, world=world, loaded=loaded
    )
    if not world.main:  # rank 0 claims, writes and logs for the run
        return _run_in(out, cfg, runtime, log=lambda line: None, **options)
    try:
        if not claim:
            return _run_in(out, cfg, runtime, log=log, **options)
        with claimed(out):
            return _run_in(out, cfg, runtime, log=log, **options)
    except StorageError as exc:
        raise _with_advice(exc, out) from None


def _with_advice(exc: StorageError, out: Path) -> StorageError:
    """``exc`` saying what to run once the write can succeed (unless it says so already)."""
    if exc.advice:
        return exc
    again = f"continue with: {resume_command(out)}" if (out / RESULTS).is_file() else "run the same command again"
    return StorageError(exc.path, exc.reason, f"nothing new was recorded; once that is solved, {again}")


def _run_in(
    out: Path,
    cfg: RunConfig,
    runtime,
    *,
    overwrite: bool,
    resume: bool,
    extra_plugins: list | None,
    log: Callable[[str], None],
    world: World = SINGLE,
    loaded: dict | None = None,
) -> dict:
    """``run`` in a claimed directory: open it, build the strategy, train and report every step."""
    from cil.training.engine import run_steps

    if world.main:
        checkpoint = open_run_directory(out, cfg, overwrite=overwrite, resume=resume, log=log)
        world.barrier()
    else:  # once rank 0 has checked (and, with --overwrite, cleared) the run directory
        world.barrier()
        checkpoint = load_checkpoint(out) if resume else None
    seed_everything(cfg.seed)
    started = time.perf_counter()
    prepared = prepare(cfg, loaded)
    plan = prepared.plan
    log(
        f"{cfg.scenario}: {plan.n_steps} steps ({', '.join(str(len(c)) for c in plan.step_classes)} classes), "
        f"{len(prepared.data.train)} train / {len(prepared.data.test)} test images, loaded in "
        f"{time.perf_counter() - started:.1f}s; strategy {cfg.strategy}, backbone {prepared.backbone}, "
        f"memory {cfg.memory.describe()}, {cfg.optim.epochs} epochs, device {device_description(runtime.device)} "
        f"({runtime.describe()})"
    )
    for note in step_notes(cfg, plan):
        log(f"note: {note}")
    train_stream, test_stream = build_streams(plan, prepared.data.train.targets, prepared.data.test.targets)
    first_step = checkpoint["state"]["step"] + 1 if checkpoint is not None else 0
    from cil.runs.loggers.run_loggers import RunLoggers

    run_loggers = RunLoggers([])  # opened below, once the run directory is written
    strategy = build_strategy(
        cfg, prepared, runtime, list(extra_plugins or []), log, world, on_epoch=run_loggers.log_epoch
    )
    if checkpoint is not None:
        try:
            strategy.restore_state(checkpoint["state"])
        except (ValueError, RuntimeError, KeyError) as exc:
            raise UserError(
                f"cannot resume {out}: its checkpoint does not fit this strategy ({str(exc).splitlines()[0]})"
            ) from None
    config = cfg.to_dict()
    config["model"]["backbone"] = prepared.backbone
    header = {
        "scenario": cfg.scenario,
        "strategy": cfg.strategy,
        "seed": cfg.seed,
        "class_order_seed": cfg.class_order_seed,
        "class_order": plan.order,
        "n_steps": plan.n_steps,
        "train_counts": prepared.train_counts,
        "imbalance": prepared.imbalance.record(plan.order) if prepared.imbalance is not None else None,
        "eval": strategy.evaluation_name,
        "config": config,
        "env": {
            **environment(device_description(runtime.device)),
            "runtime": runtime.to_dict(),
            "processes": world.size,  # a data-parallel run's process count (one per device)
        },
    }
    try:
        writer = RunWriter(
            out,
            header,
            overwrite=overwrite or resume,
            previous=checkpoint["results"] if checkpoint is not None else None,
            write=world.main,
        )
    except StorageError as exc:  # nothing new is recorded yet: what was there before is intact
        raise _with_advice(exc, out) from None
    log(f"writing {out}" + (f" (resuming after step {first_step - 1})" if checkpoint is not None else ""))
    shots = shot_groups(prepared.train_counts, cfg.data.many_shot_above, cfg.data.few_shot_below)
    report = StepReporter(out, plan, strategy, writer, run_loggers, log, shots)
    try:
        context = LogContext(
            f"{cfg.scenario}/{strategy_label(cfg.strategy)}/seed{cfg.seed}",
            first_epoch=checkpoint["state"]["epochs_done"] if checkpoint else 0,
            first_step=first_step,
            options=config["logging"],
        )
        run_loggers.loggers = open_loggers(cfg.logging.loggers, out, config, context) if world.main else []
        with sigterm_as_interrupt(), runtime.backends():
            run_steps(strategy, train_stream, test_stream, report, first_step=first_step)
        writer.finish("complete")
    except KeyboardInterrupt:
        with suppress(Exception, KeyboardInterrupt):  # a second signal, or a write refused: the steps are kept
            writer.finish("interrupted")
        done = len(writer.results["steps"])
        if not launched_by_cil():  # else the launcher says it, with its --nproc
            log(f"interrupted: {done} of {plan.n_steps} steps are saved in {out}; continue with: {resume_command(out)}")
        raise ReportedInterrupt from None
    except StorageError as exc:  # the OS refused a write: the completed steps are on disk, the run resumes
        with suppress(StorageError):
            writer.finish("failed", error=str(exc))
        done = len(writer.results["steps"])
        raise StorageError(
            exc.path,
            exc.reason,
            f"{done} of {plan.n_steps} steps are kept in {out}; once that is solved, continue with: "
            f"{resume_command(out)}",
        ) from None
    except TrainingDiverged as exc:
        writer.finish("diverged", error=str(exc))
        done = len(writer.results["steps"])
        raise RunDiverged(
            f"{exc}; the {done} completed step(s) before it are kept in {out} (status diverged)"
        ) from None
    except Exception as exc:
        writer.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        failing = sys.exc_info()[0] is not None
        try:
            run_loggers.finish(writer.results)
        except StorageError as exc:
            if not failing:  # else the error already in flight is the one to report
                status = writer.results["status"]
                raise StorageError(
                    exc.path, exc.reason, f"the run itself is {status} in {out}: only a logger's file is missing"
                ) from None
    return writer.results


def run_seeds(
    configs: list[RunConfig],
    parent: Path,
    *,
    overwrite: bool = False,
    extra_plugins: list | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[dict]:
    """One run per config (one per training seed), each in PARENT/seedS, one after the other; the caller checked
    every config before the first run (``cil run --seeds`` and ``cil.api.run_seeds``)."""
    results = []
    loaded: dict = {}  # the dataset, loaded once for every seed
    for cfg in configs:
        cfg.out = str(Path(parent) / f"seed{cfg.seed}")
        log(f"--- seed {cfg.seed}: {cfg.out}")
        results.append(
            run(cfg, out=Path(cfg.out), overwrite=overwrite, extra_plugins=extra_plugins, log=log, loaded=loaded)
        )
    return results

"""Packed runs: up to N runs of a sweep at once, in worker processes spread over devices.

A ResNet-32 run leaves a GPU idle between its small kernels, so several runs share one GPU well.
``cil sweep --jobs N [--devices cuda:0,cuda:1]`` starts N worker processes (``spawn``: no state
shared with the parent); worker i serves device ``devices[i % len(devices)]`` (a CUDA device is
selected with CUDA_VISIBLE_DEVICES, so every run sees it as ``cuda``; CPU workers share the cores
evenly). Each worker imports torch once and takes runs from a queue until none are left; every
run claims its directory first (cil/runs/claims.py), so runs that another sweep, here or on another
machine, is running are skipped, never run twice. A run's log goes to ``RUN_DIR/run.log``.

Ctrl-C (or SIGTERM to the sweep) stops every worker: each running run saves its state as
"interrupted", and running the same sweep again resumes them. A worker that dies (SIGKILL, out
of memory) leaves a stale claim that the next sweep takes over.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cil.errors import ReportedInterrupt, UserError
from cil.files import open_append, refused_writes

POLL_S = 0.5


@dataclass
class Task:
    index: int
    out: Path
    config: Any
    """The run's RunConfig."""
    description: str


def parse_devices(text: str | None) -> list[str]:
    """'cuda:0,cuda:1' -> ['cuda:0', 'cuda:1']; each 'cpu', 'cuda' or 'cuda:N' (one clear error otherwise)."""
    if not text:
        return []
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for device in devices:
        kind, _, index = device.partition(":")
        if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
            raise UserError(f"--devices: '{device}' is not a device; use cpu, cuda or cuda:N (comma-separated)")
    if any(d.startswith("cuda") for d in devices):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--devices names a CUDA device but none is available")
        count = torch.cuda.device_count()
        for device in devices:
            if ":" in device and int(device.split(":")[1]) >= count:
                raise UserError(f"--devices: {device} does not exist ({count} CUDA devices: cuda:0-{count - 1})")
    return devices


def run_claimed(cfg, out: Path, log: Callable[[str], None]) -> tuple[str, str]:
    """Claim ``out``, then run, resume or skip it by what it holds now; (outcome, detail).

    The outcome is "complete", "skipped" (another process finished it meanwhile), "elsewhere"
    (another process is running it) or "diverged" (its loss became NaN or infinite). Deciding after the
    claim keeps two sweeps on the same grid from ever running the same run twice.
    """
    from cil.errors import RunDiverged
    from cil.runs.checkpoint import CHECKPOINT
    from cil.runs.claims import RunClaimed, claimed
    from cil.runs.results import RESULTS, load_results
    from cil.runs.run import run

    try:
        with claimed(out):
            saved = load_results(out) if (out / RESULTS).exists() else None
            if saved is not None and saved.get("status") == "complete":
                return "skipped", "complete (finished by another process)"
            started = time.perf_counter()
            resumed = " (resumed)" if saved is not None and (out / CHECKPOINT).exists() else ""
            results = run(cfg, out=out, resume=saved is not None, claim=False, log=log)
            return "complete", (
                f"avg inc. acc. {results['avg_incremental_accuracy']:.2f} in "
                f"{time.perf_counter() - started:.0f}s{resumed}"
            )
    except RunClaimed as exc:
        return "elsewhere", str(exc)
    except RunDiverged as exc:
        return "diverged", str(exc)


def worker_main(worker: int, device: str, cpu_threads: int, parent: int, tasks, events) -> None:
    """A worker process: take tasks until told to stop or the parent is gone."""
    config_device = device
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":")[1]  # before CUDA initialises
        config_device = "cuda"
    import torch

    from cil.processes import stop_with_parent

    stop_with_parent(parent)  # a killed sweep leaves no worker taking runs from its queue
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        torch.set_num_threads(cpu_threads)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches every worker: stop quietly
        _serve(tasks, events, worker, config_device, parent, run_claimed)


def _serve(tasks, events, worker: int, config_device: str, parent: int, run_claimed) -> None:
    while True:
        if os.getppid() != parent:  # the sweep is gone: take no more work
            return
        try:
            task = tasks.get(timeout=POLL_S)
        except queue.Empty:
            if os.getppid() != parent:  # the sweep is gone: stop taking work
                return
            continue
        if task is None:
            return
        if config_device != "auto":
            task.config.device = config_device
        events.put(("start", worker, task.index))
        try:
            with _log_file(task.out) as log:
                outcome, detail = run_claimed(task.config, task.out, log)
        except KeyboardInterrupt:
            events.put(("end", worker, task.index, "interrupted", "state saved; run the sweep again to resume"))
            return
        except BaseException as exc:  # reported to the parent, which lists it at the end
            detail = failure_detail(exc)
            if isinstance(exc, UserError):  # its line says it all
                events.put(("end", worker, task.index, "failed", detail))
                continue
            with contextlib.suppress(OSError, UserError), open_append(task.out / "run.log") as f:
                f.write(traceback.format_exc())
            outcome = "failed"
        events.put(("end", worker, task.index, outcome, detail))


def failure_detail(exc: BaseException) -> str:
    """The line a sweep lists for a run that failed: a user error's own line (a full disk, a planted link), else
    the exception's type and first line (its traceback is in the run's run.log)."""
    if isinstance(exc, UserError):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@contextlib.contextmanager
def _log_file(run_dir: Path):
    """A ``log`` function appending to RUN_DIR/run.log, with Python's stdout and stderr going there too."""
    path = run_dir / "run.log"
    with open_append(path) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):

        def log(line: str) -> None:
            with refused_writes(path):
                print(line, file=f)

        yield log


def run_in_workers(
    tasks: list[Task], jobs: int, devices: list[str], report: Callable[[str, Task, str, str], None]
) -> None:
    """Run ``tasks`` in ``jobs`` worker processes; ``report(kind, task, where, detail)`` on every start and end."""
    import multiprocessing as mp

    from cil.runs.run import sigterm_as_interrupt

    context = mp.get_context("spawn")
    devices = devices or ["auto"]
    on_cpu = sum(devices[i % len(devices)] == "cpu" or devices[i % len(devices)] == "auto" for i in range(jobs))
    threads = max(1, (os.cpu_count() or 1) // max(1, on_cpu))
    task_queue, events = context.Queue(), context.Queue()
    for task in tasks:
        task_queue.put(task)
    workers = []
    for _ in range(min(jobs, len(tasks))):
        task_queue.put(None)
    for i in range(min(jobs, len(tasks))):
        device = devices[i % len(devices)]
        process = context.Process(
            target=worker_main, args=(i, device, threads, os.getpid(), task_queue, events), name=f"cil-sweep-worker-{i}"
        )
        process.start()
        workers.append((process, device))
    running: dict[int, int] = {}  # worker -> task index
    finished = 0
    try:
        with sigterm_as_interrupt():
            while finished < len(tasks):
                try:
                    event = events.get(timeout=POLL_S)
                except queue.Empty:
                    finished += _reap_dead(workers, running, tasks, report)
                    if not any(p.is_alive() for p, _ in workers) and events.empty():
                        break
                    continue
                kind, worker, index = event[:3]
                where = f"worker {worker}, {workers[worker][1]}"
                if kind == "start":
                    running[worker] = index
                    report("start", tasks[index], where, "")
                else:
                    running.pop(worker, None)
                    finished += 1
                    report(event[3], tasks[index], where, event[4])
    except KeyboardInterrupt:
        _stop(workers)
        while True:  # collect what the workers said while stopping
            try:
                event = events.get_nowait()
            except queue.Empty:
                break
            if event[0] == "end":
                report(event[3], tasks[event[2]], f"worker {event[1]}", event[4])
        print("sweep interrupted; run the same 'cil sweep' command again to continue", file=sys.stderr)
        raise ReportedInterrupt from None
    for process, _ in workers:
        process.join(timeout=30)


def _reap_dead(workers, running: dict[int, int], tasks: list[Task], report) -> int:
    """Report the runs of workers that died without a word (killed, out of memory)."""
    lost = 0
    for worker, (process, device) in enumerate(workers):
        if not process.is_alive() and worker in running:
            index = running.pop(worker)
            report(
                "failed",
                tasks[index],
                f"worker {worker}, {device}",
                f"the worker process died (exit code {process.exitcode}); run the sweep again to resume",
            )
            lost += 1
    return lost


def _stop(workers) -> None:
    """SIGTERM every live worker (a running run saves itself as interrupted), then wait; SIGKILL stragglers."""
    for process, _ in workers:
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    for process, _ in workers:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()

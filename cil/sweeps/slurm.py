"""Sweeps on a cluster: every run a Slurm job (one job array per submission) through submitit.

``cil sweep ... --launcher slurm`` plans the sweep as usual (complete runs skipped, refused
combinations listed), then submits the runs to do as one job array and returns; each job claims
its run directory and runs or resumes it exactly as a local sweep does (cil/sweeps/workers.py). A job
that Slurm times out or preempts is requeued by submitit (SIGUSR2 -> ``RunJob.checkpoint``) and
the new job resumes the run from its last checkpoint: checkpoints make requeueing free.
``--launcher submitit-local`` submits the same jobs to submitit's local executor (processes on this
machine): how cil tests this without Slurm. ``cil sweep --status DIR`` shows every run's state.

Submissions are recorded in ``DIR/.submitit/submissions.jsonl`` (run directory, job id, time), the
jobs' own logs in ``DIR/.submitit/JOBID_*``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cil.errors import UserError
from cil.files import open_append, refused_writes
from cil.processes import command_line

LAUNCHERS = ("local", "slurm", "submitit-local")
SUBMITIT = ".submitit"


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    time_min: int = 24 * 60
    mem_gb: int | None = None
    array_parallelism: int = 64

    LIMITS = {
        "gpus_per_job": (0, 64),
        "cpus_per_job": (1, 4096),
        "time_min": (1, 366 * 24 * 60),
        "mem_gb": (1, 65536),
        "array_parallelism": (1, 100_000),
    }
    """The range of each option (a year at most for a job's time, 64 TB of memory, ...): a value outside it is
    a typo, refused before anything is planned or submitted."""

    def check(self, launcher: str = "local", wait: bool = False) -> None:
        """One UserError for an option out of range, ``--wait`` without a submitit launcher, or ``--launcher
        slurm`` where there is no Slurm (before any plan is printed)."""
        if self.partition is not None and not re.fullmatch(r"[A-Za-z0-9_.,-]+", self.partition):
            raise UserError(
                f"--slurm-partition: '{self.partition[:40]}' is not a partition name (letters, digits, "
                f"'_', '-', '.', comma-separated)"
            )
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                option = f"--slurm-{name.replace('_', '-').replace('-min', '')}"
                raise UserError(f"{option}: must be in [{low}, {high}], got {str(value)[:30]}")
        if wait and launcher == "local":
            raise UserError("--wait waits for submitted jobs: use it with --launcher slurm or submitit-local")
        if launcher == "slurm" and shutil.which("sbatch") is None:
            raise UserError(
                "--launcher slurm: no Slurm here (sbatch not found); --launcher submitit-local runs the "
                "same jobs on this machine"
            )

    def parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "timeout_min": self.time_min,
            "gpus_per_node": self.gpus_per_job,
            "nodes": 1,
            "tasks_per_node": 1,
            "name": "cil-sweep",
            "slurm_array_parallelism": self.array_parallelism,
        }
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.cpus_per_job:
            params["cpus_per_task"] = self.cpus_per_job
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        return params


class RunJob:
    """One run as a submitit job: claim, run or resume, and requeue itself when the job is stopped."""

    def __init__(self, config, out: Path):
        self.config, self.out = config, Path(out)

    def __call__(self) -> tuple[str, str]:
        from cil.sweeps.workers import run_claimed

        return run_claimed(self.config, self.out, log=lambda line: print(line, file=sys.stderr, flush=True))

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on timeout or preemption: the same run again, which resumes from its checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(self.config, self.out))


def _executor(launcher: str, folder: Path, options: SlurmOptions):
    try:
        import submitit
    except ImportError:
        raise UserError(
            f"--launcher {launcher} needs submitit: pip install 'cil[slurm]' (or pip install submitit)"
        ) from None
    if launcher == "slurm":
        if shutil.which("sbatch") is None:
            raise UserError(
                "--launcher slurm: no Slurm here (sbatch not found); --launcher submitit-local runs the "
                "same jobs on this machine"
            )
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")
    else:
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="local")
    executor.update_parameters(**options.parameters())
    return executor


def submit(tasks: list, out: Path, launcher: str, options: SlurmOptions, wait: bool) -> int:
    """Submit ``tasks`` (cil.sweeps.workers.Task) as one job array; with ``wait``, wait and report them."""
    options.check()
    folder = out / SUBMITIT
    executor = _executor(launcher, folder, options)
    if not tasks:
        print("nothing to submit", file=sys.stderr)
        return 0
    with executor.batch():  # one job array on Slurm
        jobs = [executor.submit(RunJob(t.config, t.out)) for t in tasks]
    with open_append(folder / "submissions.jsonl") as f, refused_writes(folder / "submissions.jsonl"):
        for task, job in zip(tasks, jobs):
            f.write(
                json.dumps(
                    {
                        "out": str(task.out),
                        "job": str(job.job_id),
                        "launcher": launcher,
                        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                    }
                )
                + "\n"
            )
    print(
        f"submitted {len(jobs)} runs as {launcher} jobs {jobs[0].job_id}{'...' if len(jobs) > 1 else ''}; "
        f"see them with: {command_line('sweep', '--status', out)}",
        file=sys.stderr,
    )
    if not wait:
        return 0
    failed = 0
    for task, job in zip(tasks, jobs):
        try:
            outcome, detail = job.result()
        except Exception as exc:  # the job's own traceback is in its log folder
            outcome, detail = "failed", str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        failed += outcome in ("failed", "diverged")
        print(f"{outcome}: {task.description}{': ' + detail if detail else ''}", file=sys.stderr)
    return 1 if failed else 0


def run_states(out: Path) -> list[tuple[str, str, str]]:
    """(run directory, state, detail) of every run under ``out``: complete, diverged, failed, interrupted,
    running (claimed by a live process), stopped (killed while running: resumable), queued (submitted,
    not started)."""
    from cil.runs.claims import CLAIM, DamagedClaim, read_claim
    from cil.runs.results import RESULTS, load_results

    submitted: dict[str, str] = {}
    record = out / SUBMITIT / "submissions.jsonl"
    if record.exists():
        for line in record.read_text().splitlines():
            try:
                entry = json.loads(line)
                submitted[entry["out"]] = entry["job"]
            except (ValueError, KeyError, TypeError):
                continue
    runs = {p.parent for p in out.rglob(RESULTS)} | {p.parent for p in out.rglob(CLAIM)}
    runs |= {Path(p) for p in submitted}
    rows = []
    for run_dir in sorted(runs):
        job = f"job {submitted[str(run_dir)]}" if str(run_dir) in submitted else ""
        try:
            claim = read_claim(run_dir / CLAIM)
        except DamagedClaim as exc:
            rows.append((str(run_dir), "damaged", str(exc)))
            continue
        if claim is not None and claim.alive() is not False:
            state, job = "running", ", ".join(filter(None, [claim.describe(), job]))
        elif (run_dir / RESULTS).exists():
            try:
                results = load_results(run_dir)
                state = results["status"]
                if state == "running":
                    state = "stopped"
                done = f"{len(results['steps'])} of {results.get('n_steps', '?')} steps"
                job = ", ".join(filter(None, [done, job]))
            except UserError as exc:
                state, job = "damaged", str(exc)
        else:
            state = "queued" if job else "not started"
        rows.append((str(run_dir), state, job))
    return rows


def print_status(out: Path) -> int:
    if not out.is_dir():
        raise UserError(f"--status {out}: no such folder")
    rows = run_states(out)
    if not rows:
        raise UserError(f"--status {out}: no runs found there")
    counts: dict[str, int] = {}
    for _, state, _ in rows:
        counts[state] = counts.get(state, 0) + 1
    width = max(len(r[0]) for r in rows)
    for run_dir, state, detail in rows:
        print(f"{run_dir:<{width}}  {state:<11} {detail}")
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0

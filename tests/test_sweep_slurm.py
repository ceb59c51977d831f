"""Sweeps through submitit (--launcher submitit-local here; the same jobs go to Slurm with --launcher slurm)."""

import json

from cil.cli import main
from cil.sweeps.slurm import RunJob, SlurmOptions

TINY = [
    "--epochs",
    "1",
    "--limit-per-class",
    "6",
    "--no-progress",
    "--logger",
    "none",
    "--set",
    "model.backbone=tiny",
    "--set",
    "data.synthetic_classes=10",
    "--set",
    "data.test_limit_per_class=2",
    "--set",
    "optim.batch_size=8",
    "--device",
    "cpu",
]


def sweep(capsys, out, *extra):
    code = main(
        [
            "sweep",
            "--scenario",
            "synthetic-b6-2",
            "--strategy",
            "il-baseline,il-baseline-bsce",
            *TINY,
            "--out",
            str(out),
            *extra,
        ]
    )
    return code, capsys.readouterr()


def test_submitit_sweep_runs_then_skips_and_reports_status(tmp_path, capsys):
    code, captured = sweep(capsys, tmp_path, "--launcher", "submitit-local", "--wait")
    assert code == 0, captured.err
    assert "submitted 2 runs as submitit-local jobs" in captured.err and captured.err.count("complete: ") == 2
    for strategy in ("il-baseline", "il-baseline-bsce"):
        results = json.loads((tmp_path / "synthetic-b6-2" / strategy / "seed1993" / "results.json").read_text())
        assert results["status"] == "complete" and len(results["steps"]) == 3
    submissions = (tmp_path / ".submitit" / "submissions.jsonl").read_text().splitlines()
    assert len(submissions) == 2

    code, captured = sweep(capsys, tmp_path, "--launcher", "submitit-local", "--wait")
    assert code == 0 and "0 to run, 0 to resume, 2 complete" in captured.err and "nothing to submit" in captured.err

    assert main(["sweep", "--status", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "2 complete" and all("complete" in line and "3 of 3 steps" in line for line in lines[:-1])


def test_status_shows_queued_stopped_and_running(tmp_path, capsys):
    import os
    import socket

    queued, stopped, running = (tmp_path / name for name in ("q", "s", "r"))
    (tmp_path / ".submitit").mkdir()
    (tmp_path / ".submitit" / "submissions.jsonl").write_text(json.dumps({"out": str(queued), "job": "17"}) + "\n")
    code, _ = sweep(capsys, stopped)
    assert code == 0
    results_path = next(stopped.rglob("results.json"))
    results = json.loads(results_path.read_text())
    results_path.write_text(json.dumps({**results, "status": "running"}))  # as a killed run leaves it
    running.mkdir()
    (running / ".claim").write_text(
        json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": None, "since": "now"})
    )
    assert main(["sweep", "--status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{queued}" in out and "queued" in out and "job 17" in out
    assert "stopped" in out and "running" in out and f"pid {os.getpid()}" in out


def test_requeued_job_is_the_same_run(tmp_path):
    job = RunJob(config={"any": "config"}, out=tmp_path / "run")
    again = job.checkpoint()
    assert isinstance(again.function, RunJob) and again.function.out == job.out and again.function.config == job.config


def test_slurm_launcher_without_slurm_and_bad_options_are_one_line(tmp_path, capsys):
    import shutil

    if shutil.which("sbatch") is None:
        code, captured = sweep(capsys, tmp_path, "--launcher", "slurm")
        assert code == 2 and "no Slurm here (sbatch not found)" in captured.err
        assert captured.out == "" and captured.err.count("\n") == 1  # refused before the plan is printed
    for option, value, message in [
        ("--slurm-time", "0", "--slurm-time: must be in [1, 527040], got 0"),
        ("--slurm-time", "99999999999999999999", "--slurm-time: must be in [1, 527040]"),
        ("--slurm-mem-gb", "10000000", "--slurm-mem-gb: must be in [1, 65536]"),
        ("--slurm-array-parallelism", "0", "must be in [1, 100000]"),
        ("--slurm-partition", "gpu part", "is not a partition name"),
        ("--slurm-gpus-per-job", "-1", "--slurm-gpus-per-job: must be in [0, 64]"),
        ("--wait", None, "--wait waits for submitted jobs: use it with --launcher slurm or submitit-local"),
    ]:
        code, captured = sweep(capsys, tmp_path, *([option] if value is None else [option, value]))
        assert code == 2 and message in captured.err and captured.err.count("\n") == 1, captured.err
        assert captured.out == "" and not list(tmp_path.rglob("*.yaml"))


def test_slurm_parameters():
    params = SlurmOptions(
        partition="gpu", gpus_per_job=2, cpus_per_job=8, time_min=90, mem_gb=32, array_parallelism=4
    ).parameters()
    assert params == {
        "timeout_min": 90,
        "gpus_per_node": 2,
        "nodes": 1,
        "tasks_per_node": 1,
        "name": "cil-sweep",
        "slurm_array_parallelism": 4,
        "slurm_partition": "gpu",
        "cpus_per_task": 8,
        "mem_gb": 32,
    }

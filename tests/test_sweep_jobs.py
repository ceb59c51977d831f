"""Claims on run directories and packed sweeps (``cil sweep --jobs N``): no run twice, kill and resume."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cil.cli import main
from cil.runs.claims import CLAIM, Claim, RunClaimed, acquire, claimed, read_claim, release
from tests.helpers import plant_old_file

REPO = Path(__file__).resolve().parent.parent
GRID = [
    "--scenario",
    "synthetic-b4-2",
    "--strategy",
    "il-baseline,il-baseline-bsce",
    "--seeds",
    "1,2",
    "--no-progress",
    "--no-tensorboard",
    "--set",
    "model.backbone=tiny",
    "--set",
    "optim.batch_size=8",
    "--set",
    "data.synthetic_classes=6",
    "--set",
    "data.test_limit_per_class=2",
]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_claim(run_dir: Path, **fields) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    claim = {"host": socket.gethostname(), "pid": os.getpid(), "started": None, "since": "earlier", **fields}
    (run_dir / CLAIM).write_text(json.dumps(claim))


# ------------------------------------------------------------------ claims


def test_a_claim_is_exclusive_and_released(tmp_path):
    with claimed(tmp_path / "run") as mine:
        assert read_claim(tmp_path / "run" / CLAIM) == mine and mine.pid == os.getpid()
        with pytest.raises(RunClaimed, match=f"is being run by pid {os.getpid()}"):
            acquire(tmp_path / "run")
    assert not (tmp_path / "run" / CLAIM).exists()


def test_stale_claims_of_this_host_are_taken_over(tmp_path):
    write_claim(tmp_path / "dead", pid=dead_pid())
    assert acquire(tmp_path / "dead").pid == os.getpid()
    write_claim(tmp_path / "reused", started="0")  # our pid, but a process that started at another time
    assert acquire(tmp_path / "reused").started != "0"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / CLAIM).write_text("")  # a claimant died while writing its claim...
    with pytest.raises(RunClaimed, match="being claimed"):
        acquire(tmp_path / "empty")  # ...or is writing it right now
    os.utime(tmp_path / "empty" / CLAIM, (time.time() - 60, time.time() - 60))
    assert acquire(tmp_path / "empty").pid == os.getpid()


def test_claims_of_other_hosts_are_left_alone(tmp_path):
    write_claim(tmp_path / "run", host="another-machine", pid=dead_pid())
    with pytest.raises(RunClaimed, match=r"on another-machine .*remove .*\.claim"):
        acquire(tmp_path / "run")


def test_release_removes_only_its_own_claim(tmp_path):
    mine = acquire(tmp_path / "run")
    other = Claim("h", 1, None, "now")
    release(tmp_path / "run", other)
    assert (tmp_path / "run" / CLAIM).exists()
    release(tmp_path / "run", mine)
    assert not (tmp_path / "run" / CLAIM).exists()


@pytest.mark.parametrize(
    "content, why",
    [
        ({"pid": "1234"}, "is no process id"),
        ({"pid": 10**30}, "is no process id"),
        ({"pid": 0}, "is no process id"),
        ({"pid": -1}, "is no process id"),
        ({"pid": True}, "is no process id"),
        ({"host": 7}, "must be text"),
        ({"extra": 1}, "not the fields"),
        ("[1, 2]", "not the fields"),
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not a text file"),
        ("directory", "not a regular file"),
        ("link", "not a regular file"),
    ],
)
def test_a_claim_cil_did_not_write_is_damaged_and_named(tmp_path, capsys, content, why):
    """A claim file cil cannot read is never taken over (nothing says its run is gone) and never a traceback:
    one line naming the file to remove. pid 0 and -1 (which os.kill reads as 'a process group') too."""
    from cil.runs.claims import DamagedClaim

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / CLAIM
    if isinstance(content, dict):
        write_claim(run_dir, **content)
        os.utime(path, (time.time() - 3600, time.time() - 3600), follow_symlinks=False)
    else:
        plant_old_file(path, content, tmp_path / "elsewhere")
    with pytest.raises(DamagedClaim, match=f"{why}.*remove {path}"):
        acquire(run_dir)
    assert path.exists() or path.is_symlink()  # left for the user to judge
    argv = ["run", "--scenario", "synthetic-b4-1", "--strategy", "finetune", "--out", str(run_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"remove {path}" in err[0], err


def test_cil_run_refuses_a_claimed_directory(tmp_path, capsys):
    with claimed(tmp_path / "run"):
        assert (
            main(["run", "--scenario", "synthetic-b4-1", "--strategy", "finetune", "--out", str(tmp_path / "run")]) == 2
        )
    assert "is being run by pid" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--devices", "gpu0"], "'gpu0' is not a device"),
        (["--devices", "cpu:1"], "'cpu:1' is not a device"),
    ],
)
def test_bad_jobs_and_devices(argv, message, capsys):
    assert main(["sweep", "--scenario", "synthetic-b4-1", "--strategy", "finetune", *argv]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ packed sweeps


def sweep(out: Path, *extra: str, **popen) -> subprocess.Popen:
    argv = [sys.executable, "-m", "cil", "sweep", *GRID, "--out", str(out), "--jobs", "2", *extra]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def run_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("config.yaml"))


def test_two_packed_sweeps_on_one_grid_run_every_run_once(tmp_path):
    first = sweep(tmp_path, "--epochs", "2", "--limit-per-class", "60")
    second = sweep(tmp_path, "--epochs", "2", "--limit-per-class", "60")
    errors = [p.communicate(timeout=600)[1] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], errors
    runs = run_dirs(tmp_path)
    assert len(runs) == 4
    for run_dir in runs:
        assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"
        assert (run_dir / "run.log").read_text().count("writing ") == 1  # trained by exactly one process
        assert not (run_dir / CLAIM).exists()
    completed = [line for err in errors for line in err.splitlines() if "] complete: " in line]
    assert len(completed) == 4, errors


def test_a_killed_packed_sweep_resumes(tmp_path):
    args = ("--epochs", "4", "--limit-per-class", "150")
    process = sweep(tmp_path, *args, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(tmp_path.rglob("last.pt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and its workers, without a chance to clean up
    process.communicate()
    killed = [d for d in run_dirs(tmp_path) if json.loads((d / "results.json").read_text())["status"] == "running"]
    assert killed and all((d / CLAIM).exists() for d in killed)  # stale claims of dead processes
    checkpointed = [d for d in killed if (d / "checkpoints" / "last.pt").exists()]
    assert checkpointed
    again = sweep(tmp_path, *args)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    for run_dir in run_dirs(tmp_path):
        assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"
        assert not (run_dir / CLAIM).exists()
    for run_dir in checkpointed:  # continued after their last checkpoint, not started again
        assert json.loads((run_dir / "results.json").read_text())["resumed"][0]["after_step"] >= 0
    assert err.count("(resumed)") == len(checkpointed), err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_stop_when_the_sweep_parent_dies(tmp_path):
    """SIGKILL of the sweep parent alone: its workers get SIGTERM (parent-death signal), save their runs as
    interrupted and take no new run from the queue."""
    args = ("--epochs", "30", "--limit-per-class", "100")
    process = sweep(tmp_path, *args)
    deadline = time.monotonic() + 300
    while not any(tmp_path.rglob("last.pt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    workers = [
        int(p) for p in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    ]
    started = run_dirs(tmp_path)
    process.kill()
    process.communicate()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert workers and not alive
    assert run_dirs(tmp_path) == started  # no run taken from the queue after the parent died
    statuses = [json.loads((d / "results.json").read_text())["status"] for d in started]
    assert statuses and all(s in ("interrupted", "complete") for s in statuses), statuses

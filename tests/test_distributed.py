"""Data-parallel runs on CPU (gloo): cil run --nproc 2 starts two processes as torchrun does."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cil.runs.assemble import build_config
from cil.runs.run import run
from tests.helpers import StopBeforeStep, quiet, tiny_set_args

TINY = [
    "--scenario",
    "synthetic-b6-2",
    "--strategy",
    "il-baseline-bsce",
    "--limit-per-class",
    "24",
    "--no-progress",
    "--logger",
    "none",
    "--device",
    "cpu",
    "--set",
    "model.backbone=tiny",
    "--set",
    "data.synthetic_classes=10",
    "--set",
    "data.test_limit_per_class=4",
    "--set",
    "optim.batch_size=16",
]


def cil(*argv, timeout=600, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cil", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_two_processes_match_one_and_write_one_run_directory(tmp_path):
    """Same global batch (16): the loss terms of every step agree within 10 % (measured: up to 5.5 %), the
    accuracies within 5 points (measured: up to 3.1)
    (BatchNorm normalises each rank's half-batch by its own statistics). Every step also checks that both
    ranks hold the same parameters and exemplars (the run stops otherwise)."""
    two = cil("run", *TINY, "--epochs", "2", "--nproc", "2", "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    one = cil("run", *TINY, "--epochs", "2", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    a, b = results(tmp_path / "one"), results(tmp_path / "two")
    assert b["status"] == "complete" and len(b["steps"]) == 3
    assert a["env"]["processes"] == 1 and b["env"]["processes"] == 2
    for s1, s2 in zip(a["steps"], b["steps"], strict=True):
        for part, value in s1["final_epoch_loss"].items():
            assert s2["final_epoch_loss"][part] == pytest.approx(value, rel=0.10)
        assert abs(s1["accuracy"] - s2["accuracy"]) <= 5 and s1["memory_size"] == s2["memory_size"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    assert two.stdout.count("average incremental accuracy") == 1  # only rank 0 prints
    assert "not compatible" not in two.stderr  # Avalanche's evaluator is declared data-parallel safe
    assert not [line for line in two.stderr.splitlines() if line[:1] in "WE" and line[1:5].isdigit()]  # torchrun


def test_killed_under_torchrun_then_resumed_with_two_and_with_one_process(tmp_path):
    out = tmp_path / "run"
    job = subprocess.Popen(
        [sys.executable, "-m", "cil", "run", *TINY, "--epochs", "6", "--nproc", "2", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "results.json").exists() and results(out)["steps"]):
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGTERM)
    job.wait(timeout=120)
    saved = results(out)
    # "failed" when rank 0's collective broke because its peer stopped first: still resumable
    assert 1 <= len(saved["steps"]) < 3 and saved["status"] in ("interrupted", "running", "failed")
    resumed = cil("run", "--resume", out, "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert results(out)["status"] == "complete" and len(results(out)["steps"]) == 3

    cut = tmp_path / "cut"  # one process, interrupted before step 2, resumed by two
    cfg = build_config(
        "synthetic-b6-2",
        "il-baseline-bsce",
        {"epochs": 2, "device": "cpu", "progress": False, "data": {"limit_per_class": 24}, "logging": {"loggers": []}},
        ["model.backbone=tiny", "data.synthetic_classes=10", "data.test_limit_per_class=4", "optim.batch_size=16"],
    )
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=cut, extra_plugins=[StopBeforeStep(2)], log=quiet)
    resumed = cil("run", "--resume", cut, "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert results(cut)["status"] == "complete" and results(cut)["resumed"][0]["after_step"] == 1


def test_strategies_with_per_process_gradient_state_are_refused(tmp_path):
    done = cil("run", *TINY, "--plugin", "gala", "--nproc", "2", "--out", tmp_path / "g")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "cil: error: gala cannot run data-parallel yet (per-process gradient state); run this strategy in one process"
    )
    assert not (tmp_path / "g").exists()


STRATEGIES = sorted(
    p.stem
    for p in (Path(__file__).resolve().parent.parent / "configs" / "strategies").glob("*.yaml")
    if p.stem not in ("il-baseline-gala", "il-baseline-gbg")
)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_named_strategy_keeps_its_ranks_in_agreement(tmp_path, strategy):
    """Each rank's parameters, BatchNorm statistics and exemplars are compared after every step (a plugin
    that re-estimates BatchNorm per rank, as PODNet's balanced finetuning does, once failed this)."""
    extra = ["--set", "loss.update_every=1", "--set", "loss.validation_per_class=2"] if "meta" in strategy else []
    extra += tiny_set_args(strategy)
    done = cil(
        "run",
        *TINY[4:],
        "--scenario",
        "synthetic-b6-2",
        "--strategy",
        strategy,
        "--memory",
        "4",
        "--epochs",
        "2",
        *extra,
        "--nproc",
        "2",
        "--out",
        tmp_path / "run",
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--nproc", "0"], "--nproc must be >= 1, got 0"),
        (["--nproc", "2", "--seeds", "1,2"], "it takes no --seeds"),
        (["--nproc", "1000"], "--nproc 1000: this machine has"),
    ],
)
def test_bad_nproc_is_one_line(capsys, argv, message):
    from cil.cli import main

    assert main(["run", *TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", *TINY[:-10], "--device", "cuda", "--nproc", "2"], "--device cuda: no CUDA device is available"),
        (["run", "--resume", "MISSING", "--nproc", "2"], "cannot resume MISSING: it holds no run"),
    ],
)
def test_launcher_mistakes_are_one_line_before_any_process_starts(tmp_path, argv, message):
    """Checked by the launcher: no torchrun line after cil's."""
    if "cuda" in argv and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = cil(*argv, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == f"cil: error: {done.stderr.split('cil: error: ')[-1]}"
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr


def start_and_wait_for_step_0(out: Path) -> tuple[subprocess.Popen, dict[int, int]]:
    """``cil run --nproc 2`` started, once step 0 is recorded: the launcher and {rank: pid}."""
    job = subprocess.Popen(
        [sys.executable, "-m", "cil", "run", *TINY, "--epochs", "40", "--nproc", "2", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "results.json").exists() and results(out)["steps"]):
        time.sleep(0.2)
    ranks = {}
    for pid in subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        rank = next(e for e in environ if e.startswith(b"RANK="))
        ranks[int(rank[5:])] = int(pid)
    assert sorted(ranks) == [0, 1]
    return job, ranks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("rank", [0, 1])
def test_a_rank_killed_is_one_line_the_same_status_and_resumable(tmp_path, rank):
    """SIGKILL of either rank: the survivor stops quietly (no gloo traceback), torchrun's W/E lines are not
    shown, the launcher prints one line naming the rank, the run is recorded "failed" either way (rank 0 could
    not record its own death: the launcher does), and it resumes."""
    out = tmp_path / "run"
    job, ranks = start_and_wait_for_step_0(out)
    os.kill(ranks[rank], signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 1
    lines = [line for line in err.splitlines() if not line.startswith(("synthetic-b6-2: ", "writing ", "step "))]
    assert len(lines) == 1, err
    assert lines[0].startswith(
        f"cil: error: the process of rank {rank} of 2 was killed by SIGKILL; 1 of 3 steps are kept in {out}; "
        f"continue with: "
    ) and lines[0].endswith(f"cil run --resume {out} --nproc 2"), err  # "python -m cil run ..." as it was called
    saved = results(out)
    assert saved["status"] == "failed" and saved["error"] == f"the process of rank {rank} of 2 was killed by SIGKILL"
    assert not (out / ".claim").exists()
    resumed = cil("run", "--resume", out, "--epochs", "40", "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert results(out)["status"] == "complete"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_ranks_stop_when_the_launcher_dies(tmp_path):
    """SIGKILL of ``cil run --nproc 2`` itself: its ranks get SIGTERM (parent-death signal) and stop within
    seconds, saving the run as interrupted (or failed, when one rank's collective broke first), resumable."""
    out = tmp_path / "run"
    job, ranks = start_and_wait_for_step_0(out)
    job.kill()
    job.communicate(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in ranks.values()):
        time.sleep(0.2)
    alive = [pid for pid in ranks.values() if Path(f"/proc/{pid}").exists()]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive
    assert results(out)["status"] in ("interrupted", "failed")
    from cil.runs.claims import read_claim

    claim = read_claim(out / ".claim")  # released, or stale (its process is gone): the next resume takes it over
    assert claim is None or claim.alive() is False

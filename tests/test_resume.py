"""Checkpoints and resuming: an interrupted run continued with --resume ends exactly like an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cil.cli import main
from cil.runs.assemble import build_config
from cil.runs.checkpoint import CHECKPOINT, load_checkpoint
from cil.runs.run import run
from tests.helpers import StopBeforeStep, quiet, tiny_sets

FLAGS = {"epochs": 2, "device": "cpu", "progress": False, "data": {"limit_per_class": 12}}
SETS = ["model.backbone=tiny", "optim.batch_size=16", "data.synthetic_classes=12", "data.test_limit_per_class=5"]
CLI_TINY = [
    "--scenario",
    "synthetic-b6-3",
    "--epochs",
    "2",
    "--device",
    "cpu",
    "--no-progress",
    "--limit-per-class",
    "12",
    *sum((["--set", s] for s in SETS), []),
]


def confusions(run_dir: Path) -> list[np.ndarray]:
    return [np.load(p) for p in sorted((run_dir / "confusion").glob("step_*.npy"))]


@pytest.mark.parametrize("strategy", ["podnet-bsce", "il-baseline-meta-bsce", "icarl", "bic", "wa", "eeil", "ss-il"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, strategy):
    config = lambda: build_config("synthetic-b6-3", strategy, FLAGS, [*SETS, *tiny_sets(strategy)])  # noqa: E731
    full = run(config(), out=tmp_path / "full", log=quiet)
    with pytest.raises(KeyboardInterrupt):
        run(config(), out=tmp_path / "cut", extra_plugins=[StopBeforeStep(2)], log=quiet)
    cut = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert cut["status"] == "interrupted" and len(cut["steps"]) == 2
    assert load_checkpoint(tmp_path / "cut")["state"]["step"] == 1

    resumed = run(config(), out=tmp_path / "cut", resume=True, log=quiet)
    assert resumed["status"] == "complete" and resumed["resumed"][0]["after_step"] == 1
    for a, b in zip(full["steps"], resumed["steps"], strict=True):
        assert a["accuracy"] == b["accuracy"] and a["final_epoch_loss"] == b["final_epoch_loss"]
    assert full["avg_incremental_accuracy"] == resumed["avg_incremental_accuracy"]
    for a, b in zip(confusions(tmp_path / "full"), confusions(tmp_path / "cut"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_holds_model_memory_and_generators(tmp_path):
    run(build_config("synthetic-b6-3", "il-baseline-bsce", FLAGS, SETS), out=tmp_path / "r", log=quiet)
    state = load_checkpoint(tmp_path / "r")["state"]
    assert state["step"] == 3 and state["head_groups"] == [6, 2, 2, 2]
    memory = state["memory"]["memory"]
    assert sorted(memory["exemplars"]) == list(range(12)) and all(
        len(v) == 20 or len(v) == 12 for v in memory["exemplars"].values()
    )
    assert {"python", "numpy", "torch", "generators"} <= set(state["rng"])
    assert any(k.startswith("head.") for k in state["model"])


def test_a_checkpoint_from_before_the_engine_owned_the_memory_resumes(tmp_path):
    """Checkpoints written when the memory was a plugin (state under plugins/RehearsalPlugin) still resume."""
    import torch

    from cil.runs.checkpoint import save_checkpoint

    config = lambda: build_config("synthetic-b6-3", "il-baseline-bsce", FLAGS, SETS)  # noqa: E731
    full = run(config(), out=tmp_path / "full", log=quiet)
    with pytest.raises(KeyboardInterrupt):
        run(config(), out=tmp_path / "cut", extra_plugins=[StopBeforeStep(2)], log=quiet)
    checkpoint = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)
    checkpoint["state"]["plugins"]["RehearsalPlugin"] = checkpoint["state"].pop("memory")
    save_checkpoint(tmp_path / "cut", checkpoint)
    resumed = run(config(), out=tmp_path / "cut", resume=True, log=quiet)
    assert [s["accuracy"] for s in resumed["steps"]] == [s["accuracy"] for s in full["steps"]]
    assert [s["memory_size"] for s in resumed["steps"]] == [s["memory_size"] for s in full["steps"]]


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cil", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def wait_for_steps(proc: subprocess.Popen, run_dir: Path, n: int, timeout: float = 240) -> None:
    """Until the checkpoint of step n-1 is on disk (results.json lists n steps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (
                len(json.loads((run_dir / "results.json").read_text())["steps"]) >= n
                and (run_dir / CHECKPOINT).exists()
            ):
                if load_checkpoint(run_dir)["state"]["step"] >= n - 1:
                    return
        except (OSError, ValueError, KeyError):
            pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("the run did not reach its step in time")


def test_sigkill_mid_run_then_resume_from_the_command_line(tmp_path):
    """A process killed outright loses only the step in progress; --resume completes it identically."""
    full = tmp_path / "full"
    assert cli("run", "--strategy", "lucir", *CLI_TINY, "--out", str(full)).returncode == 0
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cil", "run", "--strategy", "lucir", *CLI_TINY, "--out", str(cut)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_steps(proc, cut, 2)
    proc.kill()
    proc.wait()
    assert json.loads((cut / "results.json").read_text())["status"] == "running"  # killed: no chance to say more

    done = cli("run", "--resume", str(cut))
    assert done.returncode == 0, done.stderr
    assert "resuming after step" in done.stderr
    a, b = (json.loads((d / "results.json").read_text()) for d in (full, cut))
    assert [s["accuracy"] for s in a["steps"]] == [s["accuracy"] for s in b["steps"]]
    assert b["status"] == "complete"


def test_sigterm_stops_keeps_steps_and_prints_the_resume_command(tmp_path):
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cil", "run", "--strategy", "il-baseline", *CLI_TINY, "--out", str(cut)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_steps(proc, cut, 1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"cil run --resume {cut}" in stderr
    results = json.loads((cut / "results.json").read_text())
    assert results["status"] == "interrupted" and len(results["steps"]) >= 1


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    with pytest.raises(KeyboardInterrupt):
        run(
            build_config("synthetic-b6-3", "il-baseline", FLAGS, SETS),
            out=out,
            extra_plugins=[StopBeforeStep(1)],
            log=quiet,
        )
    return out


def one_error_line(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("cil: error: "), err
    return err[0]


def test_resume_refuses_a_different_config_naming_the_keys(interrupted_run, capsys):
    line = one_error_line(capsys, "run", "--resume", str(interrupted_run), "--epochs", "3", "--set", "optim.lr=0.5")
    assert "optim.epochs (saved 2, given 3)" in line and "optim.lr (saved 0.1, given 0.5)" in line
    line = one_error_line(capsys, "run", "--resume", str(interrupted_run), "--strategy", "il-baseline-bsce")
    assert "strategy (saved il-baseline, given il-baseline-bsce)" in line


def test_resume_accepts_the_same_options_and_runtime_changes(interrupted_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(interrupted_run, copy)
    code = main(["run", "--resume", str(copy), "--strategy", "il-baseline", "--epochs", "2", "--no-tensorboard"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((copy / "results.json").read_text())["status"] == "complete"
    assert main(["run", "--resume", str(copy)]) == 0
    assert "already complete" in capsys.readouterr().err


def test_corrupt_or_missing_checkpoint_is_one_clear_line(interrupted_run, tmp_path, capsys):
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(interrupted_run, corrupt)
    (corrupt / CHECKPOINT).write_bytes(b"not a checkpoint")
    assert "is unreadable" in one_error_line(capsys, "run", "--resume", str(corrupt))


def test_a_run_without_checkpoint_starts_again_from_the_first_step(interrupted_run, tmp_path, capsys):
    """Killed between its first results and its first checkpoint: every recorded step is redone, identically."""
    import shutil

    missing = tmp_path / "missing"
    shutil.copytree(interrupted_run, missing)
    (missing / CHECKPOINT).unlink()
    first = json.loads((missing / "results.json").read_text())["steps"][0]
    assert main(["run", "--resume", str(missing), "--no-tensorboard"]) == 0
    assert "records 1 step(s) but has no checkpoint" in capsys.readouterr().err
    results = json.loads((missing / "results.json").read_text())
    assert results["status"] == "complete" and results["steps"][0]["accuracy"] == first["accuracy"]


def test_an_existing_run_points_to_resume(interrupted_run, capsys):
    line = one_error_line(capsys, "run", *CLI_TINY, "--strategy", "il-baseline", "--out", str(interrupted_run))
    assert f"cil run --resume {interrupted_run}" in line

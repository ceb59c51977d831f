"""The device command's dry run: every phase of benchmarks/gpu_evidence.py on the CPU at tiny sizes, so that
nothing is left to improvise when a GPU is lent for a few minutes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_evidence import PHASES, Phase, table

REPO = Path(__file__).resolve().parent.parent


def test_dry_run_goes_through_every_phase(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_evidence.py"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_evidence.json").read_text())
    assert report["dry_run"] is True and [p["name"] for p in report["phases"]] == list(PHASES)
    assert {p["name"]: p["status"] for p in report["phases"]} == dict.fromkeys(PHASES, "ok")
    phases = {p["name"]: p for p in report["phases"]}
    assert "2 passed" in phases["gpu-tests"]["headline"]
    speed = phases["training-speed"]["details"]
    assert speed["ratio_engine_plain_same_setting"] > 0 and speed["ratio_engine_avalanche"] > 0
    assert {r["loop"][:3] for r in speed["rows"]} == {"(a)", "(b)", "(c)", "(d)"}
    schedule = phases["schedule"]["details"]
    assert set(schedule["predicted"]) == {"podnet-bsce", "il-baseline-bsce"}
    assert all(len(t["epoch_seconds"]) == 6 for t in schedule["predicted"].values())  # b50-5: six steps
    assert schedule["full_run"]["avg_incremental_accuracy"] >= 0
    assert set(phases["sweep-throughput"]["details"]["jobs"]) == {"1", "2"}
    assert len(phases["input-pipeline"]["details"]["images_per_s"]) == 3
    assert "| gpu-tests | ok |" in done.stdout and (tmp_path / "gpu-tests.log").exists()


def test_table_says_what_ran_and_what_did_not():
    phases = [Phase("gpu-tests", "ok", "75 passed", 100.0), Phase("schedule", "time", "stopped", 5.0)]
    header = {"device_name": "NVIDIA H200", "torch": "2.11", "cil": "0.1.0", "dry_run": False, "seconds": 105.0}
    text = table(phases, header)
    assert "NVIDIA H200" in text and "| gpu-tests | ok | 75 passed | 100 |" in text and "| schedule | time |" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budget", "1e30"], "--budget must be seconds in (0, 604800], got 1e+30"),
        (["--budget", "-1"], "--budget must be seconds"),
        (["--budget", "nan"], "--budget must be seconds"),
        (["--phases", ""], "--phases names no phase; valid: gpu-tests"),
        (["--phases", "speed"], "unknown phase 'speed'; valid: gpu-tests"),
        (["--out", "README.md"], "--out README.md is a file, not a folder"),
        (["--out", "/proc/no/such"], "--out /proc/no/such: cannot make it"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_are_one_line_and_leave_nothing_behind(argv, message):
    """Issue 35 item 9: each was a traceback, argparse's three lines or a run that started; none may leave a
    /tmp/cil-evidence-* copy."""
    import glob

    root = REPO
    before = set(glob.glob("/tmp/cil-evidence-*"))
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_evidence.py", "--dry-run", *argv], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"gpu_evidence: error: {done.stderr.strip().split('error: ', 1)[1]}"
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert set(glob.glob("/tmp/cil-evidence-*")) == before

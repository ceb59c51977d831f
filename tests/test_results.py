"""Atomic writes and the run directory writer."""

import errno
import json
import os
import stat

import numpy as np
import pytest

from cil.errors import StorageError, UserError
from cil.files import atomic_write_text
from cil.runs.results import RunWriter


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match=f"cannot write {target}: No space left on device"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_writer_tracks_steps_and_status(tmp_path):
    writer = RunWriter(tmp_path / "run", {"scenario": "s", "strategy": "t", "seed": 1, "config": {"a": 1}})
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "running" and results["steps"] == []
    writer.add_step(
        {"step": 0, "accuracy": 50.0, "accuracy_old": None, "x": float("nan"), "accuracy_per_group": [50.0]},
        np.eye(2, dtype=int),
    )
    writer.add_step(
        {"step": 1, "accuracy": 40.0, "accuracy_old": 30.0, "x": 1.0, "accuracy_per_group": [30.0, 70.0]},
        np.eye(3, dtype=int),
    )
    writer.finish("failed", error="RuntimeError: boom")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and results["error"] == "RuntimeError: boom"
    assert results["avg_incremental_accuracy"] == 45.0 and results["final_accuracy"] == 40.0
    assert results["forgetting"] == 20.0  # the base group fell from 50 to 30
    assert results["steps"][0]["x"] is None  # NaN is written as null, never as invalid JSON
    assert np.load(tmp_path / "run" / "confusion" / "step_01.npy").shape == (3, 3)
    with pytest.raises(UserError, match="already holds a run"):
        RunWriter(tmp_path / "run", {"config": {}})

"""On a CUDA device (the ``gpu`` mark; skipped without one, so ``make test`` is unchanged): every named strategy
under the default runtime, a representative set under every precision and compiled, bit-identical resume with
``deterministic=true``, no host synchronisation in the batch path (``torch.cuda.set_sync_debug_mode``), and a
two-process NCCL run when there are two GPUs. ``benchmarks/gpu_evidence.py`` runs these first.

``CIL_TEST_DEVICE=cpu`` runs them on the CPU instead (the evidence command's ``--dry-run``: the same code paths
at tiny sizes, the CUDA-only checks skipped)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cil.config import RuntimeConfig, available_strategies
from cil.runs.assemble import build_config
from cil.runs.run import run
from cil.training.runtime import Runtime
from tests.helpers import StopBeforeStep, check_results_contract, quiet, tiny_sets

pytestmark = pytest.mark.gpu

DEVICE = os.environ.get("CIL_TEST_DEVICE", "cuda")
CUDA = DEVICE == "cuda"
SETS = ["model.backbone=tiny", "optim.batch_size=16", "data.synthetic_classes=10", "data.test_limit_per_class=5"]
FLAGS = {"epochs": 2, "device": DEVICE, "progress": False, "logging": {"loggers": []}, "data": {"limit_per_class": 24}}
REPRESENTATIVE = [
    "il-baseline-bsce",
    "lucir-bsce",
    "podnet-bsce",
    "podnet-meta-bsce",
    "il-baseline-gala",
    "il-baseline-gbg",
    "il-baseline-mfw",
    "icarl",
    "bic",
    "wa",
    "eeil",
    "ss-il",
]
"""BSCE with each base method, Meta BSCE (the differentiable virtual step), each long-tailed plugin, the rivals."""


def cuda_run(tmp_path: Path, strategy: str, *sets: str, name: str = "run", extra_plugins=(), **flags) -> dict:
    cfg = build_config("synthetic-b6-2", strategy, {**FLAGS, **flags}, [*SETS, *tiny_sets(strategy), *sets])
    return run(cfg, out=tmp_path / name, extra_plugins=list(extra_plugins), log=quiet)


def check_finite(results: dict) -> None:
    for step in results["steps"]:
        assert 0 <= step["accuracy"] <= 100
        assert all(math.isfinite(v) for v in step["final_epoch_loss"].values()), step["final_epoch_loss"]


@pytest.mark.parametrize("strategy", sorted(available_strategies()))
def test_every_strategy_under_the_default_runtime(tmp_path, strategy):
    """The default runtime on a GPU: bf16 autocast (where supported), channels_last, fused SGD."""
    results = cuda_run(tmp_path, strategy, "memory.per_class=3")
    check_results_contract(results, tmp_path / "run", n_steps=3)
    check_finite(results)
    runtime = results["env"]["runtime"]
    expected = Runtime.resolve(RuntimeConfig(), torch.device(DEVICE))  # the default runtime, resolved
    assert runtime["precision"] == expected.precision == ("bf16" if CUDA and torch.cuda.is_bf16_supported() else "fp32")
    assert runtime["channels_last"] is True


@pytest.mark.parametrize("setting", ["runtime.precision=fp32", "runtime.precision=fp16", "runtime.compile=true"])
@pytest.mark.parametrize("strategy", REPRESENTATIVE)
def test_representative_strategies_under_every_setting(tmp_path, strategy, setting):
    if strategy == "il-baseline-gbg" and setting == "runtime.compile=true":
        pytest.skip("gbg refuses runtime.compile (one line; tests/test_runtime.py)")
    results = cuda_run(tmp_path, strategy, "memory.per_class=3", setting)
    check_results_contract(results, tmp_path / "run", n_steps=3)
    check_finite(results)


@pytest.mark.parametrize("strategy", ["il-baseline-bsce", "podnet-bsce", "il-baseline-meta-bsce", "bic"])
def test_resume_is_bit_identical_when_deterministic(tmp_path, strategy):
    settings = ("memory.per_class=3",)
    full = cuda_run(tmp_path, strategy, *settings, name="full", deterministic=True)
    with pytest.raises(KeyboardInterrupt):
        cuda_run(tmp_path, strategy, *settings, name="cut", deterministic=True, extra_plugins=[StopBeforeStep(2)])
    resumed = run(
        build_config(
            "synthetic-b6-2", strategy, {**FLAGS, "deterministic": True}, [*SETS, *tiny_sets(strategy), *settings]
        ),
        out=tmp_path / "cut",
        resume=True,
        log=quiet,
    )
    for a, b in zip(full["steps"], resumed["steps"], strict=True):
        assert a["accuracy"] == b["accuracy"] and a["final_epoch_loss"] == b["final_epoch_loss"]
    for step in range(3):
        name = f"confusion/step_{step:02d}.npy"
        np.testing.assert_array_equal(np.load(tmp_path / "full" / name), np.load(tmp_path / "cut" / name))


class CudaSyncIsAnError:
    """An Avalanche plugin: ``torch.cuda.set_sync_debug_mode("error")`` from the start of every mini-batch to its
    end (forward, losses, backward, update, every component's batch hooks); any host synchronisation raises."""

    def __init__(self):
        self.batches = 0

    def before_training_iteration(self, strategy, **kwargs):
        torch.cuda.set_sync_debug_mode("error")

    def after_training_iteration(self, strategy, **kwargs):
        torch.cuda.set_sync_debug_mode(0)
        self.batches += 1


@pytest.mark.parametrize(
    "strategy", ["il-baseline-bsce", "lucir-bsce", "podnet-bsce", "il-baseline-meta-bsce", "ss-il"]
)
@pytest.mark.skipif(not CUDA, reason="CUDA's sync debug mode (the CPU has tests/test_runtime.py's detector)")
def test_batch_path_never_synchronizes(tmp_path, strategy):
    """The CPU test (tests/test_runtime.py) finds host reads by name; here CUDA itself says whether one waited."""
    probe = CudaSyncIsAnError()
    try:
        results = cuda_run(tmp_path, strategy, "memory.per_class=3", extra_plugins=[probe])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert results["status"] == "complete" and probe.batches > 0


@pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_process_nccl_run(tmp_path):
    out = tmp_path / "ddp"
    argv = ["run", "--scenario", "synthetic-b6-2", "--strategy", "il-baseline-bsce", "--limit-per-class", "24"]
    argv += ["--no-progress", "--logger", "none", "--device", "cuda", "--nproc", "2", "--out", str(out)]
    argv += [arg for s in SETS for arg in ("--set", s)]
    done = subprocess.run(
        [sys.executable, "-m", "cil", *argv], capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete" and results["env"]["processes"] == 2

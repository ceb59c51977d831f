"""Shared fixtures."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.helpers import write_image_folder

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "folder", n_classes=6, train_per_class=8, test_per_class=4)


def _hypothesis_profiles() -> None:
    """Few generated examples in the default suite (seconds), many under ``make test-all``."""
    import os

    from hypothesis import HealthCheck, settings

    common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    settings.register_profile("default", max_examples=25, derandomize=True, **common)  # the same cases every run
    settings.register_profile("thorough", max_examples=400, **common)
    settings.load_profile(os.environ.get("CIL_HYPOTHESIS_PROFILE", "default"))


_hypothesis_profiles()


def pytest_collection_modifyitems(config, items) -> None:
    """``gpu`` tests need a CUDA device: skipped without one (``make test`` stays the same everywhere)."""
    import os

    import torch

    if torch.cuda.is_available() or os.environ.get("CIL_TEST_DEVICE") == "cpu":
        return  # CIL_TEST_DEVICE=cpu: the dry run of benchmarks/gpu_evidence.py runs them on the CPU
    skip = pytest.mark.skip(reason="needs a CUDA device (the gpu mark)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

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

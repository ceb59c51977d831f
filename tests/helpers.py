"""Helpers shared by the tests: a results-contract checker and small generated image folders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from avalanche.core import SupervisedPlugin

RESULT_KEYS = {"scenario", "strategy", "seed", "class_order", "config", "steps", "avg_incremental_accuracy",
               "final_accuracy", "env"}
STEP_KEYS = {"step", "classes", "n_train", "accuracy", "top5", "accuracy_base", "accuracy_old", "accuracy_new",
             "train_seconds"}


def check_results_contract(results: dict, run_dir: Path, n_steps: int) -> None:
    """The run directory satisfies the results contract of docs/results.md."""
    assert RESULT_KEYS <= set(results), RESULT_KEYS - set(results)
    assert results["status"] == "complete"
    assert len(results["steps"]) == n_steps
    assert {"torch", "avalanche", "device", "cil"} <= set(results["env"])
    seen = 0
    for t, step in enumerate(results["steps"]):
        assert STEP_KEYS <= set(step), STEP_KEYS - set(step)
        assert step["step"] == t
        seen += len(step["classes"])
        for key in ("accuracy", "top5", "accuracy_base", "accuracy_new"):
            assert 0.0 <= step[key] <= 100.0
        assert step["top5"] >= step["accuracy"]
        assert (step["accuracy_old"] is None) == (t == 0)
        confusion = np.load(run_dir / "confusion" / f"step_{t:02d}.npy")
        assert confusion.shape == (seen, seen)
        assert confusion.dtype.kind == "i"
        assert math.isclose(100.0 * np.trace(confusion) / confusion.sum(), step["accuracy"], abs_tol=1e-9)
    accuracies = [s["accuracy"] for s in results["steps"]]
    assert math.isclose(results["avg_incremental_accuracy"], float(np.mean(accuracies)))
    assert results["final_accuracy"] == accuracies[-1]
    assert sorted(results["class_order"]) == list(range(len(results["class_order"])))
    assert (run_dir / "metrics.csv").read_text().count("\n") == n_steps + 1
    assert (run_dir / "config.yaml").is_file()


def write_image_folder(root: Path, n_classes: int, train_per_class: int, test_per_class: int, size: int = 16,
                       test_dir: str = "test") -> Path:
    """A tiny ImageFolder tree of coloured PNGs, one colour family per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), (test_dir, test_per_class)):
        for c in range(n_classes):
            folder = root / split / f"class_{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(c * 53) % 256, (c * 97) % 256, (c * 151) % 256], dtype=np.float64)
            for i in range(count):
                pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
    return root


class StopBeforeStep(SupervisedPlugin):
    """Raises KeyboardInterrupt (what Ctrl-C and SIGTERM do) when training of ``step`` begins."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def before_training_exp(self, strategy, **kwargs):
        if strategy.experience.current_experience == self.step:
            raise KeyboardInterrupt


def quiet(line: str) -> None:
    """A runner log that prints nothing."""

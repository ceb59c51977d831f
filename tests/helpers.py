"""Helpers shared by the tests: a results-contract checker and small generated image folders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from avalanche.core import SupervisedPlugin

RESULT_KEYS = {
    "scenario",
    "strategy",
    "seed",
    "class_order",
    "config",
    "steps",
    "avg_incremental_accuracy",
    "final_accuracy",
    "env",
}
STEP_KEYS = {
    "step",
    "classes",
    "n_train",
    "accuracy",
    "top5",
    "accuracy_base",
    "accuracy_old",
    "accuracy_new",
    "train_seconds",
}


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


def write_image_folder(
    root: Path, n_classes: int, train_per_class: int, test_per_class: int, size: int = 16, test_dir: str = "test"
) -> Path:
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
    """Raises KeyboardInterrupt (what Ctrl-C and SIGTERM do) when training of ``step`` begins, or
    after its first ``after_epochs`` epochs (what they logged is then past the last checkpoint)."""

    def __init__(self, step: int, after_epochs: int = 0):
        super().__init__()
        self.step, self.epochs_to_stop_after, self.epochs = step, after_epochs, 0

    def before_training_exp(self, strategy, **kwargs):
        if strategy.experience.current_experience == self.step and not self.epochs_to_stop_after:
            raise KeyboardInterrupt

    def after_training_epoch(self, strategy, **kwargs):
        if strategy.experience.current_experience == self.step:
            self.epochs += 1
            if self.epochs == self.epochs_to_stop_after:
                raise KeyboardInterrupt


def quiet(line: str) -> None:
    """A runner log that prints nothing."""


def wandb_records(run_dir):
    """The protobuf records of the one offline wandb run under ``run_dir/wandb`` (its .wandb file is a
    LevelDB-style log: a 7-byte header, then 32 KiB blocks of records with a 7-byte header each)."""
    import struct
    from pathlib import Path

    from wandb.proto import wandb_internal_pb2

    (path,) = Path(run_dir, "wandb").glob("offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # block tail too short for a header: zero padding
            position += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def write_jpegs(folder: Path, count: int, size: tuple[int, int] = (120, 90), seed: int = 0) -> list[Path]:
    """``count`` JPEGs (width x height ``size``) of smooth random colour gradients plus noise, as photos are."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    paths = []
    for i in range(count):
        a, b, c = rng.uniform(-1, 1, (3, 3))
        pixels = np.stack([128 + 100 * np.sin(3 * (a[k] * x + b[k] * y) + c[k]) for k in range(3)], axis=-1)
        pixels = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def small_engine(
    model,
    n_classes: int,
    n_old: int,
    per_class: int = 4,
    memory_per_class: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    train_on_exemplars: bool = False,
):
    """A real engine (cil.training.engine) on random 32x32 images, ``per_class`` of each of ``n_classes``
    classes, set as during step 1 (``n_old`` old classes); ``memory_per_class`` stores that many of every
    class as exemplars (``train_on_exemplars``: the training set is them). For calling a component's hooks directly."""
    import torch

    from cil.config import MemoryConfig, OptimConfig, RuntimeConfig
    from cil.data.augment import Normalization, SmallImageAugment
    from cil.data.base import TensorImageData
    from cil.data.scenarios import ScenarioName, ScenarioPlan
    from cil.training.contract import ClassificationLoss
    from cil.training.engine import TrainingEngine
    from cil.training.memory import Rehearsal
    from cil.training.runtime import Runtime

    class CE(ClassificationLoss):
        def classification_loss(self, engine, logits, targets):
            return torch.nn.functional.cross_entropy(logits, targets)

    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_classes * per_class, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = np.arange(n_classes * per_class) % n_classes
    data = TensorImageData(images, labels, SmallImageAugment(Normalization((0.5,) * 3, (0.25,) * 3)))
    plan = ScenarioPlan(
        ScenarioName("small", n_old, 1),
        n_classes,
        list(range(n_classes)),
        [list(range(n_old)), list(range(n_old, n_classes))],
    )
    memory = None
    if memory_per_class:
        memory = Rehearsal(MemoryConfig(per_class=memory_per_class), seed)
        exemplars = {c: [i for i in range(len(labels)) if labels[i] == c][:memory_per_class] for c in range(n_classes)}
        memory.load_state_dict(
            {
                "memory": {"per_class": memory_per_class, "budget": None, "exemplars": exemplars},
                "generator": torch.Generator().manual_seed(seed).get_state(),
            }
        )
    device = torch.device("cpu")
    engine = TrainingEngine(
        model=model,
        plan=plan,
        train_data=data,
        test_data=data,
        optim=OptimConfig(batch_size=batch_size, weight_decay=5e-4),
        loss=CE(),
        plugins=[],
        device=device,
        seed=seed,
        memory=memory,
        progress=False,
        runtime=Runtime.resolve(RuntimeConfig(precision="fp32"), device),
    )
    engine.step, engine.n_old, engine.n_seen = 1, n_old, n_classes
    engine.new_classes = list(range(n_old, n_classes))
    if memory is not None and train_on_exemplars:  # the step's training set as the engine builds it: + exemplars
        engine._train_set = engine._train_set + memory.exemplars()
    return engine


TINY_SETS = {
    "ss-il": ["plugins.ratio-preserving-batches.replay_batch_size=2"],
    "bic": ["plugins.bic-bias-layer.epochs=2"],
    "eeil": [
        "plugins.balanced-finetuning.epochs=2",
        "plugins.augmented-copies.copies=2",
        "plugins.balanced-finetuning.copies=2",
    ],
}
"""Per named strategy, the --set's a tiny run needs besides its own file (SS-IL's replay share of a mini-batch of 8
or 16; BiC's 200-epoch second stage, EEIL's 30-epoch balanced finetuning and its 12 copies per epoch shortened)."""


def tiny_sets(strategy: str) -> list[str]:
    """``TINY_SETS[strategy]`` (none for most strategies)."""
    return list(TINY_SETS.get(strategy, []))


def tiny_set_args(strategy: str) -> list[str]:
    """The same as command-line arguments (``--set K=V ...``)."""
    return [arg for assignment in tiny_sets(strategy) for arg in ("--set", assignment)]


def plant_old_file(path: Path, content: str | bytes, link_target: Path) -> None:
    """A file cil did not write, an hour old: ``"directory"`` (a folder in its place), ``"link"`` (a symbolic
    link to ``link_target``), bytes or text."""
    import os
    import time

    if content == "directory":
        path.mkdir()
    elif content == "link":
        path.symlink_to(link_target)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    os.utime(path, (time.time() - 3600, time.time() - 3600), follow_symlinks=False)


def tiny_api_options(**overrides) -> dict:
    """Keyword arguments of a tiny ``cil.api.run_experiment`` (one epoch, 6 images per class, memory 2, tiny
    network on 10 synthetic classes, quiet); ``overrides`` adds config overrides to the tiny ones."""
    return dict(
        epochs=1,
        limit_per_class=6,
        memory=2,
        progress=False,
        loggers=(),
        log=lambda line: None,
        overrides={"model.backbone": "tiny", "data.synthetic_classes": 10, "data.test_limit_per_class": 2, **overrides},
    )

"""Training speed of cil's engine against a plain PyTorch loop and the loop the anchors use.

    python benchmarks/training_speed.py [--device cpu|cuda] [--quick] [--per-class N] [--workers W]
                                        [--backbone resnet32] [--json FILE]

In one process, on the same model (ResNet-32, linear head, 50 classes), batch (128) and images
(the first N training images of 50 synthetic classes, CIFAR-sized):

  (a) a plain PyTorch loop: images as one uint8 tensor on the device, the same batched crop and
      flip as cil, cross-entropy, SGD; measured under every runtime setting;
  (b) the loop of the anchors (PyCIL, the official PODNet and LUCIR code): a torchvision-style
      dataset of uint8 arrays with per-sample PIL RandomCrop(32, padding=4), RandomHorizontalFlip,
      ToTensor and Normalize in a DataLoader with workers, fp32;
  (c) cil's engine (IL-Baseline with BSCE, memory 20 per class, synthetic-b50-1) for every runtime
      setting: the base step's epoch, and the incremental step's epoch, which adds the previous
      model's forward for distillation; PODNet with BSCE under the best setting.

  (d) Avalanche's own ``Naive`` strategy with its ``ReplayPlugin``: what most users of the field would run
      instead; the same model, batch, images, crop and flip (per sample, in Avalanche's DataLoader), fp32.

Every figure is the faster of the second and third epochs of its kind (the first warms up caches,
allocators and compilation). Then the predicted wall time of the paper's full schedule on this device
(synthetic or CIFAR-100 b50-5: 500 training images per class, 20 exemplars per class; IL-Baseline
250 epochs per step, PODNet 160; training, herding and evaluation), and as the last lines
``ratio engine/plain (same setting): X.XX``, the lowest over the settings measured of the engine's
base-step speed over (a) under the same setting (what the engine's bookkeeping costs), and
``ratio engine/avalanche: X.XX``, the best engine setting over (d).
``--quick`` uses 20 images per class and skips compilation (minutes of compiling on a CPU).
Nothing is asserted: timings are not tests. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")

BASE_CLASSES, BATCH, EPOCHS = 50, 128, 3
BACKBONE = {"name": "resnet32"}
"""The model of every loop (``--backbone``; ResNet-32 unless a dry run asks for a smaller one)."""
SCHEDULE = {"il-baseline-bsce": 250, "podnet-bsce": 160}
"""Epochs per step of the paper's CIFAR-100 schedule (Jodelet et al., Sec. 4.1.3; PODNet's official options)."""


@dataclass(frozen=True)
class Setting:
    precision: str
    channels_last: bool
    compile: bool = False

    @property
    def name(self) -> str:
        return " + ".join([self.precision] + ["channels_last"] * self.channels_last + ["compile"] * self.compile)

    @property
    def sets(self) -> list[str]:
        return [
            f"runtime.precision={self.precision}",
            f"runtime.channels_last={str(self.channels_last).lower()}",
            f"runtime.compile={str(self.compile).lower()}",
        ]

    def runtime(self, device: torch.device):
        from cil.config import RuntimeConfig
        from cil.training.runtime import Runtime

        return Runtime.resolve(RuntimeConfig(self.precision, self.channels_last, self.compile), device)


def settings_for(device: torch.device, quick: bool) -> list[Setting]:
    half = "bf16" if device.type == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    settings = [Setting("fp32", False), Setting(half, True)]
    if not quick:
        settings.append(Setting(half, True, compile=True))
    return settings


def synthetic_images(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    from cil.data import synthetic

    images, targets = synthetic.generate(100, split="train", limit_per_class=per_class)
    keep = torch.from_numpy(targets < BASE_CLASSES)
    return images[keep], torch.from_numpy(targets[keep.numpy()])


def new_model(device: torch.device, runtime=None):
    from cil.models import build_net

    torch.manual_seed(0)
    net = build_net(BACKBONE["name"], "linear")
    net.head.add_classes(BASE_CLASSES)
    net.to(device).train()
    if runtime is not None:
        runtime.prepare(net)
    return net


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(images: torch.Tensor, labels: torch.Tensor, device: torch.device, setting: Setting) -> float:
    """(a): images/s of a hand-written loop (best of epochs 2 and 3)."""
    from cil.data import synthetic
    from cil.data.augment import SmallImageAugment

    runtime = setting.runtime(device)
    net = new_model(device, runtime)
    optimizer = runtime.sgd(net.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    scaler = runtime.loss_scaler()
    augment = SmallImageAugment(synthetic.NORMALIZATION)
    images, labels = images.to(device), labels.to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    seconds = []
    for _ in range(EPOCHS):
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(len(images), device=device)
        for batch in order.split(BATCH):
            x = runtime.input(augment.train(images[batch], generator))
            with runtime.autocast():
                loss = F.cross_entropy(net(x).logits, labels[batch])
            optimizer.zero_grad(set_to_none=True)
            scaler.backward(loss)
            scaler.step(optimizer)
        sync(device)
        seconds.append(time.perf_counter() - start)
    return len(images) / min(seconds[1:])


class ArrayDataset(torch.utils.data.Dataset):
    """CIFAR as torchvision and the anchors hold it: HWC uint8 arrays, one PIL image per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        from torchvision import transforms as T

        self.images, self.labels = images, labels
        self.transform = T.Compose(
            [
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def anchor_loop(images: torch.Tensor, labels: torch.Tensor, device: torch.device, workers: int) -> float:
    """(b): images/s of the per-sample PIL pipeline, fp32 eager (workers started every epoch, as the anchors)."""
    net = new_model(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    dataset = ArrayDataset(images.permute(0, 2, 3, 1).numpy(), labels.numpy())
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda"
    )
    seconds = []
    for _ in range(EPOCHS):
        sync(device)
        start = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(net(x).logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        seconds.append(time.perf_counter() - start)
    return len(dataset) / min(seconds[1:])


class _Logits(torch.nn.Module):
    """cil's network as Avalanche expects a model: a module returning the logits tensor."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).logits


class _TensorImages(torch.utils.data.Dataset):
    """Normalized float images and their labels, with ``targets`` as Avalanche reads them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from cil.data import synthetic

        self.images = synthetic.NORMALIZATION.apply(images)
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.images[i], self.targets[i]


def avalanche_loop(images: torch.Tensor, labels: torch.Tensor, device: torch.device, workers: int) -> float:
    """(d): images/s of Avalanche's own ``Naive`` strategy with its ``ReplayPlugin`` (memory 20 per class), the
    loop most users of the field would otherwise run: the same model, batch and images, the same crop and flip
    (torchvision's, per sample, in Avalanche's dataset and DataLoader with ``workers`` workers), fp32 (Naive has
    no mixed precision). Base step, best of epochs 2 and 3."""
    from avalanche.benchmarks import nc_benchmark
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from torchvision import transforms as T

    dataset = _TensorImages(images, labels)
    augment = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    benchmark = nc_benchmark(
        dataset,
        dataset,
        n_experiences=1,
        task_labels=False,
        fixed_class_order=list(range(BASE_CLASSES)),
        train_transform=augment,
        eval_transform=None,
    )
    model = _Logits(new_model(device))
    timer = EpochTimer()
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=BATCH,
        train_epochs=EPOCHS,
        device=device,
        plugins=[ReplayPlugin(mem_size=20 * BASE_CLASSES), timer],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    # ReplayPlugin calls a deprecated update whose decorator re-enables its warning on every call: record it
    with warnings.catch_warnings(record=True):
        strategy.train(benchmark.train_stream[0], num_workers=workers, pin_memory=device.type == "cuda")
    return len(dataset) / min(timer.seconds[0][1:])


class EpochTimer:
    """An Avalanche plugin: the wall time of every training epoch, per step."""

    def __init__(self):
        self.seconds: dict[int, list[float]] = {}
        self._start = 0.0

    def before_training_epoch(self, strategy, **kwargs):
        sync(strategy.device)
        self._start = time.perf_counter()

    def after_training_epoch(self, strategy, **kwargs):
        sync(strategy.device)
        step = getattr(strategy, "step", None)  # cil's engine; Avalanche's own strategies count experiences
        step = strategy.clock.train_exp_counter if step is None else step
        self.seconds.setdefault(step, []).append(time.perf_counter() - self._start)


@dataclass
class EngineSpeed:
    base: float
    """Images/s of the base step (best of epochs 2 and 3)."""
    incremental: float
    """Images/s of the incremental step, with the previous model's forward (best of epochs 2 and 3)."""
    overhead_per_step: float
    """Seconds per step outside the training epochs (herding, evaluation, checkpoint)."""


def engine(strategy: str, per_class: int, device: torch.device, setting: Setting) -> EngineSpeed:
    """(c): cil's engine on synthetic-b50-1, three epochs per step."""
    from cil.runs.assemble import build_config
    from cil.runs.run import run

    flags = {
        "epochs": EPOCHS,
        "device": device.type,
        "progress": False,
        "logging": {"loggers": []},
        "data": {"limit_per_class": per_class, "test_limit_per_class": 20},
    }
    cfg = build_config("synthetic-b50-1", strategy, flags, [f"model.backbone={BACKBONE['name']}", *setting.sets])
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        results = run(cfg, out=Path(out), extra_plugins=[timer], log=lambda line: None)
        total = time.perf_counter() - started
    steps = results["steps"]
    epochs = sum(sum(s) for s in timer.seconds.values())
    return EngineSpeed(
        base=steps[0]["n_train"] / min(timer.seconds[0][1:]),
        incremental=steps[1]["n_train"] / min(timer.seconds[1][1:]),
        overhead_per_step=max(0.0, total - epochs) / len(steps),
    )


def inference_speed(device: torch.device, setting: Setting, images: torch.Tensor) -> float:
    """Images/s of evaluation-mode forward passes at the evaluation batch size (evaluation, herding)."""
    runtime = setting.runtime(device)
    net = new_model(device, runtime).eval()
    x = runtime.input(images[: runtime.eval_batch_size].to(device).float().div(255))

    def forward():
        with runtime.inference(), runtime.autocast():
            net(x)

    forward()
    sync(device)
    start, repeat = time.perf_counter(), 3
    for _ in range(repeat):
        forward()
    sync(device)
    return repeat * len(x) / (time.perf_counter() - start)


def predicted_schedule(
    epochs: int,
    speed: EngineSpeed,
    inference: float,
    per_class: int = 500,
    memory: int = 20,
    base: int = 50,
    steps: int = 5,
    step_classes: int = 10,
) -> float:
    """Seconds of a full b50-5 run: training epochs, herding and evaluation (100 test images per class)."""
    seconds = epochs * base * per_class / speed.base
    for t in range(1, steps + 1):
        old = base + step_classes * (t - 1)
        seconds += epochs * (step_classes * per_class + memory * old) / speed.incremental
    herding = (base + steps * step_classes) * per_class
    evaluation = sum(100 * (base + step_classes * t) for t in range(steps + 1))
    return seconds + (herding + evaluation) / inference


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="20 images per class, no compilation (CPU: < 3 min)")
    parser.add_argument("--per-class", type=int, help="training images per class (default 100; 500 on CUDA)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers of (b) (default: CPU cores)")
    parser.add_argument("--backbone", default="resnet32", help="the model of every loop (default resnet32)")
    parser.add_argument("--json", help="also write the table and ratios to this file (benchmarks/gpu_evidence.py)")
    args = parser.parse_args()
    BACKBONE["name"] = args.backbone
    device = torch.device(args.device)
    per_class = args.per_class or (20 if args.quick else 500 if device.type == "cuda" else 100)
    workers = args.workers if args.workers is not None else min(8, torch.get_num_threads())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    images, labels = synthetic_images(per_class)
    print(
        f"training speed: {BACKBONE['name']}, batch {BATCH}, {name}, torch {torch.__version__}; "
        f"{len(images):,} images per base epoch ({BASE_CLASSES} classes x {per_class})",
        flush=True,
    )

    settings = settings_for(device, args.quick)
    plain = {s: plain_loop(images, labels, device, s) for s in settings}
    anchors = anchor_loop(images, labels, device, workers)
    avalanche = avalanche_loop(images, labels, device, workers)
    engines = {s: engine("il-baseline-bsce", per_class, device, s) for s in settings}
    best = max(settings, key=lambda s: engines[s].base)
    podnet = engine("podnet-bsce", per_class, device, best)
    reference = plain[settings[0]]

    rows = [("(a) plain loop", s.name, plain[s], None) for s in settings]
    rows.append((f"(b) PIL per sample, {workers} workers", "fp32", anchors, None))
    rows.append((f"(d) Avalanche Naive + ReplayPlugin, {workers} workers", "fp32", avalanche, None))
    rows += [("(c) engine il-baseline-bsce", s.name, engines[s].base, engines[s].incremental) for s in settings]
    rows.append(("(c) engine podnet-bsce", best.name, podnet.base, podnet.incremental))
    print("\n| loop | setting | base step img/s | incremental img/s | vs (a) fp32 |")
    print("| --- | --- | ---: | ---: | ---: |")
    for loop, setting, base, incremental in rows:
        inc = f"{incremental:,.0f}" if incremental else "-"
        print(f"| {loop} | {setting} | {base:,.0f} | {inc} | {base / reference:.2f} |")
    if args.quick:
        print("| (c) engine il-baseline-bsce | + compile | skipped (--quick) | | |")
    print(
        "\nengine / plain loop under the same setting (base step): "
        + ", ".join(f"{s.name} {engines[s].base / plain[s]:.2f}" for s in settings)
    )

    inference = inference_speed(device, best, images)
    print(
        f"\npredicted full schedule on this device ({best.name}; CIFAR-100-sized b50-5, memory 20 per class, "
        f"evaluation and herding at {inference:,.0f} img/s):"
    )
    for strategy, speed in (("il-baseline-bsce", engines[best]), ("podnet-bsce", podnet)):
        epochs = SCHEDULE[strategy]
        total = predicted_schedule(epochs, speed, inference)
        print(f"  {strategy:<17} {epochs} epochs per step: {hours(total)} per run")
    same = min(engines[s].base / plain[s] for s in settings)
    print(f"ratio engine/plain (same setting): {same:.2f}")
    print(f"ratio engine/avalanche: {engines[best].base / avalanche:.2f}")
    if args.json:
        import json

        from cil.files import atomic_write_text

        summary = {
            "device": name,
            "images_per_base_epoch": len(images),
            "rows": [
                {"loop": loop, "setting": setting, "base_images_per_s": base, "incremental_images_per_s": incremental}
                for loop, setting, base, incremental in rows
            ],
            "ratio_engine_plain_same_setting": same,
            "ratio_engine_avalanche": engines[best].base / avalanche,
            "predicted_full_schedule_s": {
                strategy: predicted_schedule(SCHEDULE[strategy], speed, inference)
                for strategy, speed in (("il-baseline-bsce", engines[best]), ("podnet-bsce", podnet))
            },
        }
        atomic_write_text(Path(args.json), json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

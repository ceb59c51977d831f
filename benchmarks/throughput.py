"""Throughput of the training path: batched augmentation, a training step per backbone, and one
engine epoch (Avalanche loop + plugins + data) against the bare model step.

    python benchmarks/throughput.py [--device cpu|cuda] [--backbones resnet32,resnet8] [--batches 20]

Prints images/second; nothing is asserted (timings are not tests).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import timed

warnings.filterwarnings("ignore")


def bench_augmentation(device: torch.device, batch: int, repeat: int) -> None:
    from cil.data import synthetic
    from cil.data.augment import SmallImageAugment

    images, _ = synthetic.generate(100, split="train", limit_per_class=50)
    images = images.to(device)
    aug = SmallImageAugment(synthetic.NORMALIZATION)
    g = torch.Generator(device=device).manual_seed(0)
    idx = torch.randperm(len(images), device=device)[:batch]
    sec = timed(lambda: aug.train(images[idx], g), repeat, device)
    print(f"augmentation (gather + crop + flip + normalise), batch {batch}: {batch / sec:,.0f} images/s")


def bench_train_step(name: str, device: torch.device, batch: int, repeat: int) -> float:
    from cil.models import build_net

    net = build_net(name, "linear").to(device)
    net.head.add_classes(100)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (batch,), device=device)

    def step():
        loss = F.cross_entropy(net(x).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    sec = timed(step, repeat, device)
    print(f"train step {name:<9} batch {batch}: {batch / sec:,.0f} images/s ({1000 * sec:.1f} ms/batch)")
    return batch / sec


class EpochTimer:
    """An Avalanche plugin that times training epochs."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def before_training_epoch(self, strategy, **kwargs):
        self._start = time.perf_counter()

    def after_training_epoch(self, strategy, **kwargs):
        if strategy.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._start)


def bench_engine_epoch(name: str, device: torch.device, per_class: int) -> None:
    """Epochs of synthetic-b50-5's base step through the whole engine (IL-Baseline + BSCE + memory)."""
    from cil import registry
    from cil.config import assemble
    from cil.runs.run import run

    cfg = assemble(
        scenario="synthetic-b50-5",
        strategy="il-baseline-bsce",
        dataset="synthetic",
        flags={
            "epochs": 2,
            "progress": False,
            "device": device.type,
            "data": {"limit_per_class": per_class, "test_limit_per_class": 10},
        },
        sets=[f"model.backbone={name}"],
        lookup=registry.config_class,
    )
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        results = run(cfg, out=Path(out), extra_plugins=[timer], log=lambda line: None)
    n = results["steps"][0]["n_train"]
    sec = timer.seconds[1]  # the second epoch of the base step (the first warms up)
    print(f"engine epoch {name:<9} base step, {n} images: {n / sec:,.0f} images/s ({sec:.1f}s per epoch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbones", default="resnet32,resnet8")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=100, help="training images per class for the engine epoch")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    bench_augmentation(device, args.batch, args.repeat * 10)
    for name in args.backbones.split(","):
        bench_train_step(name, device, args.batch, args.repeat)
        bench_engine_epoch(name, device, args.per_class)


if __name__ == "__main__":
    main()

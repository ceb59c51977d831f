"""Images/s of each large-image input path next to ResNet-18's training speed on the same device.

    python benchmarks/input_pipeline.py [--device cpu|cuda] [--classes 100] [--per-class 100]
                                        [--workers W] [--batch 256] [--batches 12]

Generates (once, cached in a temporary folder) an ImageNet-like tree: CLASSES x PER_CLASS JPEGs
of 400x350 pixels (smooth gradients plus noise, quality 90), then measures, on the same images:

  pil     DataLoader workers open, crop, resize, flip and normalise (cil's CPU path, data.decode=pil);
  device  workers read the bytes; the training process decodes each batch with
          torchvision.io.decode_jpeg on DEVICE and crops there (data.decode=device: nvJPEG on a GPU;
          on a CPU the same code runs in one process);
  model   ResNet-18 training steps (forward, backward, SGD; bf16 autocast on CUDA) on ready 224x224
          batches on DEVICE: what the input must keep up with.

Each figure is taken after one warm-up batch, over BATCHES batches of a persistent loader. The table
says which one bounds an epoch. Nothing is asserted: timings are not tests.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def image_tree(root: Path, classes: int, per_class: int) -> list[Path]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.helpers import write_jpegs

    marker = root / f"done-{classes}x{per_class}"
    if not marker.exists():
        for c in range(classes):
            write_jpegs(root / f"class_{c:03d}", per_class, size=(400, 350), seed=c)
        marker.write_text("ok")
    return sorted(root.glob("class_*/*.jpg"))[: classes * per_class]


def loader_speed(paths, decode: str, device: torch.device, workers: int, batch: int, batches: int) -> float:
    from cil.data.augment import Normalization
    from cil.data.files import FileImageData

    data = FileImageData(
        paths,
        np.zeros(len(paths), dtype=np.int64),
        Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        224,
        workers,
        decode,
    )
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(0))[: batch * (batches + 1)]
    stream = data.batches(order, batch, train=True, device=device, generator=torch.Generator().manual_seed(1))
    next(stream)  # warm-up: workers start, decoders initialise
    _sync(device)
    start, seen = time.perf_counter(), 0
    for x in stream:
        seen += len(x)
    _sync(device)
    return seen / (time.perf_counter() - start)


def model_speed(device: torch.device, batch: int, batches: int) -> float:
    from cil.models import build_net

    net = build_net("resnet18", "linear").to(device).to(memory_format=torch.channels_last)
    net.head.add_classes(100)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (batch,), device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(net(x).logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        step()
    _sync(device)
    return batch * batches / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--model-batches", type=int, default=None, help="default: --batches")
    parser.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "cil-input-pipeline"))
    args = parser.parse_args()
    device = torch.device(args.device)
    paths = image_tree(Path(args.root), args.classes, args.per_class)
    print(
        f"{len(paths)} JPEGs of 400x350 in {args.root}; device {device}, {args.workers} workers, "
        f"batch {args.batch}, {args.batches} batches"
    )
    rows = [
        ("pil (PIL in workers)", loader_speed(paths, "pil", device, args.workers, args.batch, args.batches)),
        (
            f"device (decode_jpeg on {device.type})",
            loader_speed(paths, "device", device, args.workers, args.batch, args.batches),
        ),
        ("model (ResNet-18 training)", model_speed(device, args.batch, args.model_batches or args.batches)),
    ]
    print("\n| path | images/s |\n| --- | ---: |")
    for name, speed in rows:
        print(f"| {name} | {speed:,.0f} |")
    best_input = max(rows[0][1], rows[1][1])
    bound = "the input" if best_input < rows[2][1] else "the model"
    print(f"\nan epoch is bounded by {bound}: best input path {best_input:,.0f} images/s, model {rows[2][1]:,.0f}")


if __name__ == "__main__":
    main()

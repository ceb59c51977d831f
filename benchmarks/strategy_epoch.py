"""Time per incremental training epoch of several strategies, relative to the first one.

    python benchmarks/strategy_epoch.py [--strategies il-baseline,il-baseline-bsce,...] [--device cpu|cuda]
                                        [--backbone resnet8] [--limit-per-class 100] [--epochs 2]

Each strategy runs ``synthetic-b50-1`` (50 base classes, then one step of 50 with a memory of 20
per class) and the mean wall time of the incremental step's epochs is reported: the cost of
what the strategy adds to a training epoch (samplers, extra backward passes, alpha updates),
with the same data and model for all; "step" is the whole incremental step's training time, which
also counts what happens after the epochs (memory update, balanced finetuning). Nothing is asserted
(timings are not tests); run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

DEFAULT = (
    "il-baseline,il-baseline-memory-oversampling,il-baseline-class-oversampling,il-baseline-loss-rescaling,"
    "il-baseline-balanced-finetuning,il-baseline-separated-softmax,il-baseline-bsce,il-baseline-meta-bsce,"
    "il-baseline-gala,il-baseline-gbg,il-baseline-mfw"
)


def main() -> None:
    from cil.runs.assemble import build_config
    from cil.runs.run import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default=DEFAULT)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet8")
    parser.add_argument("--limit-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    rows = []
    strategies = args.strategies.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for i, strategy in enumerate([strategies[0]] + strategies):  # the first run warms up (allocator, caches)
            flags = {
                "epochs": args.epochs,
                "device": args.device,
                "progress": False,
                "logging": {"loggers": []},
                "data": {"limit_per_class": args.limit_per_class},
            }
            cfg = build_config("synthetic-b50-1", strategy, flags, [f"model.backbone={args.backbone}"])
            results = run(cfg, out=Path(tmp) / f"{i}-{strategy}", log=lambda line: None)
            if i == 0:
                continue
            step = results["steps"][1]
            rows.append((strategy, step["seconds_per_epoch"], step["train_seconds"]))
            print(
                f"{strategy:<34} {step['seconds_per_epoch']:7.2f} s per epoch, step {step['train_seconds']:7.2f} s "
                f"({step['n_train']} images)",
                flush=True,
            )
    epoch_ref, step_ref = rows[0][1], rows[0][2]
    print(f"\nrelative to {rows[0][0]} ({args.backbone}, {args.device}, {args.limit_per_class} images per class):")
    print(f"  {'strategy':<34} {'epoch':>6} {'step':>6}")
    for strategy, epoch, step in rows:
        print(f"  {strategy:<34} {epoch / epoch_ref:5.2f}x {step / step_ref:5.2f}x")


if __name__ == "__main__":
    main()

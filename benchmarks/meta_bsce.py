"""Cost of Meta BSCE's alpha update (Jodelet et al., Alg. 1) against a plain BSCE training step.

    python benchmarks/meta_bsce.py [--device cpu|cuda] [--backbone resnet32] [--head linear|cosine|lsc]

A step of plain BSCE is forward + backward + SGD update on one mini-batch. A Meta BSCE step adds,
every ``update_every`` steps, the virtual step with ``higher`` (a forward and a backward with
create_graph on the batch, a forward on a validation batch) and the gradient of the validation CE
with respect to alpha through it. Reported: seconds per step of each, the cost of one alpha
update, the amortised overhead at update_every = 10 (the paper's setting), and peak memory (CUDA:
peak allocated tensor memory; CPU: peak resident memory above the resting process, sampled
every millisecond in a fresh process per variant).
Nothing is asserted (timings are not tests).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
import warnings

import torch
import torch.nn.functional as F
from timing import timed

warnings.filterwarnings("ignore")


def setup(backbone: str, head: str, device: torch.device, batch: int, n_old: int = 50, n_new: int = 10):
    from cil.models import build_net

    torch.manual_seed(0)
    net = build_net(backbone, head).to(device)
    net.head.add_classes(n_old)
    net.head.add_classes(n_new)
    net.to(device).train()
    size = 224 if backbone == "resnet18" else 32
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, n_old + n_new, (batch,), device=device)
    x_val = torch.randn(batch, 3, size, size, device=device)
    counts = torch.cat([torch.full((n_old,), 18.0), torch.full((n_new,), 500.0)]).to(device)
    return net, x, y, x_val, counts, n_old


def make_steps(net, x, y, x_val, counts, n_old):
    from cil.strategies.bsce import balanced_softmax_cross_entropy, old_class_weighted_counts

    from cil.training.virtual_step import validation_loss_after_virtual_step

    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    log_alpha = torch.zeros((), device=x.device, requires_grad=True)

    def loss_of(out, alpha):
        return balanced_softmax_cross_entropy(out.logits, y, old_class_weighted_counts(counts, n_old, alpha))

    def bsce_step():
        loss = loss_of(net(x), log_alpha.detach().exp())
        opt.zero_grad()
        loss.backward()
        opt.step()

    def alpha_update():
        val = validation_loss_after_virtual_step(
            net, lambda out: loss_of(out, log_alpha.exp()), x, lambda out: F.cross_entropy(out.logits, y), x_val, 0.1
        )
        torch.autograd.grad(val, [log_alpha])

    return bsce_step, alpha_update


def peak_memory_mib(args, variant: str, device: torch.device) -> float:
    """Peak memory of ``variant`` ('bsce' or 'meta': a BSCE step after an alpha update)."""
    if device.type == "cuda":
        net, x, y, x_val, counts, n_old = setup(args.backbone, args.head, device, args.batch)
        bsce_step, alpha_update = make_steps(net, x, y, x_val, counts, n_old)
        bsce_step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        if variant == "meta":
            alpha_update()
        bsce_step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-of",
            variant,
            "--backbone",
            args.backbone,
            "--head",
            args.head,
            "--batch",
            str(args.batch),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)["peak_rss_mib"]


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def rss_child(args) -> None:
    """Peak resident memory above the resting process while training (sampled every millisecond)."""
    net, x, y, x_val, counts, n_old = setup(args.backbone, args.head, torch.device("cpu"), args.batch)
    bsce_step, alpha_update = make_steps(net, x, y, x_val, counts, n_old)
    resting, peak, done = current_rss_mib(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_mib())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for _ in range(2):
        if args.rss_of == "meta":
            alpha_update()
        bsce_step()
    done.set()
    sampler.join()
    print(json.dumps({"peak_rss_mib": peak[0] - resting}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="resnet32")
    parser.add_argument("--head", default="linear", choices=["linear", "cosine", "lsc"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--update-every", type=int, default=10)
    parser.add_argument("--rss-of", choices=["bsce", "meta"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_of:
        return rss_child(args)
    device = torch.device(args.device)
    net, x, y, x_val, counts, n_old = setup(args.backbone, args.head, device, args.batch)
    bsce_step, alpha_update = make_steps(net, x, y, x_val, counts, n_old)
    step = timed(bsce_step, args.repeat, device)
    update = timed(alpha_update, args.repeat, device)
    every = args.update_every
    amortised = (step + update / every) / step
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.backbone} + {args.head} head, batch {args.batch}, 60 classes, {name}")
    print(f"  BSCE training step:            {1000 * step:8.1f} ms")
    print(f"  one alpha update (higher):     {1000 * update:8.1f} ms  ({update / step:.2f}x a training step)")
    print(
        f"  Meta BSCE, update every {every:<3}   {1000 * (step + update / every):8.1f} ms per step  "
        f"(+{100 * (amortised - 1):.0f}%)"
    )
    print(f"  Meta BSCE, update every step:  {1000 * (step + update):8.1f} ms per step  (+{100 * update / step:.0f}%)")
    bsce_mem, meta_mem = peak_memory_mib(args, "bsce", device), peak_memory_mib(args, "meta", device)
    kind = "peak allocated" if device.type == "cuda" else "peak RSS growth while training"
    print(f"  {kind}: BSCE {bsce_mem:,.0f} MiB, Meta BSCE {meta_mem:,.0f} MiB ({meta_mem / bsce_mem:.2f}x)")


if __name__ == "__main__":
    main()

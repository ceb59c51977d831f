"""Data-parallel runs: one process per device under ``torchrun``, every process the same run.

``torchrun --nproc_per_node N -m cil run ...`` (or ``cil run --nproc N ...``) starts N processes;
each reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` and joins one process group (NCCL on GPUs,
gloo on CPUs). What each rank does (cil/training/engine.py, cil/runs/run.py):

* every rank draws the same epoch order and the same augmentation (same seeds) and trains on its
  contiguous chunk of every global mini-batch: the global batch and the learning rate are the
  configured ones, unscaled;
* gradients are averaged across ranks before every optimizer step (one coalesced all-reduce, before
  the loss scaler's unscaling and clamping, so every rank takes the same step and skips the same
  overflowing ones); learned scalars (Meta BSCE's alpha) are averaged the same way;
* BatchNorm normalises each rank's chunk with the chunk's statistics (what DDP does without
  SyncBatchNorm) and the running statistics are taken from rank 0 after every epoch, so the models
  stay identical;
* features (herding, imprinting, class means) and evaluation scores are computed on each rank's
  chunk of the samples and gathered, so every rank selects the same exemplars and sees the same
  scores;
* the epoch's loss sums are averaged across ranks before they are logged and checked for divergence;
* after every step the ranks compare a checksum of the parameters and the memory's exemplars, and
  stop with one error if they ever differ;
* only rank 0 claims and writes the run directory, checkpoints and logs; a run resumes with the same
  or another number of processes (the checkpoint holds no per-rank state).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cil.errors import PeerLost

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads is_secondary_rank before any torch
    import torch

F = TypeVar("F", bound=Callable[..., Any])

LAUNCHER_PID = "CIL_LAUNCHER_PID"
"""Environment variable naming the ``cil run --nproc`` process: a rank that finds another parent stops."""

EXIT_PEER_LOST = 75
"""A rank's exit code when another rank of its run stopped first (it prints nothing; the launcher does)."""


@contextlib.contextmanager
def _peer_lost() -> Iterator[None]:
    """A collective that fails because a peer is gone (gloo: connection reset or closed; NCCL: a remote error or
    a timeout) raises PeerLost instead of the backend's RuntimeError and its page of advice."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc).lower()
        if any(word in text for word in ("connection", "peer", "socket", "timed out", "nccl", "gloo", "broken pipe")):
            raise PeerLost("another process of this data-parallel run stopped") from None
        raise


def collective(method: F) -> F:
    """Mark a World method that talks to the other ranks (see ``_peer_lost``)."""

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with _peer_lost():
            return method(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @collective
    def average_(self, tensors: list[torch.Tensor]) -> None:
        """Replace every tensor by its mean over the ranks (one collective for all of them)."""
        if not self.active or not tensors:
            return
        import torch
        import torch.distributed as dist

        for dtype in {t.dtype for t in tensors}:
            group = [t for t in tensors if t.dtype == dtype]
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.all_reduce(flat)
            flat /= self.size
            for t, part in zip(group, flat.split([t.numel() for t in group])):
                t.copy_(part.view_as(t))

    @collective
    def broadcast_(self, tensors: list[torch.Tensor], src: int = 0) -> None:
        """Overwrite every tensor with rank ``src``'s."""
        if not self.active:
            return
        import torch.distributed as dist

        for t in tensors:
            dist.broadcast(t, src)

    def chunk(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of ``rows`` (``torch.tensor_split``: sizes differ by one at most)."""
        return rows if not self.active else rows.tensor_split(self.size)[self.rank]

    @collective
    def gather_rows(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank's ``local`` rows, concatenated in rank order (the inverse of ``chunk``), on every rank."""
        if not self.active:
            return local
        import torch
        import torch.distributed as dist

        count = torch.tensor([len(local)], device=local.device)
        counts = [torch.zeros_like(count) for _ in range(self.size)]
        dist.all_gather(counts, count)
        longest = int(max(c.item() for c in counts))
        padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(c.item())] for part, c in zip(parts, counts)])

    @collective
    def same_everywhere(self, value: float) -> bool:
        """Whether every rank holds ``value`` (a checksum)."""
        if not self.active:
            return True
        import torch
        import torch.distributed as dist

        mine = torch.tensor([value, -value], dtype=torch.float64, device=self._device())
        dist.all_reduce(mine, op=dist.ReduceOp.MAX)
        return float(mine[0]) == value and float(-mine[1]) == value

    @collective
    def share(self, value, src: int = 0):
        """Rank ``src``'s value of a picklable object, on every rank."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src)
        return box[0]

    @collective
    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def _device(self) -> torch.device:
        import torch
        import torch.distributed as dist

        return (
            torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        )


SINGLE = World()


def launched_by_cil() -> bool:
    """True in the processes of ``cil run --nproc``: their launcher, not rank 0, says how the run ended."""
    return LAUNCHER_PID in os.environ


def is_secondary_rank() -> bool:
    """True in the processes of a torchrun launch other than rank 0 (they print nothing)."""
    return os.environ.get("RANK", "0") != "0"


def join(device_type: str) -> World:
    """This process's place in a ``torchrun`` launch (joining its process group once); SINGLE otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    import torch
    import torch.distributed as dist

    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    from cil.processes import stop_with_parent

    launcher = os.environ.get(LAUNCHER_PID)
    stop_with_parent(int(launcher) if launcher and launcher.isdigit() else None)
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return world

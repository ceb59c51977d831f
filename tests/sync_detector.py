"""Finds host reads of tensor values in the training loop's per-batch path, on the CPU.

On a GPU, reading a tensor's value on the host (``float``, ``.item()``, ``if tensor:``, a boolean
mask, ``nonzero``, ``bincount``...) waits for every queued kernel. On the CPU nothing waits, so the
tests detect the calls themselves with a TorchFunctionMode: ``SyncDetector`` is an Avalanche plugin
that records every such call made between the first and the last mini-batch of each epoch
(the per-epoch reads at the epoch's end are allowed).
"""

from __future__ import annotations

import traceback

import torch
from avalanche.core import SupervisedPlugin
from torch.overrides import TorchFunctionMode

HOST_READS = {
    "__float__",
    "__int__",
    "__bool__",
    "__index__",
    "item",
    "tolist",
    "numpy",
    "nonzero",
    "bincount",
    "unique",
    "masked_select",
    "cpu",
    "argwhere",
}


def _bool_index(args) -> bool:
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, tuple) else (index,)
    return any(torch.is_tensor(i) and i.dtype == torch.bool for i in items)


class _Recorder(TorchFunctionMode):
    def __init__(self, events: list):
        super().__init__()
        self.events = events

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in HOST_READS or (name in ("__getitem__", "__setitem__") and _bool_index(args)):
            where = [
                f"{f.filename.split('/work/main/')[-1]}:{f.lineno} {f.name}"
                for f in traceback.extract_stack()[:-1]
                if "/torch/" not in f.filename
            ][-3:]
            self.events.append((name, " <- ".join(reversed(where))))
        return func(*args, **(kwargs or {}))


class SyncDetector(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._events: list = []
        self._mode: _Recorder | None = None
        self._last_iteration_end = 0
        self._started = False

    def before_training_epoch(self, strategy, **kwargs):
        self._events, self._started, self._last_iteration_end = [], False, 0
        self._mode = _Recorder(self._events)
        self._mode.__enter__()

    def before_training_iteration(self, strategy, **kwargs):
        if not self._started:
            self._started = True
            del self._events[:]  # epoch set-up before the first batch may read values once

    def after_training_iteration(self, strategy, **kwargs):
        self._last_iteration_end = len(self._events)

    def after_training_epoch(self, strategy, **kwargs):
        self._mode.__exit__(None, None, None)
        self.found += self._events[: self._last_iteration_end]

"""How a run uses its device: precision, memory layout, compilation, batch sizes, backend switches.

``Runtime.resolve(config.runtime, device, deterministic)`` turns the ``runtime`` config section
(``auto`` values included) into the settings of this device; the engine and plugins then ask it
for what depends on them instead of deciding themselves:

* ``autocast()``: the forward pass and the losses in bf16 or fp16 (no-op in fp32); the
  classifier heads leave autocast and compute in fp32 (cil/models/net.py);
* ``loss_scaler()``: backward and optimizer step, with dynamic loss scaling in fp16;
* ``sgd(groups, ...)``: SGD, the fused CUDA kernel on a GPU (no host synchronisation even with
  fp16's inf checks);
* ``prepare(model)`` / ``prepare_copy(model)``: channels-last layout and ``torch.compile`` of the
  backbone (a deep copy, such as the previous step's model, comes out uncompiled);
* ``input(x)``: an image batch in the backbone's memory layout;
* ``backends()``: deterministic kernels, or cuDNN autotuning when not deterministic.

Only the backbone is compiled: its shapes stay the same for the whole run, while the head grows at
every step. Dynamo compiles a graph per kind of forward pass (training; evaluation and feature
extraction; the frozen previous model), first for the usual batch size, then with a dynamic batch
dimension when another size arrives (the last batch of an epoch), plus variants for ranges of batch
sizes: seven graphs in the runs measured, the same for 2 or 9 steps, reused by every step and by
every copy of the backbone. A plugin that hooks into the backbone (MFW) adds variants with and
without its hook; cil raises Dynamo's recompile limit from 8 to 16 so that they all fit.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from cil.config import RuntimeConfig
from cil.errors import UserError

if TYPE_CHECKING:
    from cil.models.net import IncrementalNet

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
EVAL_BATCH = {"cuda": 1024, "cpu": 256}
RECOMPILE_LIMIT = 16
"""Dynamo's limit of compiled variants of one function (its default is 8)."""


@dataclass(frozen=True)
class Runtime:
    """The resolved runtime settings of one run on one device."""

    device: torch.device
    precision: str
    """fp32, bf16 or fp16."""
    channels_last: bool
    compile: bool
    eval_batch_size: int
    deterministic: bool = False

    @classmethod
    def resolve(cls, config: RuntimeConfig, device: torch.device, deterministic: bool = False) -> Runtime:
        """The settings ``config`` means on ``device``; one clear error when the device cannot run them."""
        device = torch.device(device)
        cuda = device.type == "cuda"
        precision = config.precision
        if precision == "auto":
            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            raise UserError("runtime.precision=bf16: this GPU has no bfloat16 support; use fp16 or fp32")
        channels_last = True if config.channels_last == "auto" else bool(config.channels_last)
        if config.compile:
            _check_compiler(device)
        eval_batch = config.eval_batch_size or EVAL_BATCH.get(device.type, EVAL_BATCH["cpu"])
        return cls(device, precision, channels_last, config.compile, eval_batch, deterministic)

    def to_dict(self) -> dict:
        """The resolved settings, saved with the run (results.json ``env.runtime``)."""
        values = asdict(self)
        values["device"] = str(self.device)
        return values

    def describe(self) -> str:
        parts = (
            [self.precision]
            + (["channels_last"] if self.channels_last else [])
            + (["compiled"] if self.compile else [])
        )
        return " + ".join(parts)

    # ------------------------------------------------------------------ arithmetic

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return DTYPES.get(self.precision)

    def autocast(self, allow_fp16: bool = True):
        """Mixed precision for the enclosed forward passes and losses (fp32: nothing changes).

        ``allow_fp16=False`` computes in fp32 where fp16 would need loss scaling that the caller
        cannot apply (a differentiable virtual step).
        """
        dtype = self.autocast_dtype
        if dtype is None or (dtype == torch.float16 and not allow_fp16):
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def loss_scaler(self) -> LossScaler:
        return LossScaler(self.device if self.precision == "fp16" else None)

    def sgd(self, params, **options) -> torch.optim.SGD:
        """SGD over ``params``; on CUDA the fused kernel (one launch per step, inf checks on the device)."""
        if self.device.type == "cuda":
            options["fused"] = True
        return torch.optim.SGD(params, **options)

    # ------------------------------------------------------------------ model and inputs

    def prepare(self, model: IncrementalNet) -> IncrementalNet:
        """Memory layout and compilation of a freshly built (or copied) model, in place."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile:
            _quiet_compiler_logs()
            # a few graphs per run (module docstring), a few more when a plugin hooks into the backbone
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
            model.backbone.compile()
        return model

    def prepare_copy(self, model: IncrementalNet) -> IncrementalNet:
        """A deep copy of a prepared model keeps its layout but not its compilation: compile it again."""
        if self.compile:
            model.backbone.compile()
        return model

    def inference(self):
        """Forward passes that need no gradient (evaluation, feature extraction): inference mode, or
        no_grad when the backbone is compiled, so that they share one compiled graph with the previous
        model's forward during training (which must return normal tensors: losses save them for backward)."""
        return torch.no_grad() if self.compile else torch.inference_mode()

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch in the layout the backbone expects, whatever layout augmentation produced
        (the batched crop leaves its output channels-last in memory)."""
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    @contextmanager
    def backends(self) -> Iterator[None]:
        """Deterministic kernels when asked (CUDA: fixed cuBLAS workspace, no autotuning); else cuDNN autotuning."""
        previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous[0])
            torch.backends.cudnn.benchmark = previous[1]


class LossScaler:
    """Backward pass and optimizer step; with a device (fp16), torch's dynamic loss scaling.

    Gradients computed by hand (a gradient combiner) must come from ``scale(loss)``: the step
    unscales them and skips the update when one is inf or NaN.
    """

    def __init__(self, device: torch.device | None = None):
        self.scaler = torch.amp.GradScaler(device.type) if device is not None else None

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        self.scale(loss).backward(retain_graph=retain_graph)

    def step(self, optimizer: torch.optim.Optimizer, clamp: float | None = None) -> None:
        """The update; with ``clamp``, every gradient element is first clamped to [-clamp, clamp]
        (after unscaling in fp16)."""
        if clamp is not None:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_value_([p for g in optimizer.param_groups for p in g["params"]], clamp)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def _quiet_compiler_logs() -> None:
    """Inductor on a CPU-only torch warns that no CUDA runtime is found, which is expected here."""
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def _check_compiler(device: torch.device) -> None:
    """torch.compile's backend needs a C++ compiler on the CPU and Triton on a GPU: say so before any work."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise UserError(
                "runtime.compile=true needs Triton for CUDA, which is not installed; use runtime.compile=false"
            )
    elif not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
        raise UserError(
            "runtime.compile=true on the CPU needs a C++ compiler (g++ or clang++) on PATH; use runtime.compile=false"
        )

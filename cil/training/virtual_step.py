"""A differentiable virtual SGD step (for meta-learned loss parameters such as Meta BSCE's alpha).

    theta* = theta - lr * grad_theta inner_loss(Z(theta, x))      (theta: the parameters the step trains)
    returns  outer_loss(Z(theta*, x_val))

The returned loss is differentiable with respect to whatever ``inner_loss`` depends on besides
theta (Jodelet et al., Algorithm 1: alpha through the Balanced Softmax weights); theta itself receives
no gradient and is left unchanged. Implemented with ``higher`` (Grefenstette et al. 2019), the
library the paper names. Everything else in cil calls only this function, so a ``torch.func``
version can replace it.

BatchNorm: the two forward passes run in training mode, which would update the running
statistics; they are saved before and restored after, so the virtual step leaves every buffer
of the real model as it was.

A backbone compiled with ``torch.compile`` (``runtime.compile``) would take its compiled call
into the functional copy, which would then run the real weights instead of the virtual ones;
the copy is made without it, so the virtual step runs eagerly.

On the CPU the virtual step runs in the standard (NCHW) memory layout: PyTorch 2.14's
channels-last strided 1x1 convolution (ResNet shortcuts of type B) crashes the process in a
double backward when the batch size is odd. The model goes back to its layout afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import higher
import torch
from torch import nn


@contextmanager
def buffers_restored(model: nn.Module):
    """Restore every buffer (BatchNorm running statistics, counters) of ``model`` on exit."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


@contextmanager
def layout_for_double_backward(model: nn.Module, *inputs: torch.Tensor):
    """On the CPU, the model (in place) and the inputs in NCHW for the block; the model's layout restored after."""
    kernels = [p for p in model.parameters() if p.dim() == 4]
    channels_last = any(not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    if channels_last and not inputs[0].is_cuda:
        model.to(memory_format=torch.contiguous_format)
        try:
            yield [x.contiguous() for x in inputs]
        finally:
            model.to(memory_format=torch.channels_last)
    else:
        yield list(inputs)


@contextmanager
def compilation_hidden(model: nn.Module):
    """Detach every submodule's ``torch.compile``d call while the block runs (restored on exit)."""
    compiled = {
        m: m.__dict__.pop("_compiled_call_impl")
        for m in model.modules()
        if m.__dict__.get("_compiled_call_impl") is not None
    }
    try:
        yield
    finally:
        for module, call in compiled.items():
            module._compiled_call_impl = call


def validation_loss_after_virtual_step(
    model: nn.Module,
    inner_loss: Callable[[Any], torch.Tensor],
    x: torch.Tensor,
    outer_loss: Callable[[Any], torch.Tensor],
    x_val: torch.Tensor,
    param_groups: float | list[dict],
) -> torch.Tensor:
    """outer_loss(model_{theta*}(x_val)) after one plain SGD step of ``inner_loss(model(x))``.

    ``param_groups``: what takes the virtual step and at which learning rate, as an optimizer's
    parameter groups (``[{"params": [...], "lr": 0.1}, ...]``; the engine passes its optimizer's,
    so parameters the real step leaves alone, such as LUCIR's and PODNet's old-class weights, stay
    fixed here too), or one learning rate for every parameter with ``requires_grad``.
    """
    if not isinstance(param_groups, list):
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": float(param_groups)}]
    groups = [{"params": list(g["params"]), "lr": g["lr"]} for g in param_groups]
    groups = [g for g in groups if g["params"]]
    optimizer = torch.optim.SGD(groups, lr=groups[0]["lr"])
    with (
        buffers_restored(model),
        compilation_hidden(model),
        layout_for_double_backward(model, x, x_val) as (x, x_val),
        higher.innerloop_ctx(model, optimizer, copy_initial_weights=True, track_higher_grads=True) as (fmodel, diffopt),
    ):
        diffopt.step(inner_loss(fmodel(x)))
        return outer_loss(fmodel(x_val))

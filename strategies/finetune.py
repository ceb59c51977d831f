"""Finetuning: the lower bound. The classification loss alone, no distillation (and, in its
engine file, no memory)."""

from __future__ import annotations

from dataclasses import dataclass

from cil.plugin import CilPlugin, ComponentConfig, register


@dataclass
class FinetuneConfig(ComponentConfig):
    name: str = "finetune"


@register("method", "finetune", FinetuneConfig)
class Finetune(CilPlugin[FinetuneConfig]):
    pass

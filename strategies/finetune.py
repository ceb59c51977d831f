"""Finetuning: the lower bound. The classification loss alone, no distillation (and, in its
strategy file, no memory)."""

from __future__ import annotations

from dataclasses import dataclass

from cil.config import ComponentConfig
from cil.plugin import CilPlugin
from cil.registry import register


@dataclass
class FinetuneConfig(ComponentConfig):
    name: str = "finetune"


@register("method", "finetune", FinetuneConfig)
class Finetune(CilPlugin):
    pass

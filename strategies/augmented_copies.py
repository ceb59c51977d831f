"""Every training image several times per epoch, each time freshly augmented: EEIL's 12 augmented copies
(Castro et al., ECCV 2018, Sec. 4.2; the official MatConvNet code's ``incremental_training.m``).

EEIL's code builds, before each step's training and again before its balanced finetuning, a training set of 12
copies of every image (the image, a brightness and a contrast change, three random crops of those, and the
mirror of the six) and trains its epochs over that set: an epoch makes 12 times the SGD updates of an epoch
over the images. cil keeps its own augmentation (random crop and flip) and draws every image ``copies`` times
per epoch, in one shuffled order, each draw augmented anew: the same number of updates per epoch, the same
images, other transformations (brightness and contrast are not among cil's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cil.plugin import CilPlugin, ComponentConfig, Engine, ranged, register


def repeated_positions(n: int, copies: int, generator: torch.Generator) -> torch.Tensor:
    """Every position of a set of ``n`` samples ``copies`` times, in one random order."""
    return torch.randperm(n * copies, generator=generator) % n


@dataclass
class AugmentedCopiesConfig(ComponentConfig):
    name: str = "augmented-copies"
    copies: int = ranged(12, ge=1, le=1000)
    """Draws of every training image per epoch (EEIL's code: 12)."""


@register("plugin", "augmented-copies", AugmentedCopiesConfig)
class AugmentedCopies(CilPlugin[AugmentedCopiesConfig]):
    def epoch_length(self, engine: Engine) -> int:
        return len(engine.train_set) * self.config.copies

    def epoch_positions(self, engine: Engine) -> torch.Tensor:
        return repeated_positions(len(engine.train_set), self.config.copies, engine.data_generator)

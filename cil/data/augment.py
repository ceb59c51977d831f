"""Batched augmentation of uint8 image tensors: random crop with padding, horizontal flip,
optional brightness jitter, normalisation.

This is the CIFAR protocol of Jodelet et al. (Sec. 4.1.3: "normalized, randomly horizontally flipped,
and cropped with no further augmentation"), applied to a whole batch at once on the device the
images live on: no per-sample Python, no PIL.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def apply(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return self.normalize(x_uint8.float().div_(255.0))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std for float images in [0, 1]."""
        return (x - _channel_values(self.mean, x.device)) / _channel_values(self.std, x.device)


@functools.cache
def _channel_values(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """[1, C, 1, 1] constants, made once per device (a host-to-device copy per batch would make the host wait)."""
    with torch.inference_mode(False):
        return torch.tensor(values, device=device).view(1, -1, 1, 1)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad every image by ``padding`` zeros on each side and cut a random HxW window per image."""
    if padding == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # [B, H, W, C] -> [B, C, H, W]


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_brightness(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale each float image in [0, 1] by a factor drawn from [1 - strength, 1 + strength] (torchvision's
    ColorJitter(brightness=strength)), clamped to [0, 1]."""
    factor = 1.0 + strength * (2.0 * torch.rand(x.shape[0], generator=generator, device=x.device) - 1.0)
    return (x * factor.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class SmallImageAugment:
    """Train: crop(pad) + flip (+ brightness jitter) + normalise; eval: normalise only."""

    norm: Normalization
    padding: int = 4
    brightness: float = 0.0

    def train(self, x_uint8: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = random_hflip(random_crop(x_uint8, self.padding, generator), generator).float().div_(255.0)
        if self.brightness:
            x = random_brightness(x, self.brightness, generator)
        return self.norm.normalize(x)

    def eval(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return self.norm.apply(x_uint8)

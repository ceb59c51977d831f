"""ImageNet's training and evaluation crops, with the random parameters drawn apart from the pixels.

Drawing ``RandomResizedCrop``'s box (Szegedy et al. 2015: area 8-100 %, aspect 3/4-4/3, ten tries
then a centre crop) and the flip from a per-image seed, instead of the global random state, makes
an image's augmentation the same whichever worker decodes it, whatever ``num_workers`` is, and on
both decoding paths: the PIL one in DataLoader workers and the batched one on the training device.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class Crop:
    top: int
    left: int
    height: int
    width: int
    flip: bool
    brightness: float = 1.0
    """Factor the image's pixel values (in [0, 1]) are multiplied by, then clamped (ColorJitter's brightness)."""


def random_resized_crop(height: int, width: int, seed: int, brightness: float = 0.0) -> Crop:
    """The box and flip of ``RandomResizedCrop`` + ``RandomHorizontalFlip`` for an image, from ``seed``, and with
    ``brightness`` > 0 a factor drawn from [1 - brightness, 1 + brightness] (``ColorJitter(brightness=...)``; its
    own random stream, so the box and flip do not depend on it)."""
    crop = _box_and_flip(height, width, seed)
    if brightness > 0:
        factor = random.Random(f"brightness-{seed}").uniform(max(0.0, 1.0 - brightness), 1.0 + brightness)
        crop = replace(crop, brightness=factor)
    return crop


def _box_and_flip(height: int, width: int, seed: int) -> Crop:
    rng = random.Random(seed)
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    flip = rng.random() < 0.5
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return Crop(rng.randint(0, height - h), rng.randint(0, width - w), h, w, flip)
    ratio = width / height  # fallback: the largest centre crop within the ratio bounds
    if ratio < RATIO[0]:
        w, h = width, round(width / RATIO[0])
    elif ratio > RATIO[1]:
        h, w = height, round(height * RATIO[1])
    else:
        w, h = width, height
    return Crop((height - h) // 2, (width - w) // 2, h, w, flip)


def centre_crop(height: int, width: int, size: int) -> Crop:
    """Evaluation: the shorter side resized to size * 256 / 224, then the central size x size (as a box of
    the original image)."""
    short = min(height, width)
    side = round(short * size / round(size * 256 / 224))
    return Crop((height - side) // 2, (width - side) // 2, side, side, False)


def train_or_test_crop(height: int, width: int, seed: int, train: bool, size: int, brightness: float) -> Crop:
    """The training crop (random box, flip, brightness) from ``seed``, or the evaluation's centre crop."""
    return random_resized_crop(height, width, seed, brightness) if train else centre_crop(height, width, size)


def crop_resize(image: torch.Tensor, crop: Crop, size: int) -> torch.Tensor:
    """uint8 [3, H, W] (any device) -> float [3, size, size] in [0, 1]: the box, resized with antialiasing, flipped,
    brightness scaled."""
    box = image[:, crop.top : crop.top + crop.height, crop.left : crop.left + crop.width].unsqueeze(0).float()
    out = F.interpolate(box, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    if crop.flip:
        out = out.flip(-1)
    return out.div_(255.0).mul_(crop.brightness).clamp_(0.0, 1.0)

"""An offline stand-in for CIFAR-100: procedurally drawn 32x32 RGB images in 100 classes.

Each class is a combination of parts that other classes share:

* a shape (10 kinds: disc, square, triangle, ring, cross, diamond, bar pair, frame, ellipse,
  half-disc), so every shape is shared by about 10 classes;
* a texture filling the shape: a sinusoidal grating of class-specific frequency and orientation
  (relative to the shape) blending two class-specific hues.

Each image draws its own position, scale, rotation, hue/frequency/orientation jitter, saturation
and brightness, a smooth random-colour background with a faint distractor grating, in half of the
images a smaller clutter shape of random kind and colour, and pixel noise. Because the parts
are shared and the jitter makes neighbouring classes overlap, a CNN must learn reusable features
(shapes, colours, textures), confuses similar classes, and forgets old classes when trained on
new ones only: the phenomena class-incremental methods address. Measured accuracies are in
docs/scenarios.md.

Everything is drawn from ``torch.Generator``s seeded with the dataset seed, train and test from
separate streams; the per-image parameters of all 500 (train) / 100 (test) images of a class are
drawn even when fewer are rendered, so the first k images of a class never depend on k.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cil.data.augment import Normalization

SIZE = 32
N_SHAPES = 10
TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 100
CHUNK = 512
NORMALIZATION = Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

# Per-image variation, tuned so that a ResNet-8 trained jointly on all 100 classes for 15 epochs
# reaches about 68% test accuracy, CIFAR-100-like (docs/scenarios.md has the measured numbers).
HUE_JITTER = 0.06  # standard deviation, in turns of the colour wheel
FREQ_JITTER = 0.25  # standard deviation in log-space
ORIENT_JITTER = 0.45  # standard deviation in radians
NOISE = 0.10  # standard deviation of the (uniform) pixel noise
SATURATION_LOW = 0.8  # per-image saturation factor drawn from [SATURATION_LOW, 1]
VALUE_LOW = 0.45  # per-image brightness drawn from [VALUE_LOW, 1]
BACKGROUND_HIGH = 0.6  # background colour strength drawn from [0.2, BACKGROUND_HIGH]
CLUTTER = 0.5  # probability of a smaller second shape of random kind and colour (behind the object)


def class_prototypes(n_classes: int, seed: int) -> dict[str, torch.Tensor]:
    """The shared-part description of every class (shape, hues, grating)."""
    g = torch.Generator().manual_seed(seed * 7919 + 1)
    shape = torch.randperm(n_classes, generator=g) % N_SHAPES
    return {
        "shape": shape,
        "hue": torch.rand(n_classes, generator=g),
        "hue_shift": (0.15 + 0.35 * torch.rand(n_classes, generator=g))
        * torch.where(torch.rand(n_classes, generator=g) < 0.5, -1.0, 1.0),
        "freq": torch.exp(math.log(0.6) + (math.log(2.6) - math.log(0.6)) * torch.rand(n_classes, generator=g)),
        "orient": math.pi * torch.rand(n_classes, generator=g),
        "saturation": 0.55 + 0.4 * torch.rand(n_classes, generator=g),
    }


def _image_params(labels: torch.Tensor, proto: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, torch.Tensor]:
    n = len(labels)

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    return {
        "shape": proto["shape"][labels],
        "hue": (proto["hue"][labels] + HUE_JITTER * torch.randn(n, generator=g)) % 1.0,
        "hue_shift": proto["hue_shift"][labels],
        "freq": proto["freq"][labels] * torch.exp(FREQ_JITTER * torch.randn(n, generator=g)),
        "orient": proto["orient"][labels] + ORIENT_JITTER * torch.randn(n, generator=g),
        "phase": u(0, 2 * math.pi),
        "saturation": proto["saturation"][labels] * u(SATURATION_LOW, 1.0),
        "value": u(VALUE_LOW, 1.0),
        "cx": u(-0.3, 0.3),
        "cy": u(-0.3, 0.3),
        "scale": u(0.45, 0.8),
        "rotation": u(0, 2 * math.pi),
        "bg": torch.rand(n, 3, 4, 4, generator=g),
        "bg_level": u(0.2, BACKGROUND_HIGH),
        "clutter": (torch.rand(n, generator=g) < CLUTTER).float(),
        "clutter_shape": torch.randint(0, N_SHAPES, (n,), generator=g),
        "clutter_hue": torch.rand(n, generator=g),
        "clutter_cx": u(-0.6, 0.6),
        "clutter_cy": u(-0.6, 0.6),
        "clutter_scale": u(0.2, 0.35),
        "clutter_rotation": u(0, 2 * math.pi),
        "distractor_freq": u(1.0, 6.0),
        "distractor_orient": u(0, math.pi),
        "noise_seed": torch.randint(0, 2**31 - 1, (n,), generator=g),
    }


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vectorised HSV -> RGB; inputs broadcast, output has a trailing dimension of 3."""
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h.unsqueeze(-1) * 6.0) % 6.0
    return v.unsqueeze(-1) - v.unsqueeze(-1) * s.unsqueeze(-1) * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)


def _shape_distance(kind: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) of shape ``kind`` in the shape's own frame."""
    au, av = u.abs(), v.abs()
    if kind == 0:  # disc
        return torch.sqrt(u * u + v * v) - 0.8
    if kind == 1:  # square
        return torch.maximum(au, av) - 0.65
    if kind == 2:  # triangle
        return torch.maximum(au * 0.866 + v * 0.5, -v) - 0.45
    if kind == 3:  # ring
        return (torch.sqrt(u * u + v * v) - 0.6).abs() - 0.2
    if kind == 4:  # cross
        return torch.minimum(torch.maximum(au - 0.25, av - 0.8), torch.maximum(au - 0.8, av - 0.25))
    if kind == 5:  # diamond
        return au + av - 0.85
    if kind == 6:  # bar pair
        return torch.maximum((au - 0.45).abs() - 0.18, av - 0.75)
    if kind == 7:  # frame
        return (torch.maximum(au, av) - 0.55).abs() - 0.15
    if kind == 8:  # ellipse (implicit function, not an exact distance)
        return torch.sqrt((u / 0.9) ** 2 + (v / 0.45) ** 2) - 1.0
    return torch.maximum(torch.sqrt(u * u + v * v) - 0.8, -v)  # half-disc


def _signed_distance(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Each image's own shape, evaluated only on the images that have it."""
    out = torch.empty_like(u)
    for kind in shape.unique().tolist():
        rows = shape == kind
        out[rows] = _shape_distance(kind, u[rows], v[rows])
    return out


def _hash_uniform(seeds: torch.Tensor, count: int) -> torch.Tensor:
    """Counter-based uniforms in (0, 1): ``count`` per seed, independent of batching."""
    mask = 0xFFFFFFFF
    h = (seeds[:, None] * 0x9E3779B1 + torch.arange(count)[None, :] * 0x85EBCA77 + 0x165667B1) & mask
    h = h ^ (h >> 15)
    h = (h * 0x2C1B3C6D) & mask
    h = h ^ (h >> 12)
    h = (h * 0x297A2D39) & mask
    h = h ^ (h >> 15)
    return (h.float() + 0.5) / 2.0**32


def _render(p: dict[str, torch.Tensor]) -> torch.Tensor:
    n = len(p["shape"])
    axis = (torch.arange(SIZE, dtype=torch.float32) + 0.5) / SIZE * 2.0 - 1.0
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    x, y = x.expand(n, SIZE, SIZE), y.expand(n, SIZE, SIZE)

    def col(name: str) -> torch.Tensor:
        return p[name].view(n, 1, 1)

    def frame(prefix: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixel coordinates in a shape's own frame, and its soft mask."""
        cos_r, sin_r = torch.cos(col(prefix + "rotation")), torch.sin(col(prefix + "rotation"))
        dx, dy = x - col(prefix + "cx"), y - col(prefix + "cy")
        u = (dx * cos_r + dy * sin_r) / col(prefix + "scale")
        v = (-dx * sin_r + dy * cos_r) / col(prefix + "scale")
        pixel = (2.0 / SIZE) / col(prefix + "scale")
        kind = p[prefix + "shape"]
        return u, v, torch.sigmoid(-_signed_distance(kind, u, v) / (0.7 * pixel)).unsqueeze(-1)

    u, v, mask = frame("")

    grating = 0.5 + 0.5 * torch.sin(
        2 * math.pi * col("freq") * (u * torch.cos(col("orient")) + v * torch.sin(col("orient"))) + col("phase")
    )
    colour_a = _hsv_to_rgb(p["hue"], p["saturation"], p["value"]).view(n, 1, 1, 3)
    colour_b = _hsv_to_rgb((p["hue"] + p["hue_shift"]) % 1.0, p["saturation"], p["value"]).view(n, 1, 1, 3)
    foreground = colour_a + (colour_b - colour_a) * grating.unsqueeze(-1)

    background = F.interpolate(p["bg"], size=(SIZE, SIZE), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    background = background * col("bg_level").unsqueeze(-1) + 0.2
    distractor = torch.sin(
        2
        * math.pi
        * col("distractor_freq")
        * 0.5
        * (x * torch.cos(col("distractor_orient")) + y * torch.sin(col("distractor_orient")))
    )
    background = background + 0.06 * distractor.unsqueeze(-1)

    _, _, clutter_mask = frame("clutter_")
    clutter_colour = _hsv_to_rgb(p["clutter_hue"], p["saturation"], p["value"]).view(n, 1, 1, 3)
    clutter_mask = clutter_mask * col("clutter").unsqueeze(-1)
    background = clutter_mask * clutter_colour + (1 - clutter_mask) * background

    image = mask * foreground + (1 - mask) * background
    # Uniform pixel noise with standard deviation NOISE (sqrt(12) * std is its width).
    noise = (_hash_uniform(p["noise_seed"], SIZE * SIZE * 3) - 0.5).view(n, SIZE, SIZE, 3)
    image = (image + NOISE * math.sqrt(12.0) * noise).clamp_(0, 1)
    return (image * 255).round_().to(torch.uint8).permute(0, 3, 1, 2).contiguous()


def generate(
    n_classes: int = 100,
    *,
    split: str,
    seed: int = 0,
    limit_per_class: int | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 images ``[N, 3, 32, 32]`` and class ids of a split (``train`` or ``test``).

    The first ``limit_per_class`` images of each class are rendered (all when None); samples are
    ordered class by class.
    """
    per_class = {"train": TRAIN_PER_CLASS, "test": TEST_PER_CLASS}[split]
    proto = class_prototypes(n_classes, seed)
    g = torch.Generator().manual_seed(seed * 7919 + (2 if split == "train" else 3))
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    params = _image_params(labels, proto, g)
    keep = min(per_class, limit_per_class or per_class)
    selected = (torch.arange(per_class)[None, :keep] + per_class * torch.arange(n_classes)[:, None]).flatten()
    params = {k: v[selected] for k, v in params.items()}
    images = torch.cat(
        [_render({k: v[i : i + CHUNK] for k, v in params.items()}) for i in range(0, len(selected), CHUNK)]
    )
    return images, labels[selected].numpy().astype(np.int64)

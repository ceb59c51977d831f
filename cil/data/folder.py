"""Image-folder datasets: ``ROOT/train/CLASS/*`` and ``ROOT/test/CLASS/*`` (ImageNet: ``val/``).

Classes are the sub-folders of ``train/``, sorted by name (before the scenario's seeded shuffle).
Small images (both sides <= 64 px, judged from the first image of every class) are decoded once
into a uint8 tensor at a common size and augmented in batches like CIFAR; larger images stay on
disk and are decoded lazily by DataLoader workers (ImageNet-style transforms). Files that cannot
be read are reported by path.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cil.errors import UserError

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SMALL_SIDE = 64
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class FolderSplit:
    paths: list[str]
    targets: np.ndarray


def class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_split(root: Path, names: tuple[str, ...], dataset: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise UserError(
        f"{dataset}: {root} has no {' or '.join(n + '/' for n in names)} folder (expected {names[0]}/CLASS/IMAGE files)"
    )


def scan(split_dir: Path, classes: list[str], dataset: str) -> FolderSplit:
    paths, targets = [], []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            raise UserError(f"{dataset}: class '{name}' of train/ is missing from {split_dir}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise UserError(f"{dataset}: no images in {folder} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
        paths += [str(p) for p in files]
        targets += [label] * len(files)
    return FolderSplit(paths, np.asarray(targets, dtype=np.int64))


def read_list(list_file: str, root: Path, dataset: str, labels: dict[int, int] | None = None) -> FolderSplit:
    """A split named by a list file (``read_list_once``: read and checked once per process)."""
    from cil.files import usable_path

    path = usable_path(Path(list_file).expanduser(), "data list")
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise UserError(f"cannot read the list {path}: {exc.strerror or exc}") from None
    numbering = tuple(sorted(labels.items())) if labels is not None else None
    return _read_list_once(str(path), stamp, str(root), numbering)


@functools.lru_cache(maxsize=4)
def _read_list_once(
    list_file: str, stamp: int, root_name: str, numbering_items: tuple[tuple[int, int], ...] | None
) -> FolderSplit:
    """A split named by a text file of ``PATH LABEL`` lines (ImageNet-LT, Places-LT, iNaturalist 2018), paths
    relative to ``root`` unless absolute; targets are the labels renumbered 0..K-1 in ascending order (or by
    ``labels``, the training list's numbering). Bad lines, unknown labels and missing files: one error line."""
    path, root = Path(list_file), Path(root_name)
    labels = dict(numbering_items) if numbering_items is not None else None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"cannot read {path}: not a text (UTF-8) file") from None
    except OSError as exc:
        raise UserError(f"cannot read the list {path}: {exc.strerror or exc}") from None
    paths, raw = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise UserError(
                f"{path}:{number}: expected 'PATH LABEL' (a relative image path and an integer), got {line!r}"
            )
        paths.append(parts[0] if Path(parts[0]).is_absolute() else str(root / parts[0]))
        raw.append(int(parts[1]))
    if not paths:
        raise UserError(f"{path} names no images (expected 'PATH LABEL' lines)")
    numbering = labels if labels is not None else {label: i for i, label in enumerate(sorted(set(raw)))}
    unknown = sorted(set(raw) - set(numbering))
    if unknown:
        raise UserError(f"{path}: label {unknown[0]} is not a class of the training list ({len(unknown)} such labels)")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UserError(f"{path} names {len(missing)} missing image(s) under {root}: {', '.join(missing[:3])}{more}")
    return FolderSplit(paths, np.asarray([numbering[label] for label in raw], dtype=np.int64))


def list_numbering(list_file: str) -> dict[int, int]:
    """The renumbering of a training list's labels (ascending, 0..K-1), read without checking the images."""
    labels = set()
    for line in Path(list_file).expanduser().read_text(encoding="utf-8").splitlines():
        parts = line.rsplit(maxsplit=1)
        if len(parts) == 2 and parts[1].isdigit() and not line.lstrip().startswith("#"):
            labels.add(int(parts[1]))
    return {label: i for i, label in enumerate(sorted(labels))}


def list_class_names(split: FolderSplit) -> list[str]:
    """A listed split's class names: each class's image folder when those differ between classes, else its
    label number."""
    firsts = np.unique(split.targets, return_index=True)[1]
    names = [Path(split.paths[i]).parent.name for i in firsts]
    return names if len(set(names)) == len(names) else [str(i) for i in range(len(firsts))]


def is_small(split: FolderSplit) -> tuple[bool, int]:
    """(all sampled images small, their most common side) from the first image of every class."""
    from PIL import Image

    firsts = np.unique(split.targets, return_index=True)[1]
    sides = []
    for i in firsts:
        try:
            with Image.open(split.paths[i]) as img:
                sides.append(max(img.size))
        except OSError as exc:
            raise UserError(f"cannot read image {split.paths[i]}: {exc}") from None
    return max(sides) <= SMALL_SIDE, Counter(sides).most_common(1)[0][0]


def decode_all(paths: list[str], size: int) -> torch.Tensor:
    """Every image as RGB uint8 [N, 3, size, size]; all unreadable files are listed in one error."""
    import torch
    from PIL import Image

    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    bad = []
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as opened:
                img = opened.convert("RGB")
                if img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        except OSError:
            bad.append(path)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise UserError(f"{len(bad)} unreadable image file(s): {', '.join(bad[:3])}{more}")
    return out


def check_root(root: str | None, dataset: str, what: str) -> Path:
    """The data root as a Path, or one clear error naming --data-root."""
    if root is None:
        raise UserError(f"{dataset} needs --data-root DIR ({what})")
    from cil.files import usable_path

    path = usable_path(Path(root).expanduser(), "--data-root")
    if not path.is_dir():
        raise UserError(f"{dataset}: --data-root {root} is not a directory ({what})")
    return path

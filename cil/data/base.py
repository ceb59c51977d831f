"""Image stores that the training loop reads whole batches from.

The Avalanche streams carry indices into these stores (cil/scenarios.py), never images:

* ``TensorImageData``: small images decoded once into one uint8 tensor ``[N, C, H, W]`` that
  lives on the training device; a batch is a gather plus batched augmentation.
* ``FileImageData``: large images (ImageNet, big image folders) decoded lazily in DataLoader
  worker processes with the usual per-image transforms.

Both take an ordered index tensor and yield float batches on the device, so the sampler that
decides the order (shuffling, oversampling) is independent of where the pixels come from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from cil.data.augment import Normalization, SmallImageAugment
from cil.errors import UserError


def first_per_class(targets: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first ``limit`` samples of every class, in dataset order (all when None)."""
    if limit is None:
        return np.arange(len(targets))
    keep = np.zeros(len(targets), dtype=bool)
    for cls in np.unique(targets):
        keep[np.flatnonzero(targets == cls)[:limit]] = True
    return np.flatnonzero(keep)


class ImageData(ABC):
    """A split of a dataset: original class ids and a way to read batches of images."""

    targets: np.ndarray
    """Original class id of every sample (int64)."""

    def __len__(self) -> int:
        return len(self.targets)

    @abstractmethod
    def batches(
        self,
        indices: torch.Tensor,
        batch_size: int,
        *,
        train: bool,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield float image batches for ``indices`` in the given order, augmented when ``train``."""

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the batches."""


class TensorImageData(ImageData):
    """Small images held as one uint8 tensor, moved once to the training device."""

    def __init__(self, images: torch.Tensor, targets: np.ndarray, augment: SmallImageAugment):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor [N, C, H, W]")
        if len(images) != len(targets):
            raise ValueError("images and targets differ in length")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)
        self.augment = augment
        self._on_device: dict[torch.device, torch.Tensor] = {}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def on(self, device: torch.device) -> torch.Tensor:
        device = torch.device(device)
        if device not in self._on_device:
            self._on_device = {device: self.images if device.type == "cpu" else self.images.to(device)}
        return self._on_device[device]

    def subset(self, keep: np.ndarray) -> "TensorImageData":
        return TensorImageData(self.images[torch.as_tensor(keep)], self.targets[keep], self.augment)

    def batches(self, indices, batch_size, *, train, device, generator=None):
        images = self.on(device)
        indices = indices.to(images.device)
        for start in range(0, len(indices), batch_size):
            raw = images[indices[start : start + batch_size]]
            yield self.augment.train(raw, generator) if train else self.augment.eval(raw)


class _PathDataset(torch.utils.data.Dataset):
    """Decodes one file per item; errors name the file."""

    def __init__(self, paths: list[str], order: list[int], transform):
        self.paths, self.order, self.transform = paths, order, transform

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        path = self.paths[self.order[i]]
        try:
            with Image.open(path) as img:
                return self.transform(img.convert("RGB"))
        except OSError as exc:
            raise UserError(f"cannot read image {path}: {exc}") from None


class FileImageData(ImageData):
    """Large images read from files in DataLoader workers (RandomResizedCrop/flip for training)."""

    def __init__(self, paths: list[str], targets: np.ndarray, norm: Normalization, size: int, num_workers: int):
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.int64)
        self.norm, self.size, self.num_workers = norm, size, num_workers

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    def subset(self, keep: np.ndarray) -> "FileImageData":
        return FileImageData([self.paths[i] for i in keep], self.targets[keep], self.norm, self.size, self.num_workers)

    def _transform(self, train: bool):
        from torchvision import transforms as T

        normalize = T.Normalize(self.norm.mean, self.norm.std)
        if train:
            return T.Compose([T.RandomResizedCrop(self.size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
        return T.Compose([T.Resize(round(self.size * 256 / 224)), T.CenterCrop(self.size), T.ToTensor(), normalize])

    def batches(self, indices, batch_size, *, train, device, generator=None):
        dataset = _PathDataset(self.paths, indices.tolist(), self._transform(train))
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item()) if (
            generator is not None) else 0
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=torch.device(device).type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )
        for batch in loader:
            yield batch.to(device, non_blocking=True)

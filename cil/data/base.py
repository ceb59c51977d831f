"""Image stores that the training loop reads whole batches from.

The Avalanche streams carry indices into these stores (cil/data/scenarios.py), never images:

* ``TensorImageData``: small images decoded once into one uint8 tensor ``[N, C, H, W]`` that
  lives on the training device; a batch is a gather plus batched augmentation.
* ``FileImageData`` (cil/data/files.py): large images (ImageNet, big image folders) read from
  their files by persistent DataLoader workers, decoded there or in batches on the device.

Both take an ordered index tensor and yield float batches on the device, so the sampler that
decides the order (shuffling, oversampling) is independent of where the pixels come from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np
import torch

from cil.data.augment import SmallImageAugment


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
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[torch.Tensor]:
        """Yield float image batches for ``indices`` in the given order, augmented when ``train``.

        ``shard = (rank, ranks)``: of every batch only the rank's chunk (``torch.tensor_split``), with
        the augmentation the whole batch would get (cil/training/distributed.py)."""

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

    def subset(self, keep: np.ndarray) -> TensorImageData:
        return TensorImageData(self.images[torch.as_tensor(keep)], self.targets[keep], self.augment)

    def batches(self, indices, batch_size, *, train, device, generator=None, shard=(0, 1)):
        images = self.on(device)
        indices = indices.to(images.device)
        rank, ranks = shard
        for start in range(0, len(indices), batch_size):
            raw = images[indices[start : start + batch_size]]
            batch = self.augment.train(raw, generator) if train else self.augment.eval(raw)
            yield batch if ranks == 1 else batch.tensor_split(ranks)[rank]  # the same draws as unsharded

"""Large images read from files (ImageNet, big image folders), decoded one of two ways.

* ``pil``: DataLoader workers open, crop, resize and normalise each image (PIL); the CPU path.
* ``device``: workers only read the files' bytes; the training process decodes a whole batch at
  once with ``torchvision.io.decode_jpeg(device=...)`` (nvJPEG on a GPU) and crops, resizes, flips
  and normalises it there. On a GPU this keeps the CPUs out of the way; non-JPEG files are decoded
  on the CPU (``decode_image``) and moved.

``data.decode: auto`` picks ``device`` for CUDA runs and ``pil`` otherwise. Both paths take the same
crop and flip for an image (cil/data/crops.py: drawn from a seed per image and epoch), so they agree
up to the decoders' rounding. The workers persist across epochs and steps (one loader per split and
mode, fed a new order each epoch), so their start-up is paid once per run, not once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from cil.data.augment import Normalization
from cil.data.base import ImageData
from cil.data.crops import Crop, crop_resize, train_or_test_crop
from cil.errors import UserError

DECODES = ("auto", "pil", "device")


class _EpochOrder(torch.utils.data.Sampler):
    """The batches of the current epoch, as lists of (sample index, crop seed); set before each pass."""

    def __init__(self):
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Files(torch.utils.data.Dataset):
    """Item (index, seed) -> a transformed float image (``pil``) or the file's bytes and crop (``device``)."""

    def __init__(
        self, paths: list[str], size: int, norm: Normalization, train: bool, raw: bool, brightness: float = 0.0
    ):
        self.paths, self.size, self.norm, self.train, self.raw = paths, size, norm, train, raw
        self.brightness = brightness

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        path = self.paths[index]
        if self.raw:
            with open(path, "rb") as f:
                data = f.read()
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), seed
        from PIL import Image

        try:
            with Image.open(path) as opened:
                img = opened.convert("RGB")
                crop = self.crop(img.height, img.width, seed)
                box = img.crop((crop.left, crop.top, crop.left + crop.width, crop.top + crop.height))
                box = box.resize((self.size, self.size), Image.Resampling.BILINEAR)
        except OSError as exc:
            raise UserError(f"cannot read image {path}: {exc}") from None
        if crop.flip:
            box = box.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = torch.from_numpy(np.asarray(box, dtype=np.uint8).copy()).permute(2, 0, 1)
        x = pixels.unsqueeze(0).float().div_(255.0)
        if crop.brightness != 1.0:
            x = x.mul_(crop.brightness).clamp_(0.0, 1.0)
        return self.norm.normalize(x)[0]

    def crop(self, height: int, width: int, seed: int) -> Crop:
        return train_or_test_crop(height, width, seed, self.train, self.size, self.brightness)


def _collate_raw(items):
    return [data for data, _ in items], [seed for _, seed in items]


class FileImageData(ImageData):
    """Images read from files by persistent DataLoader workers; decoded there (pil) or on the device."""

    def __init__(
        self,
        paths: list[str],
        targets: np.ndarray,
        norm: Normalization,
        size: int,
        num_workers: int,
        decode: str = "auto",
        brightness: float = 0.0,
    ):
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.int64)
        self.norm, self.size, self.num_workers, self.decode = norm, size, num_workers, decode
        self.brightness = brightness
        """ColorJitter's brightness strength of the training transform (0: off)."""
        self._loaders: dict[tuple[bool, bool], tuple[torch.utils.data.DataLoader, _EpochOrder]] = {}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    def subset(self, keep: np.ndarray) -> FileImageData:
        return FileImageData(
            [self.paths[i] for i in keep],
            self.targets[keep],
            self.norm,
            self.size,
            self.num_workers,
            self.decode,
            self.brightness,
        )

    def decodes_on_device(self, device) -> bool:
        return self.decode == "device" or (self.decode == "auto" and torch.device(device).type == "cuda")

    def _loader(self, train: bool, raw: bool, pin: bool):
        key = (train, raw)
        if key not in self._loaders:
            order = _EpochOrder()
            loader = torch.utils.data.DataLoader(
                _Files(self.paths, self.size, self.norm, train, raw, self.brightness),
                batch_sampler=order,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
                pin_memory=pin and not raw,
                collate_fn=_collate_raw if raw else None,
                prefetch_factor=4 if self.num_workers > 0 else None,
            )
            self._loaders[key] = (loader, order)
        return self._loaders[key]

    def batches(self, indices, batch_size, *, train, device, generator=None, shard=(0, 1)) -> Iterator[torch.Tensor]:
        device = torch.device(device)
        base = (
            int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
            if (generator is not None)
            else 0
        )
        order = indices.tolist()
        raw = self.decodes_on_device(device)
        loader, sampler = self._loader(train, raw, device.type == "cuda")
        rank, ranks = shard
        batches = [
            [(i, base + position) for position, i in enumerate(order[start : start + batch_size], start)]
            for start in range(0, len(order), batch_size)
        ]
        if ranks > 1:  # each rank decodes only its chunk; crops are seeded by the global position
            batches = [[batch[i] for i in np.array_split(np.arange(len(batch)), ranks)[rank]] for batch in batches]
        sampler.batches = batches
        for batch in loader:
            if raw:
                yield self._decode_on(device, *batch, train=train)
            else:
                yield batch.to(device, non_blocking=True)

    def _decode_on(
        self, device: torch.device, data: list[torch.Tensor], seeds: list[int], *, train: bool
    ) -> torch.Tensor:
        """Decode a batch of files on ``device``, then crop, resize, flip and normalise it there."""
        from torchvision.io import ImageReadMode, decode_image, decode_jpeg

        jpeg = [d.numel() > 2 and int(d[0]) == 0xFF and int(d[1]) == 0xD8 for d in data]
        images: list[torch.Tensor | None] = [None] * len(data)
        jpeg_positions = [i for i, is_jpeg in enumerate(jpeg) if is_jpeg]
        if jpeg_positions:
            decoded = decode_jpeg([data[i] for i in jpeg_positions], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(jpeg_positions, decoded):
                images[i] = image
        for i, is_jpeg in enumerate(jpeg):
            if not is_jpeg:
                images[i] = decode_image(data[i], mode=ImageReadMode.RGB).to(device)
        crops = []
        for image, seed in zip(images, seeds):
            assert image is not None
            height, width = image.shape[1:]
            crop = train_or_test_crop(height, width, seed, train, self.size, self.brightness)
            crops.append(crop_resize(image, crop, self.size))
        return self.norm.normalize(torch.stack(crops))

    def __getstate__(self):  # loaders hold worker processes: never pickled or copied
        state = dict(self.__dict__)
        state["_loaders"] = {}
        return state

"""CIFAR-10 and CIFAR-100 through torchvision, held as uint8 tensors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cil.errors import UserError

if TYPE_CHECKING:
    import torch

CIFAR100_NORM = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
CIFAR10_NORM = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def load_cifar(name: str, root: str | None, train: bool) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """(images uint8 [N, 3, 32, 32], targets, class names); downloads when the data is missing.

    Without the files and without network access: one clear error naming --data-root.
    """
    import torch
    from torchvision import datasets

    cls = {"cifar100": datasets.CIFAR100, "cifar10": datasets.CIFAR10}[name]
    from cil.files import usable_path

    folder = usable_path(Path(root or "data").expanduser(), "--data-root")
    try:
        ds = cls(str(folder), train=train, download=False)
    except RuntimeError:
        existed = folder.exists()
        try:
            ds = cls(str(folder), train=train, download=True)
        except Exception as exc:  # network errors come as URLError, OSError, HTTPError...
            if not existed:  # the folder is the failed download's: leave nothing behind
                shutil.rmtree(folder, ignore_errors=True)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(
                f"{name} is not under {folder} and could not be downloaded ({reason}); "
                f"pass --data-root DIR holding {cls.base_folder}/ (the python version of the dataset)"
            ) from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return images, np.asarray(ds.targets, dtype=np.int64), list(ds.classes)

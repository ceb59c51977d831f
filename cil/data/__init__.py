"""Datasets by name: what each is and how to load its train and test splits.

Naming, counting and describing a dataset imports no torch (``cil list`` and ``cil describe`` stay
fast); the image containers and augmentations are imported when a dataset is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cil.config import DataConfig
from cil.data import folder
from cil.data.cifar import CIFAR10_NORM, CIFAR100_NORM
from cil.data.folder import check_root
from cil.data.scenarios import ScenarioName, ScenarioPlan
from cil.errors import UserError
from cil.registry import Registry

if TYPE_CHECKING:
    from cil.data.base import ImageData


@dataclass
class LoadedDataset:
    train: ImageData
    test: ImageData
    class_names: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    summary: str
    default_backbone: str
    count_classes: Callable[[DataConfig], int]
    load: Callable[[DataConfig], LoadedDataset]
    class_names: Callable[[DataConfig], list[str]] | None = None
    """The class names a folder dataset takes from ``--data-root`` without loading images (describe)."""


def _limited(train: ImageData, test: ImageData, cfg: DataConfig) -> tuple[ImageData, ImageData]:
    from cil.data.base import first_per_class

    if cfg.limit_per_class is not None:
        train = train.subset(first_per_class(train.targets, cfg.limit_per_class))  # type: ignore[attr-defined]
    if cfg.test_limit_per_class is not None:
        test = test.subset(first_per_class(test.targets, cfg.test_limit_per_class))  # type: ignore[attr-defined]
    return train, test


def _load_synthetic(cfg: DataConfig) -> LoadedDataset:
    from cil.data import synthetic
    from cil.data.augment import SmallImageAugment
    from cil.data.base import TensorImageData

    augment = SmallImageAugment(synthetic.NORMALIZATION, brightness=cfg.brightness_jitter)
    n = cfg.synthetic_classes
    xtr, ytr = synthetic.generate(n, split="train", seed=cfg.synthetic_seed, limit_per_class=cfg.limit_per_class)
    xte, yte = synthetic.generate(n, split="test", seed=cfg.synthetic_seed, limit_per_class=cfg.test_limit_per_class)
    names = [f"synthetic_{c:03d}" for c in range(n)]
    return LoadedDataset(TensorImageData(xtr, ytr, augment), TensorImageData(xte, yte, augment), names)


def _cifar_loader(name: str, norm: tuple) -> Callable[[DataConfig], LoadedDataset]:
    def load(cfg: DataConfig) -> LoadedDataset:
        from cil.data.augment import Normalization, SmallImageAugment
        from cil.data.base import TensorImageData
        from cil.data.cifar import load_cifar

        augment = SmallImageAugment(Normalization(*norm), brightness=cfg.brightness_jitter)
        xtr, ytr, names = load_cifar(name, cfg.root, train=True)
        xte, yte, _ = load_cifar(name, cfg.root, train=False)
        train, test = _limited(TensorImageData(xtr, ytr, augment), TensorImageData(xte, yte, augment), cfg)
        return LoadedDataset(train, test, names)

    return load


SUBSET_SEED = 1993


def pick_subset(names: list[str], n_classes: int) -> list[str]:
    """The ``n_classes`` classes a subset dataset takes from a larger folder tree.

    ImageNet-Subset is LUCIR's (and PODNet's): ``numpy.random.seed(1993)`` then
    ``numpy.random.choice(sorted wnids, 100, replace=False)`` over the 1,000 ImageNet classes, kept
    in sorted order (they are copied into a folder of their own, which ImageFolder sorts); the
    class order of the scenario then permutes these 100. A tree with exactly ``n_classes`` folders
    (an ImageNet-Subset copy) is taken as it is.
    """
    import numpy as np

    if len(names) == n_classes:
        return list(names)
    chosen = np.random.RandomState(SUBSET_SEED).choice(np.array(sorted(names)), n_classes, replace=False)
    return sorted(str(name) for name in chosen)


def _folder_loader(
    dataset: str, test_dirs: tuple[str, ...], force_large: bool, n_classes: int | None = None, subset: bool = False
):
    """(count_classes, load, class_names) of a folder dataset; ``n_classes`` fixes the count (ImageNet's
    1000: the first 1000 folders; with ``subset``, ImageNet-Subset's seed-1993 choice)."""
    what = f"a folder with train/CLASS/*.jpg and {test_dirs[0]}/CLASS/*.jpg"

    def classes(cfg: DataConfig) -> list[str]:
        root = check_root(cfg.root, dataset, what)
        names = folder.class_folders(folder.find_split(root, ("train",), dataset))
        if not names:
            raise UserError(f"{dataset}: no class folders under {root / 'train'}")
        if n_classes is not None:
            if len(names) < n_classes:
                raise UserError(
                    f"{dataset}: expected {n_classes} class folders under {root / 'train'}, found {len(names)}"
                )
            names = pick_subset(names, n_classes) if subset else names[:n_classes]
        return names

    def count(cfg: DataConfig) -> int:
        return n_classes if n_classes is not None else len(classes(cfg))

    def load(cfg: DataConfig) -> LoadedDataset:
        from cil.data.augment import Normalization, SmallImageAugment
        from cil.data.base import TensorImageData, first_per_class
        from cil.data.files import FileImageData

        root = check_root(cfg.root, dataset, what)
        names = classes(cfg)
        train_split = folder.scan(root / "train", names, dataset)
        test_split = folder.scan(folder.find_split(root, test_dirs, dataset), names, dataset)
        train_keep = first_per_class(train_split.targets, cfg.limit_per_class)
        test_keep = first_per_class(test_split.targets, cfg.test_limit_per_class)
        small, side = (False, 0) if force_large else folder.is_small(train_split)
        train: ImageData
        test: ImageData
        if small:
            size = cfg.image_size or side
            augment = SmallImageAugment(
                Normalization(*folder.IMAGENET_NORM), padding=max(1, size // 8), brightness=cfg.brightness_jitter
            )
            train = TensorImageData(
                folder.decode_all([train_split.paths[i] for i in train_keep], size),
                train_split.targets[train_keep],
                augment,
            )
            test = TensorImageData(
                folder.decode_all([test_split.paths[i] for i in test_keep], size),
                test_split.targets[test_keep],
                augment,
            )
        else:
            norm, size = Normalization(*folder.IMAGENET_NORM), cfg.image_size or 224
            train = FileImageData(
                [train_split.paths[i] for i in train_keep],
                train_split.targets[train_keep],
                norm,
                size,
                cfg.worker_count(),
                cfg.decode,
                cfg.brightness_jitter,
            )
            test = FileImageData(
                [test_split.paths[i] for i in test_keep],
                test_split.targets[test_keep],
                norm,
                size,
                cfg.worker_count(),
                cfg.decode,
            )
        return LoadedDataset(train, test, names)

    return count, load, classes


_folder_count, _folder_load, _folder_names = _folder_loader("folder", ("test", "val"), force_large=False)
_imagenet_count, _imagenet_load, _imagenet_names = _folder_loader(
    "imagenet", ("val", "test"), force_large=True, n_classes=1000
)
_subset_count, _subset_load, _subset_names = _folder_loader(
    "imagenet-subset", ("val", "test"), force_large=True, n_classes=100, subset=True
)

DATASETS: Registry[DatasetSpec] = Registry("dataset", "the scenario's DATASET")
"""Every dataset by name (its loaders import torch when called)."""
for _spec in [
    DatasetSpec(
        "cifar100",
        "CIFAR-100: 100 classes, 500 train / 100 test 32x32 images each (torchvision)",
        "resnet32",
        lambda cfg: 100,
        _cifar_loader("cifar100", CIFAR100_NORM),
    ),
    DatasetSpec(
        "cifar10",
        "CIFAR-10: 10 classes, 5000 train / 1000 test 32x32 images each (torchvision)",
        "resnet32",
        lambda cfg: 10,
        _cifar_loader("cifar10", CIFAR10_NORM),
    ),
    DatasetSpec(
        "imagenet-subset",
        "ImageNet-Subset: 100 ImageNet classes (--data-root with train/ and val/)",
        "resnet18",
        _subset_count,
        _subset_load,
        _subset_names,
    ),
    DatasetSpec(
        "imagenet",
        "ImageNet (ILSVRC 2012): 1000 classes (--data-root with train/ and val/)",
        "resnet18",
        _imagenet_count,
        _imagenet_load,
        _imagenet_names,
    ),
    DatasetSpec(
        "folder",
        "any image folder (--data-root with train/CLASS/* and test/CLASS/*)",
        "resnet32",
        _folder_count,
        _folder_load,
        _folder_names,
    ),
    DatasetSpec(
        "synthetic",
        "offline procedural 32x32 images, 100 classes x (500 train, 100 test), no files",
        "resnet32",
        lambda cfg: cfg.synthetic_classes,
        _load_synthetic,
    ),
]:
    DATASETS.add(_spec.name, _spec, _spec.summary)


def parse_scenario(scenario: str) -> tuple[ScenarioName, DatasetSpec]:
    """A scenario name checked against the grammar and the datasets, and its dataset."""
    name = ScenarioName.parse(scenario, DATASETS.names())
    return name, DATASETS[name.dataset]


def scenario_plan(scenario: str, data: DataConfig, class_order_seed: int, n_classes: int | None = None) -> ScenarioPlan:
    """The plan (class order, classes of every step) of a scenario; its dataset's classes are counted without
    loading images unless ``n_classes`` is given (a loaded dataset's)."""
    name, spec = parse_scenario(scenario)
    return ScenarioPlan.make(name, spec.count_classes(data) if n_classes is None else n_classes, class_order_seed)


def default_backbone(spec: DatasetSpec, loaded: LoadedDataset) -> str:
    """The dataset's backbone, or ResNet-18 when a folder turned out to hold large images."""
    from cil.data.files import FileImageData

    if isinstance(loaded.train, FileImageData):
        return "resnet18"
    return (
        "resnet32"
        if spec.default_backbone == "resnet18" and loaded.train.image_shape[1] <= 64
        else spec.default_backbone
    )


__all__ = ["DATASETS", "DatasetSpec", "LoadedDataset", "default_backbone", "parse_scenario", "scenario_plan"]

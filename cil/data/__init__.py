"""Datasets by name: what each is and how to load its train and test splits.

Naming, counting and describing a dataset imports no torch (``cil list`` and ``cil describe`` stay
fast); the image containers and augmentations are imported when a dataset is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

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
    count_train: Callable[[DataConfig], list[int]]
    """Training images of every class id, counted without loading images (``--limit-per-class`` applied)."""
    class_names: Callable[[DataConfig], list[str]] | None = None
    """The class names a folder dataset takes from ``--data-root`` without loading images (describe)."""
    takes_lists: bool = False
    """Whether ``data.train_list`` / ``data.test_list`` can name its images (folder datasets)."""


def _capped(counts: list[int], limit: int | None) -> list[int]:
    """Per-class counts after ``--limit-per-class``."""
    return [min(n, limit) for n in counts] if limit is not None else list(counts)


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


SYNTHETIC_TRAIN_PER_CLASS = 500
"""cil/data/synthetic.py's TRAIN_PER_CLASS, known here without importing torch (a test checks they agree)."""

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
    """(count_classes, load, class_names, count_train) of a folder dataset; a ``data.train_list`` (and
    ``test_list``) names the images instead of the folders; ``n_classes`` fixes the count (ImageNet's
    1000: the first 1000 folders; with ``subset``, ImageNet-Subset's seed-1993 choice)."""
    what = f"a folder with train/CLASS/*.jpg and {test_dirs[0]}/CLASS/*.jpg"

    def train_split(cfg: DataConfig) -> folder.FolderSplit:
        root = check_root(cfg.root, dataset, what)
        if cfg.train_list is not None:
            return folder.read_list(cfg.train_list, root, dataset)
        return folder.scan(root / "train", classes(cfg), dataset)

    def test_split(cfg: DataConfig) -> folder.FolderSplit:
        root = check_root(cfg.root, dataset, what)
        if cfg.test_list is not None:
            numbering = folder.list_numbering(cfg.train_list) if cfg.train_list is not None else None
            return folder.read_list(cfg.test_list, root, dataset, numbering)
        return folder.scan(folder.find_split(root, test_dirs, dataset), classes(cfg), dataset)

    def classes(cfg: DataConfig) -> list[str]:
        root = check_root(cfg.root, dataset, what)
        if cfg.train_list is not None:  # the list's classes, as it numbers them
            return folder.list_class_names(folder.read_list(cfg.train_list, root, dataset))
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
        return n_classes if n_classes is not None and cfg.train_list is None else len(classes(cfg))

    def count_train(cfg: DataConfig) -> list[int]:
        targets = train_split(cfg).targets
        return _capped(np.bincount(targets, minlength=count(cfg)).tolist(), cfg.limit_per_class)

    def load(cfg: DataConfig) -> LoadedDataset:
        from cil.data.base import first_per_class

        names = classes(cfg)
        train, test = train_split(cfg), test_split(cfg)
        train_keep = first_per_class(train.targets, cfg.limit_per_class)
        test_keep = first_per_class(test.targets, cfg.test_limit_per_class)
        train_images, test_images = _folder_images(train, test, train_keep, test_keep, cfg, force_large)
        return LoadedDataset(train_images, test_images, names)

    return count, load, classes, count_train


def _folder_images(train_split, test_split, train_keep, test_keep, cfg: DataConfig, force_large: bool):
    """The (train, test) image stores of two folder splits: small images decoded into tensors, large ones read
    from their files by workers."""
    from cil.data.augment import Normalization, SmallImageAugment
    from cil.data.base import TensorImageData
    from cil.data.files import FileImageData

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
    return train, test


_folder_count, _folder_load, _folder_names, _folder_train = _folder_loader("folder", ("test", "val"), force_large=False)
_imagenet_count, _imagenet_load, _imagenet_names, _imagenet_train = _folder_loader(
    "imagenet", ("val", "test"), force_large=True, n_classes=1000
)
_subset_count, _subset_load, _subset_names, _subset_train = _folder_loader(
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
        lambda cfg: _capped([500] * 100, cfg.limit_per_class),
    ),
    DatasetSpec(
        "cifar10",
        "CIFAR-10: 10 classes, 5000 train / 1000 test 32x32 images each (torchvision)",
        "resnet32",
        lambda cfg: 10,
        _cifar_loader("cifar10", CIFAR10_NORM),
        lambda cfg: _capped([5000] * 10, cfg.limit_per_class),
    ),
    DatasetSpec(
        "imagenet-subset",
        "ImageNet-Subset: 100 ImageNet classes (--data-root with train/ and val/)",
        "resnet18",
        _subset_count,
        _subset_load,
        _subset_train,
        _subset_names,
        takes_lists=True,
    ),
    DatasetSpec(
        "imagenet",
        "ImageNet (ILSVRC 2012): 1000 classes (--data-root with train/ and val/)",
        "resnet18",
        _imagenet_count,
        _imagenet_load,
        _imagenet_train,
        _imagenet_names,
        takes_lists=True,
    ),
    DatasetSpec(
        "folder",
        "any image folder (--data-root with train/CLASS/* and test/CLASS/*)",
        "resnet32",
        _folder_count,
        _folder_load,
        _folder_train,
        _folder_names,
        takes_lists=True,
    ),
    DatasetSpec(
        "synthetic",
        "offline procedural 32x32 images, 100 classes x (500 train, 100 test), no files",
        "resnet32",
        lambda cfg: cfg.synthetic_classes,
        _load_synthetic,
        lambda cfg: _capped([SYNTHETIC_TRAIN_PER_CLASS] * cfg.synthetic_classes, cfg.limit_per_class),
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


def with_imbalance(loaded: LoadedDataset, data: DataConfig, plan: ScenarioPlan) -> tuple[LoadedDataset, Any]:
    """The dataset with its training set cut to ``data.imbalance`` (cil/data/imbalance.py), and the
    ``ImbalancedSplit`` saying what was kept (None, and the dataset unchanged, without a profile)."""
    from cil.config.imbalance import ImbalanceProfile
    from cil.data.imbalance import imbalanced_split

    profile = ImbalanceProfile.parse(data.imbalance, "data.imbalance")
    if profile is None:
        return loaded, None
    split = imbalanced_split(profile, loaded.train.targets, loaded.n_classes, plan.order, data.imbalance_seed)
    train = loaded.train.subset(split.indices)  # type: ignore[attr-defined]
    return LoadedDataset(train, loaded.test, loaded.class_names), split


def planned_train_counts(spec: DatasetSpec, data: DataConfig, plan: ScenarioPlan) -> list[int]:
    """Training images of every label (the class order's position) a run of ``plan`` will have, the imbalance
    profile applied, counted without loading images."""
    from cil.config.imbalance import ImbalanceProfile

    available = spec.count_train(data)
    profile = ImbalanceProfile.parse(data.imbalance, "data.imbalance")
    counts = profile.class_counts(available, plan.order) if profile is not None else available
    return [counts[class_id] for class_id in plan.order]


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


__all__ = [
    "DATASETS",
    "DatasetSpec",
    "LoadedDataset",
    "default_backbone",
    "parse_scenario",
    "planned_train_counts",
    "scenario_plan",
    "with_imbalance",
]

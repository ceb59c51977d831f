"""Data: batched augmentation, the synthetic dataset, image folders, CIFAR's missing-data error."""

import numpy as np
import pytest
import torch

from cil.config import DataConfig
from cil.data import DATASETS, synthetic
from cil.data.augment import Normalization, SmallImageAugment, random_crop, random_hflip
from cil.data.base import TensorImageData, first_per_class
from cil.data.files import FileImageData
from cil.errors import UserError
from tests.helpers import write_image_folder


def test_random_crop_is_a_window_of_the_padded_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], w) for w in windows)


def test_flip_mirrors_about_half_of_a_large_batch():
    x = torch.randint(0, 255, (400, 3, 4, 4), dtype=torch.uint8)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) and not torch.equal(o, xi) for o, xi in zip(out, x)])
    unchanged = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert torch.all(flipped | unchanged) and 150 < int(flipped.sum()) < 250


def test_eval_transform_is_normalisation_only():
    aug = SmallImageAugment(Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(aug.eval(x), torch.full((1, 3, 2, 2), 2.0))


def test_tensor_store_batches_follow_the_given_order():
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 3, 2, 2).contiguous()
    data = TensorImageData(images, np.arange(5), SmallImageAugment(Normalization((0, 0, 0), (1 / 255,) * 3), 0))
    batches = list(data.batches(torch.tensor([4, 0, 2]), 2, train=False, device=torch.device("cpu")))
    assert [b.shape[0] for b in batches] == [2, 1]
    assert torch.cat(batches)[:, 0, 0, 0].tolist() == [4.0, 0.0, 2.0]


def test_first_per_class():
    targets = np.array([0, 1, 0, 1, 0, 2])
    assert first_per_class(targets, 2).tolist() == [0, 1, 2, 3, 5]
    assert first_per_class(targets, None).tolist() == list(range(6))


def test_synthetic_is_deterministic_and_shaped():
    x1, y1 = synthetic.generate(10, split="train", seed=0, limit_per_class=6)
    x2, y2 = synthetic.generate(10, split="train", seed=0, limit_per_class=6)
    x3, _ = synthetic.generate(10, split="train", seed=1, limit_per_class=6)
    assert x1.shape == (60, 3, 32, 32) and x1.dtype == torch.uint8
    assert torch.equal(x1, x2) and np.array_equal(y1, y2) and not torch.equal(x1, x3)
    assert np.bincount(y1).tolist() == [6] * 10
    xt, _ = synthetic.generate(10, split="test", seed=0, limit_per_class=6)
    assert not torch.equal(xt, x1)  # separate streams for train and test


def test_synthetic_classes_differ_more_between_than_within():
    x, y = synthetic.generate(20, split="train", seed=0, limit_per_class=30)
    means = torch.stack([x[torch.from_numpy(y == c)].float().mean(0) for c in range(20)])
    assert means.std(0).mean() > 5  # class-conditional images are not all alike


def test_synthetic_loader_respects_limits():
    data = DATASETS["synthetic"].load(DataConfig(limit_per_class=3, test_limit_per_class=2, synthetic_classes=5))
    assert (len(data.train), len(data.test), data.n_classes) == (15, 10, 5)


def test_folder_small_images_become_a_tensor_store(image_folder):
    data = DATASETS["folder"].load(DataConfig(root=str(image_folder)))
    assert isinstance(data.train, TensorImageData)
    assert data.train.images.shape == (48, 3, 16, 16) and len(data.test) == 24
    assert data.class_names == [f"class_{c:02d}" for c in range(6)]
    assert np.bincount(data.train.targets).tolist() == [8] * 6


def test_folder_large_images_load_lazily(tmp_path):
    root = write_image_folder(
        tmp_path / "big", n_classes=2, train_per_class=3, test_per_class=2, size=80, test_dir="val"
    )
    data = DATASETS["folder"].load(DataConfig(root=str(root), image_size=32, num_workers=0))
    assert isinstance(data.train, FileImageData)
    batches = list(
        data.train.batches(
            torch.arange(6), 4, train=True, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0)
        )
    )
    assert [tuple(b.shape) for b in batches] == [(4, 3, 32, 32), (2, 3, 32, 32)]


def test_unreadable_files_are_named(image_folder):
    bad = image_folder / "train" / "class_03" / "img_999.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(UserError, match="unreadable image file.*img_999.png"):
        DATASETS["folder"].load(DataConfig(root=str(image_folder)))


def test_folder_missing_class_in_test(image_folder):
    for f in (image_folder / "test" / "class_05").iterdir():
        f.unlink()
    (image_folder / "test" / "class_05").rmdir()
    with pytest.raises(UserError, match="class 'class_05' of train/ is missing"):
        DATASETS["folder"].load(DataConfig(root=str(image_folder)))


def test_cifar_without_data_or_network_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd.CIFAR100, "download", offline)
    with pytest.raises(UserError, match=r"cifar100 is not under .* could not be downloaded .*--data-root") as info:
        DATASETS["cifar100"].load(DataConfig(root=str(tmp_path)))
    assert "\n" not in str(info.value)


def test_imagenet_needs_its_classes(tmp_path):
    root = write_image_folder(tmp_path / "inet", n_classes=3, train_per_class=1, test_per_class=1, test_dir="val")
    with pytest.raises(UserError, match="expected 1000 class folders"):
        DATASETS["imagenet"].load(DataConfig(root=str(root)))
    assert DATASETS["imagenet"].count_classes(DataConfig()) == 1000

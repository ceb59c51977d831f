"""Large-image input: the device-decode path agrees with the PIL path on the same crops; crops do not
depend on the worker count; workers persist across epochs."""

import numpy as np
import pytest
import torch

from cil.data.augment import Normalization
from cil.data.crops import RATIO, SCALE, centre_crop, random_resized_crop
from cil.data.files import FileImageData
from tests.helpers import write_jpegs

NORM = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return write_jpegs(tmp_path_factory.mktemp("jpegs"), 12)


def read(data: FileImageData, device: str, train: bool, seed: int = 5) -> torch.Tensor:
    batches = data.batches(
        torch.arange(len(data.paths)).flip(0),
        5,
        train=train,
        device=torch.device(device),
        generator=torch.Generator().manual_seed(seed),
    )
    return torch.cat([b.cpu() for b in batches])


def files(paths, decode: str, workers: int = 0, brightness: float = 0.0) -> FileImageData:
    return FileImageData(paths, np.zeros(len(paths), dtype=np.int64), NORM, 48, workers, decode, brightness)


@pytest.mark.parametrize(("train", "brightness"), [(True, 0.0), (False, 0.0), (True, 63 / 255)])
def test_torchvision_decoding_matches_pil_on_the_same_crops(jpegs, train, brightness):
    """CPU decode_jpeg + tensor crop/resize (the GPU path's code, run on the CPU) against PIL in workers."""
    pil = read(files(jpegs, "pil", brightness=brightness), "cpu", train)
    device = read(files(jpegs, "device", brightness=brightness), "cpu", train)
    assert pil.shape == device.shape == (12, 3, 48, 48)
    difference = (pil - device).abs() * torch.tensor(NORM.std)[:, None, None]  # in pixel units of [0, 1]
    assert difference.mean() < 0.003 and difference.max() < 0.02  # measured: 0.0011 and 0.0038


@pytest.mark.gpu
def test_gpu_decoding_matches_pil(jpegs):
    """The decode-on-device path (nvJPEG) equals the PIL path within the CPU decoder's tolerance."""
    pil = read(files(jpegs, "pil"), "cpu", True)
    gpu = read(files(jpegs, "device"), "cuda", True)
    difference = (pil - gpu).abs() * torch.tensor(NORM.std)[:, None, None]
    assert difference.mean() < 0.003 and difference.max() < 0.02  # measured: 0.0011 and 0.0038


def test_crops_depend_on_the_seed_not_on_the_workers(jpegs):
    alone = read(files(jpegs, "pil", workers=0), "cpu", True)
    shared = read(files(jpegs, "pil", workers=2), "cpu", True)
    assert torch.equal(alone, shared)
    assert not torch.equal(alone, read(files(jpegs, "pil", workers=0), "cpu", True, seed=6))


def test_workers_persist_across_epochs(jpegs):
    data = files(jpegs, "pil", workers=2)
    first = read(data, "cpu", True, seed=1)
    loader, _ = data._loaders[(True, False)]
    iterator = loader._iterator
    pids = {w.pid for w in iterator._workers}
    second = read(data, "cpu", True, seed=2)
    assert loader._iterator is iterator and {w.pid for w in iterator._workers} == pids
    assert not torch.equal(first, second) and len(data._loaders) == 1


def test_png_files_take_the_cpu_decoder_on_the_device_path(tmp_path, jpegs):
    from PIL import Image

    png = tmp_path / "a.png"
    Image.open(jpegs[0]).save(png)
    both = read(files([jpegs[0], png], "device"), "cpu", False)
    assert both.shape == (2, 3, 48, 48) and (both[0] - both[1]).abs().mean() < 0.05  # same picture, JPEG vs PNG


def test_random_resized_crop_stays_in_bounds_and_in_the_ranges():
    for seed in range(500):
        crop = random_resized_crop(90, 120, seed)
        assert 0 <= crop.top and crop.top + crop.height <= 90 and 0 <= crop.left and crop.left + crop.width <= 120
        area = crop.height * crop.width / (90 * 120)
        assert SCALE[0] * 0.9 <= area <= 1.0 and RATIO[0] * 0.9 <= crop.width / crop.height <= RATIO[1] * 1.1
    assert random_resized_crop(90, 120, 3) == random_resized_crop(90, 120, 3)
    flips = [random_resized_crop(90, 120, seed).flip for seed in range(400)]
    assert 150 < sum(flips) < 250
    centre = centre_crop(90, 120, 224)
    assert (centre.height, centre.width) == (79, 79) and centre.top == 5 and centre.left == 20  # 90 * 224 / 256


def test_brightness_jitter_of_large_images():
    """ColorJitter(brightness=b) on the file pipeline (PODNet's ImageNet setting): a factor in [1 - b, 1 + b] per
    image and epoch from the crop's seed, drawn apart from the box and flip, so these do not change with it."""
    factors = []
    for seed in range(400):
        plain, jittered = random_resized_crop(90, 120, seed), random_resized_crop(90, 120, seed, 0.25)
        assert (plain.top, plain.left, plain.height, plain.width, plain.flip) == (
            jittered.top,
            jittered.left,
            jittered.height,
            jittered.width,
            jittered.flip,
        )
        assert plain.brightness == 1.0 and 0.75 <= jittered.brightness <= 1.25
        factors.append(jittered.brightness)
    assert 0.97 < np.mean(factors) < 1.03 and np.std(factors) > 0.12  # uniform on [0.75, 1.25]: std 0.144
    assert random_resized_crop(90, 120, 7, 0.25) == random_resized_crop(90, 120, 7, 0.25)


def test_brightness_jitter_scales_the_pixels(jpegs):
    """Same crops with and without jitter; in pixel units the jittered image is the plain one times its factor,
    clamped to [0, 1]; evaluation images are not jittered."""
    plain = read(files(jpegs[:1], "pil"), "cpu", True)
    jittered = read(files(jpegs[:1], "pil", brightness=0.25), "cpu", True)
    mean, std = torch.tensor(NORM.mean)[:, None, None], torch.tensor(NORM.std)[:, None, None]
    plain, jittered = plain[0] * std + mean, jittered[0] * std + mean
    unclamped = (plain > 0.05) & (jittered < 0.99)
    factor = (jittered[unclamped] / plain[unclamped]).median().item()
    assert 0.75 <= factor <= 1.25 and factor != pytest.approx(1.0, abs=1e-3)
    assert torch.allclose(jittered, (plain * factor).clamp(0, 1), atol=1e-5)
    evaluated = read(files(jpegs[:1], "pil", brightness=0.25), "cpu", False)
    assert torch.equal(evaluated, read(files(jpegs[:1], "pil"), "cpu", False))

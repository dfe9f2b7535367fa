"""FIDCallback's cache of real statistics is keyed on everything that changes the real images: the datamodule's
``data_identity()`` (preprocessing, input files, split, absolute data folder), the extractor's weights, num_real."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lit_gans.callbacks import FIDCallback, MNISTClassifier
from lit_gans.datamodules import CalligraphyDataModule, CatFacesDataModule, ImageFolderDataModule, MNISTDataModule
from lit_gans.datamodules.base import float_images


def write_images(root: Path, classes=("a", "b"), per_class: int = 3, size=(20, 14)) -> Path:
    """Dark strokes on light paper, one folder per class (random, seed 0)."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full(size[::-1], 235, np.uint8)
            rows, cols = rng.integers(2, size[1] - 2, 6), rng.integers(2, size[0] - 2, 6)
            for r, col in zip(rows, cols):
                pixels[r - 2 : r + 2, col - 2 : col + 2] = rng.integers(0, 40)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def write_cats(root: Path) -> Path:
    """Two CAT-layout pairs (an image and its annotation): never decoded here, only listed and fingerprinted."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("00000001_000.jpg", "00000001_001.jpg"):
        Image.new("RGB", (32, 32), (90, 90, 90)).save(root / name)
        (root / f"{name}.cat").write_text("9 " + " ".join(["10"] * 18))
    return root


@pytest.fixture(scope="module")
def fid(tmp_path_factory):
    cb = FIDCallback("mnist", num_real=4, num_fake=4, cache_dir=tmp_path_factory.mktemp("fid"))
    cb.setup(None, None, "fit")
    return cb


def key(fid: FIDCallback, dm) -> Path:
    return fid.cache_path(SimpleNamespace(datamodule=dm))


def test_calligraphy_and_image_folder_parameters_change_the_key(fid, tmp_path):
    data = write_images(tmp_path / "data")
    same = dict(cache_dir=tmp_path / "cache", preprocess_workers=0)
    base = key(fid, CalligraphyDataModule(data, **same))
    assert key(fid, CalligraphyDataModule(data, **same)) == base  # an identical datamodule: a cache hit
    assert key(fid, CalligraphyDataModule(data, batch_size=7, num_workers=1, **same)) == base  # loading only
    assert key(fid, CalligraphyDataModule(data, invert=True, **same)) != base
    assert key(fid, CalligraphyDataModule(data, dirty="skip", **same)) != base
    assert key(fid, CalligraphyDataModule(data, image_size=32, **same)) != base
    assert key(fid, CalligraphyDataModule(data, val_split=0.5, **same)) != base
    assert key(fid, CalligraphyDataModule(data, val_split=0.5, seed=1, **same)) != key(
        fid, CalligraphyDataModule(data, val_split=0.5, seed=2, **same)
    )
    folder = key(fid, ImageFolderDataModule(data, resize="crop", **same))
    assert key(fid, ImageFolderDataModule(data, resize="pad", **same)) != folder
    assert key(fid, ImageFolderDataModule(data, resize="crop", **same)) == folder


def test_a_changed_input_file_changes_the_key(fid, tmp_path):
    data = write_images(tmp_path / "data")
    dm = ImageFolderDataModule(data, cache_dir=tmp_path / "cache")
    before = key(fid, dm)
    Image.new("L", (30, 30), 10).save(data / "a" / "0.png")  # other content, other size
    assert key(fid, dm) != before
    write_images(tmp_path / "data", classes=("c",), per_class=1)  # an added file
    changed = key(fid, dm)
    assert changed != before and key(fid, dm) == changed


def test_cat_face_parameters_change_the_key(fid, tmp_path):
    data = write_cats(tmp_path / "cats")
    same = dict(cache_dir=tmp_path / "cache")
    base = key(fid, CatFacesDataModule(data, **same))
    assert key(fid, CatFacesDataModule(data, download=True, **same)) == base
    for changed in (dict(min_size=100), dict(border="skip"), dict(exclude=["00000001_000.jpg"]), dict(errata=False)):
        assert key(fid, CatFacesDataModule(data, **changed, **same)) != base, changed


def test_mnist_split_and_relative_data_dir_change_the_key(fid, mnist_dir, tmp_path, monkeypatch):
    base = key(fid, MNISTDataModule(mnist_dir, download=False))
    assert key(fid, MNISTDataModule(mnist_dir, download=True, batch_size=3)) == base
    for changed in (dict(val_split=0.1), dict(dataset="fashion_mnist"), dict(train=False), dict(image_size=32)):
        assert key(fid, MNISTDataModule(mnist_dir, download=False, **changed)) != base, changed
    assert key(fid, MNISTDataModule(mnist_dir, val_split=0.1, seed=1)) != key(
        fid, MNISTDataModule(mnist_dir, val_split=0.1, seed=2)
    )
    # one relative data_dir from two working directories: two datasets
    keys = []
    for cwd in ("one", "two"):
        (tmp_path / cwd).mkdir()
        monkeypatch.chdir(tmp_path / cwd)
        keys.append(key(fid, MNISTDataModule("data")))
        keys.append(key(fid, ImageFolderDataModule(write_images(Path("data")), cache_dir=tmp_path / "cache")))
    assert keys[0] != keys[2] and keys[1] != keys[3]


def test_other_extractor_weights_change_the_key(mnist_dir, tmp_path):
    dm = MNISTDataModule(mnist_dir, download=False)
    keys = []
    for scale in (1.0, 1.0, 2.0):
        extractor = MNISTClassifier.pretrained()
        extractor.classifier.weight.data.mul_(scale)
        cb = FIDCallback(extractor, num_real=4, num_fake=4, cache_name="my-features", cache_dir=tmp_path / "fid")
        cb.setup(None, None, "fit")
        keys.append(key(cb, dm))
    assert keys[0] == keys[1] != keys[2]


class ReplayGAN(torch.nn.Module):
    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images, self.device = images, torch.device("cpu")

    def sample_latent(self, n, generator=None):
        return torch.arange(n, dtype=torch.float32)[:, None]

    def sample(self, z):
        return self.images[z[:, 0].long()]


def test_inverted_calligraphy_gets_its_own_real_statistics(tmp_path):
    data = write_images(tmp_path / "data")
    fake = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    extractor = MNISTClassifier.pretrained()

    def run(invert: bool, forbid_recompute: bool = False):
        dm = CalligraphyDataModule(data, image_size=16, invert=invert, cache_dir=tmp_path / "cache",
                                   preprocess_workers=0)  # fmt: skip
        dm.setup()
        cb = FIDCallback("mnist", num_real=6, num_fake=4, cache_dir=tmp_path / "fid")
        cb.setup(None, None, "fit")
        if forbid_recompute:
            cb._real_images = lambda trainer: pytest.fail("the cached real statistics were not used")
        trainer = SimpleNamespace(datamodule=dm, global_rank=0, world_size=1, is_global_zero=True,
                                  strategy=SimpleNamespace(reduce=lambda t, reduce_op: t))  # fmt: skip
        cb.evaluate(trainer, ReplayGAN(fake))
        return dm, cb.fid.real_features_sum.clone()

    plain_dm, plain = run(invert=False)
    inverted_dm, inverted = run(invert=True)
    with torch.no_grad():  # computed here, independently of any cache
        for dm, stats in ((plain_dm, plain), (inverted_dm, inverted)):
            expected = extractor(float_images(dm.train_set)).double().sum(0)
            torch.testing.assert_close(stats, expected, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(plain, inverted)
    assert len(list((tmp_path / "fid").glob("real-mnist-6-*.pt"))) == 2
    _, again = run(invert=True, forbid_recompute=True)  # the same datamodule again: the cache is used
    torch.testing.assert_close(again, inverted)


def test_data_without_an_identity_is_not_cached(tmp_path):
    cb = FIDCallback("mnist", num_real=4, num_fake=4, cache_dir=tmp_path / "fid")
    cb.setup(None, None, "fit")
    assert cb.cache_path(SimpleNamespace(datamodule=None)) is None  # bare dataloaders
    assert cb.cache_path(SimpleNamespace(datamodule=SimpleNamespace(data_dir="x"))) is None
    assert os.listdir(tmp_path) == []

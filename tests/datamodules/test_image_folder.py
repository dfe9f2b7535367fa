"""ImageFolderDataModule and the cache every folder datamodule shares."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from data_testing import write_cat_face
from PIL import Image

from lit_gans.datamodules import CatFacesDataModule, ImageFolderDataModule
from lit_gans.datamodules import preprocessing
from lit_gans.datamodules.base import float_images


def write_images(folder, n=3, size=(60, 40), color=(200, 30, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, color).save(folder / f"img{i}.png")


def module(tmp_path, data_dir, **kwargs):
    kwargs.setdefault("preprocess_workers", 0)
    dm = ImageFolderDataModule(data_dir, cache_dir=tmp_path / "cache", batch_size=2, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.mark.parametrize("channels", [1, 3])
def test_any_folder_to_square_tensors(tmp_path, channels):
    write_images(tmp_path / "raw" / "nested", n=4)
    dm = module(tmp_path, tmp_path / "raw", image_size=32, channels=channels)
    images = float_images(dm.train_set)
    assert images.shape == (4, channels, 32, 32) and dm.image_shape == (channels, 32, 32)
    assert images.min() >= -1 and images.max() <= 1 and dm.num_classes is None


def test_crop_keeps_the_centre_and_pad_keeps_everything(tmp_path):
    image = Image.new("L", (90, 30), 255)
    image.paste(0, (0, 0, 30, 30))  # black left third, white elsewhere
    (tmp_path / "raw").mkdir()
    image.save(tmp_path / "raw" / "a.png")
    crop = module(tmp_path, tmp_path / "raw", image_size=30, channels=1, resize="crop").train_set.float_images()[0, 0]
    assert crop.min() > 0.9  # the black third is outside the central square
    pad = module(tmp_path, tmp_path / "raw", image_size=30, channels=1, resize="pad").train_set.float_images()[0, 0]
    assert (pad < -0.9).sum() > 0 and (pad[:, :8] < -0.9).float().mean() > 0.2  # black block kept, left


def test_class_subfolders_become_labels(tmp_path):
    write_images(tmp_path / "raw" / "cats", n=2)
    write_images(tmp_path / "raw" / "dogs", n=3)
    write_images(tmp_path / "raw", n=1)  # a file outside any class folder
    dm = module(tmp_path, tmp_path / "raw", image_size=16, labels=True)
    assert dm.classes == ["cats", "dogs"] and dm.num_classes == 2
    assert dm.train_set.tensors[1].tolist() == [0, 0, 1, 1, 1]
    assert dm.summary["skipped_by_reason"] == {"not_in_a_class_folder": 1}


def test_missing_folder_and_empty_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir='.*nowhere' is not a folder"):
        module(tmp_path, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="found no input images"):
        module(tmp_path, tmp_path / "empty")


def test_cache_is_reused_then_rebuilt_when_parameters_or_files_change(tmp_path, monkeypatch):
    write_cat_face(tmp_path / "raw", "00000001_000.jpg")
    first = CatFacesDataModule(tmp_path / "raw", image_size=32, min_size=32, cache_dir=tmp_path / "c", preprocess_workers=0)
    path = first.prepare_data()
    assert path.exists() and path.with_name(path.name + ".summary.json").exists()

    calls = []
    real = preprocessing.preprocess
    monkeypatch.setattr("lit_gans.datamodules.image_folder.preprocess", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = CatFacesDataModule(tmp_path / "raw", image_size=32, min_size=32, cache_dir=tmp_path / "c", preprocess_workers=0)
    assert again.prepare_data() == path and calls == []  # reused: nothing decoded
    again.setup()
    assert torch.equal(again.train_set.tensors[0], _load(first))

    other = CatFacesDataModule(tmp_path / "raw", image_size=32, min_size=40, cache_dir=tmp_path / "c", preprocess_workers=0)
    assert other.prepare_data() != path and calls == [1]  # new parameters: new cache
    write_cat_face(tmp_path / "raw", "00000001_001.jpg")
    assert first.prepare_data() != path and calls == [1, 1]  # a new file: new cache


def _load(dm):
    dm.setup()
    return dm.train_set.tensors[0]


def test_interrupted_cache_write_leaves_no_cache_that_would_be_read(tmp_path, monkeypatch):
    write_cat_face(tmp_path / "raw", "00000001_000.jpg")
    dm = CatFacesDataModule(tmp_path / "raw", image_size=32, min_size=32, cache_dir=tmp_path / "c", preprocess_workers=0)

    def killed(src, dst):  # the process dies between writing the temporary file and renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    monkeypatch.undo()
    assert list((tmp_path / "c").glob("*.pt")) == []  # no cache under the name that is read, no leftovers
    assert list((tmp_path / "c").iterdir()) == []
    # a cache file truncated by some other means is detected and rebuilt rather than read
    path = dm.prepare_data()
    path.write_bytes(path.read_bytes()[:100])
    assert preprocessing.load_cache(path) is None
    assert dm.prepare_data() == path and preprocessing.load_cache(path) is not None


def test_parallel_preprocessing_gives_the_same_tensors(tmp_path):
    for i in range(6):
        write_cat_face(tmp_path / "raw", f"00000001_00{i}.jpg", angle_deg=7 * i)
    serial = CatFacesDataModule(tmp_path / "raw", image_size=32, min_size=32, cache_dir=tmp_path / "a", preprocess_workers=0)
    parallel = CatFacesDataModule(tmp_path / "raw", image_size=32, min_size=32, cache_dir=tmp_path / "b", preprocess_workers=2)
    assert torch.equal(_load(serial), _load(parallel))
    np.testing.assert_array_equal(serial.train_set.tensors[1].numpy(), parallel.train_set.tensors[1].numpy())


def test_class_count_and_names_are_known_before_setup(tmp_path):
    write_images(tmp_path / "raw" / "cats", n=2)
    write_images(tmp_path / "raw" / "dogs", n=3)
    dm = ImageFolderDataModule(tmp_path / "raw", image_size=16, labels=True, cache_dir=tmp_path / "cache")
    assert dm.num_classes == 2 and dm.class_names == ["cats", "dogs"]  # the CLI links num_classes at construction
    assert ImageFolderDataModule(tmp_path / "raw", image_size=16, cache_dir=tmp_path / "cache").num_classes is None
    dm = module(tmp_path, tmp_path / "raw", image_size=16, labels=True)
    assert dm.class_counts().tolist() == [2, 3]

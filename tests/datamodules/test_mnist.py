"""MNISTDataModule on the real MNIST files in torchvision's raw layout."""

import gzip
import os
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import torch
SHARED_MNIST = Path(os.environ.get("LIT_GANS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / "mnist"

from lit_gans.datamodules import MNISTDataModule
from lit_gans.datamodules.base import float_images


def raw_digits() -> np.ndarray:
    with gzip.open(SHARED_MNIST / "t10k-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)


def test_tensors_in_minus_one_one_in_memory_with_labels(mnist_dir):
    dm = MNISTDataModule(mnist_dir, download=False, batch_size=32)
    assert dm.image_shape == (1, 28, 28) and dm.num_classes == 10
    dm.prepare_data()
    dm.setup("fit")
    images, labels = dm.train_set.tensors  # held as one uint8 tensor, not decoded per item
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0], torch.from_numpy(raw_digits()))  # exactly the raw bytes
    floats = float_images(dm.train_set)  # what the model sees: x / 127.5 - 1
    assert floats.dtype == torch.float32 and floats.min() == -1 and floats.max() == 1
    assert torch.allclose(floats[:, 0], torch.from_numpy(raw_digits()).float() / 127.5 - 1)
    assert set(labels.unique().tolist()) == set(range(10))
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and y.shape == (32,)


def test_resize_and_deterministic_validation_split(mnist_dir):
    dm = MNISTDataModule(mnist_dir, download=False, image_size=32, val_split=0.1, seed=7)
    assert dm.image_shape == (1, 32, 32)
    dm.setup()
    assert len(dm.train_set) == 9000 and len(dm.val_set) == 1000
    assert float_images(dm.train_set).shape[1:] == (1, 32, 32)
    assert float_images(dm.train_set).abs().max() <= 1
    again = MNISTDataModule(mnist_dir, download=False, image_size=32, val_split=0.1, seed=7)
    again.setup()
    assert torch.equal(dm.val_set.tensors[1], again.val_set.tensors[1])


def test_fashion_mnist_by_parameter(mnist_dir):
    dm = MNISTDataModule(mnist_dir, dataset="fashion_mnist", download=False)
    dm.setup()
    assert len(dm.train_set) == 10_000


def test_gz_archives_are_extracted_without_network(mnist_gz, monkeypatch):
    from torchvision.datasets import MNIST

    # torchvision skips the download of an archive whose md5 matches its list; the test split's archives are the
    # official ones, the stand-in "train" archives get their own md5 listed
    digest = {n: hashlib.md5((mnist_gz / "MNIST" / "raw" / n).read_bytes()).hexdigest() for n, _ in MNIST.resources}
    assert digest["t10k-images-idx3-ubyte.gz"] == "9fb629c4189551a2d022fa330f9573f3"
    monkeypatch.setattr(MNIST, "resources", [(n, digest[n]) for n, _ in MNIST.resources])
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # any download attempt would fail
    dm = MNISTDataModule(mnist_gz, download=True)
    dm.prepare_data()
    dm.setup()
    assert len(dm.train_set) == 10_000


def test_missing_files_fail_at_once_naming_them(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as err:
        MNISTDataModule(tmp_path / "nowhere", download=False).prepare_data()
    message = str(err.value)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        assert str(tmp_path / "nowhere" / "MNIST" / "raw" / name) in message
    # with download=True and no network (an unreachable mirror), the same message, quickly
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="download failed"):
        MNISTDataModule(tmp_path / "offline", download=True).prepare_data()
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("kwargs,match", [({"dataset": "emnist"}, "dataset='emnist'"), ({"batch_size": 0}, "batch_size=0"), ({"image_size": -4}, "image_size=-4")])
def test_bad_arguments_name_the_parameter(mnist_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MNISTDataModule(mnist_dir, **kwargs)


def test_batch_larger_than_dataset_is_an_error(mnist_dir):
    dm = MNISTDataModule(mnist_dir, download=False, batch_size=20_000)
    with pytest.raises(ValueError, match="batch_size=20000"):
        dm.train_dataloader()


def corrupted_copy(mnist_dir, tmp_path, name, corrupt):
    """A data_dir with the real MNIST files of ``mnist_dir`` (all four, as torchvision wants), ``name`` rewritten by
    ``corrupt``."""
    import shutil

    raw = tmp_path / "data" / "MNIST" / "raw"
    shutil.copytree(mnist_dir / "MNIST" / "raw", raw)
    path = raw / name
    path.write_bytes(corrupt(path.read_bytes()))
    return tmp_path / "data", path


def test_corrupt_label_header_is_a_bad_magic_number_naming_the_file(mnist_dir, tmp_path):
    data_dir, path = corrupted_copy(mnist_dir, tmp_path, "train-labels-idx1-ubyte", lambda b: b"\x00\x00\x09\x07" + b[4:])
    with pytest.raises(ValueError) as err:
        MNISTDataModule(data_dir, download=False).prepare_data()
    message = str(err.value)
    assert message.startswith("mnist: ") and str(path) in message and "bad magic number 0x00000907" in message
    assert "could not find" not in message


def test_truncated_file_says_truncated_with_the_sizes_not_missing(mnist_dir, tmp_path):
    original = (mnist_dir / "MNIST" / "raw" / "train-images-idx3-ubyte").stat().st_size
    data_dir, path = corrupted_copy(mnist_dir, tmp_path, "train-images-idx3-ubyte", lambda b: b[: len(b) - 1000])
    dm = MNISTDataModule(data_dir, download=False)
    for step in (dm.prepare_data, dm.setup):
        with pytest.raises(ValueError) as err:
            step()
        message = str(err.value)
        assert message.startswith("mnist: ") and str(path) in message
        assert f"truncated: expected {original} bytes" in message and f"found {original - 1000}" in message
        assert "could not find" not in message


def test_images_and_labels_that_disagree_in_count_are_refused(mnist_dir, tmp_path):
    # a well-formed labels file with one label fewer than there are images
    def drop_last_label(b):
        count = int.from_bytes(b[4:8], "big")
        return b[:4] + (count - 1).to_bytes(4, "big") + b[8:-1]

    data_dir, path = corrupted_copy(mnist_dir, tmp_path, "train-labels-idx1-ubyte", drop_last_label)
    with pytest.raises(ValueError) as err:
        MNISTDataModule(data_dir, download=False).setup()
    message = str(err.value)
    n = len(raw_digits())
    assert message.startswith("mnist: images and labels disagree in count") and str(path) in message
    assert f"{n} images" in message and f"{n - 1} labels" in message


def test_class_names_and_counts(mnist_dir):
    assert MNISTDataModule(mnist_dir, download=False).class_names == [str(d) for d in range(10)]
    assert MNISTDataModule(mnist_dir, dataset="fashion_mnist", download=False).class_names[:2] == ["T-shirt/top", "Trouser"]
    dm = MNISTDataModule(mnist_dir, download=False)
    dm.setup()
    assert torch.equal(dm.class_counts(), torch.bincount(dm.train_set.tensors[1], minlength=10))
    assert dm.class_counts().sum() == 10_000


def test_the_test_split_is_the_t10k_files_read_like_the_training_images(mnist_dir, tmp_path):
    # training files of the first 1000 digits, test files of all 10k: the two splits tell apart
    def first_thousand(b):
        header = 16 if b[3] == 3 else 8
        per_item = 784 if b[3] == 3 else 1
        return b[:4] + (1000).to_bytes(4, "big") + b[8:header] + b[header : header + 1000 * per_item]

    data_dir, _ = corrupted_copy(mnist_dir, tmp_path, "train-images-idx3-ubyte", first_thousand)
    labels = data_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(first_thousand(labels.read_bytes()))
    dm = MNISTDataModule(data_dir, download=False, image_size=32)
    dm.setup()
    assert len(dm.train_set) == 1000
    images, targets = float_images(dm.test_split()), dm.test_split().labels
    assert images.shape == (10_000, 1, 32, 32) and images.abs().max() <= 1  # resized as the training images
    assert torch.equal(images[:1000], float_images(dm.train_set)) and len(targets) == 10_000
    assert dm.test_split() is dm.test_split()  # read once
    assert MNISTDataModule(data_dir, train=False, download=False).test_split() is None  # trains on it


def archives_only(mnist_gz: Path, target: Path) -> None:
    """A copy of the ``.gz`` archives of ``mnist_gz`` (without the files another test may have extracted there)."""
    import shutil

    shutil.copytree(mnist_gz, target, ignore=lambda folder, names: [n for n in names if n.endswith("-ubyte")])


@pytest.mark.parametrize("download", [True, False])
def test_a_truncated_gz_archive_is_reported_damaged_by_name_not_missing(mnist_gz, tmp_path, monkeypatch, download):
    from torchvision.datasets import MNIST

    archives_only(mnist_gz, tmp_path / "data")
    raw = tmp_path / "data" / "MNIST" / "raw"
    digest = {n: hashlib.md5((raw / n).read_bytes()).hexdigest() for n, _ in MNIST.resources}
    monkeypatch.setattr(MNIST, "resources", [(n, digest[n]) for n, _ in MNIST.resources])  # the intact archives
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # no network
    archive = raw / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:-5000])
    dm = MNISTDataModule(tmp_path / "data", download=download)
    for step in (dm.prepare_data, dm.setup):
        with pytest.raises(ValueError) as err:
            step()
        message = str(err.value)
        assert message.startswith(f"mnist: {archive} is damaged") and "could not find" not in message
        assert "Delete it and download it again" in message


def test_an_archive_that_is_not_the_listed_file_is_reported_by_name(mnist_gz, tmp_path, monkeypatch):
    # a complete gzip whose checksum is not torchvision's: with download=True it would be fetched again, offline it
    # cannot be; say which file it is
    from torchvision.datasets import MNIST

    archives_only(mnist_gz, tmp_path / "data")
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    archive = tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"  # the test split's, as a stand-in
    with pytest.raises(ValueError) as err:
        MNISTDataModule(tmp_path / "data", download=True).prepare_data()
    message = str(err.value)
    assert message.startswith(f"mnist: {archive} is damaged or another file: its md5 is ")
    assert "could not find" not in message

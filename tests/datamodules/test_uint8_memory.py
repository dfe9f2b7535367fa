"""In-memory datamodules hold uint8 images (a memory-mapped cache that the ranks of a machine share) and convert each
batch to float in [-1, 1] on its device: the batches, the metrics' real images and a resumed epoch are bitwise
those of the float32 datamodules before, and the memory a process spends on the data is the uint8 dataset, once
per machine."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_testing import DatasetMemory, MeasuredImageFolder, disk_full_after, proportional_set_size, write_random_images
from gan_testing import SaveAt, tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer

from lit_gans import DCGAN
from lit_gans.callbacks import DiversityMonitor, FIDCallback
from lit_gans.callbacks.classifier import labelled_tensors, real_test_set
from lit_gans.cli import main
from lit_gans.datamodules import ImageFolderDataModule, MNISTDataModule
from lit_gans.datamodules.base import float_images, uint8_to_unit_range
from lit_gans.datamodules.preprocessing import load_cache


# ---------------------------------------------------------------------------------------------- today's floats
def todays_floats(images: torch.Tensor) -> torch.Tensor:
    """The float32 images the datamodules held before: ``to_unit_range`` of uint8, ``x / 127.5 - 1``."""
    return images.float().div_(127.5).sub_(1.0)


def todays_split(n: int, val_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation indices: the last ``n - round(n * val_split)`` of a permutation seeded ``seed``."""
    n_val = round(n * val_split)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


def todays_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, epochs: int) -> list:
    """The training batches of ``epochs`` epochs: each epoch a permutation seeded ``seed * 100_003 + epoch``,
    whole batches only."""
    batches = []
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            batches.append((images[index], labels[index]))
    return batches


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype == torch.float32 and a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


class RecordBatches(Callback):
    """The batches as the model receives them (after ``on_after_batch_transfer``)."""

    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append((batch[0].clone(), batch[1].clone()))


def assert_same_batches(received: list, expected: list) -> None:
    assert len(received) == len(expected)
    for i, ((x, y), (ex, ey)) in enumerate(zip(received, expected)):
        assert bitwise_equal(x, ex), f"batch {i}: images differ from today's (max {(x - ex).abs().max().item()})"
        assert torch.equal(y, ey), f"batch {i}: labels differ"


def test_the_conversion_is_todays_arithmetic_for_every_byte():
    every_byte = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert bitwise_equal(uint8_to_unit_range(every_byte), todays_floats(every_byte))
    floats = torch.rand(2, 1, 4, 4) * 2 - 1
    assert uint8_to_unit_range(floats) is floats  # already in [-1, 1]
    with pytest.raises(TypeError, match="int16"):
        uint8_to_unit_range(every_byte.short())


# ---------------------------------------------------------------------------------------------- image folders
BATCH, SEED, VAL_SPLIT = 4, 3, 0.25


def folder_module(tmp_path) -> ImageFolderDataModule:
    return ImageFolderDataModule(
        tmp_path / "raw", image_size=8, channels=3, labels=True, cache_dir=tmp_path / "cache", preprocess_workers=0,
        batch_size=BATCH, val_split=VAL_SPLIT, seed=SEED,
    )  # fmt: skip


def tiny_dcgan(image_shape) -> DCGAN:
    return DCGAN(image_shape=image_shape, latent_dim=4, generator_width=4, discriminator_width=4)


@pytest.fixture
def class_folders(tmp_path):
    write_random_images(tmp_path / "raw" / "a", 14, 12, seed=1)
    write_random_images(tmp_path / "raw" / "b", 18, 12, seed=2)  # 32 images: 8 held out, 6 batches of 4 an epoch
    return tmp_path


def test_an_image_folder_gives_todays_batches_bitwise_and_resumes_mid_epoch(class_folders, tmp_path):
    cache = folder_module(tmp_path).prepare_data()
    stored = torch.load(cache, weights_only=True)  # the uint8 source, read on its own
    train, _ = todays_split(len(stored["images"]), VAL_SPLIT, SEED)
    images, labels = todays_floats(stored["images"])[train], stored["labels"][train]
    expected = todays_batches(images, labels, BATCH, SEED, epochs=2)

    straight = RecordBatches()
    Trainer(**tiny_trainer_kwargs(max_epochs=2, callbacks=[straight])).fit(tiny_dcgan((3, 8, 8)), folder_module(tmp_path))
    assert_same_batches(straight.batches, expected)

    first, ckpt = RecordBatches(), tmp_path / "mid.ckpt"
    Trainer(**tiny_trainer_kwargs(max_epochs=2, callbacks=[first, SaveAt(ckpt, 2)])).fit(tiny_dcgan((3, 8, 8)), folder_module(tmp_path))
    resumed = RecordBatches()
    Trainer(**tiny_trainer_kwargs(max_epochs=2, callbacks=[resumed])).fit(tiny_dcgan((3, 8, 8)), folder_module(tmp_path), ckpt_path=ckpt)
    assert_same_batches(first.batches + resumed.batches, expected)  # the interrupted epoch goes on at batch 3


def test_the_cache_is_memory_mapped_uint8_and_its_splits_index_it(class_folders, tmp_path):
    dm = folder_module(tmp_path)
    dm.setup()
    cache = dm.cache_path(dm.collect_inputs()[3])
    with open("/proc/self/maps") as f:
        assert str(cache) in f.read()  # mapped, not read into this process's own memory
    source = dm.train_set.source_images
    assert source.dtype == torch.uint8 and source.shape == (32, 3, 8, 8)
    assert dm.val_set.source_images.untyped_storage().data_ptr() == source.untyped_storage().data_ptr()
    assert len(dm.train_set) == 24 and len(dm.val_set) == 8


def test_an_older_cache_is_rebuilt_with_a_note(class_folders, tmp_path, caplog):
    dm = folder_module(tmp_path)
    cache = dm.prepare_data()
    torch.save({"version": 2, "images": torch.zeros(1)}, cache)
    with caplog.at_level(logging.INFO):
        folder_module(tmp_path).setup()
    notes = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert notes == [f"ImageFolderDataModule: the cache {cache} is unreadable or from an older version: rebuilding it"]
    assert load_cache(cache)["version"] != 2


def test_a_full_disk_while_writing_the_cache_is_one_line(class_folders, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    disk_full_after(monkeypatch, tmp_path / "cache", files=0)
    with pytest.raises(SystemExit) as exit_info:
        main([
            "fit", "--model", "lit_gans.DCGAN", "--model.init_args.latent_dim=4",
            "--model.init_args.generator_width=4", "--model.init_args.discriminator_width=4",
            "--model.init_args.max_generator_steps=1",
            "--data", "lit_gans.datamodules.ImageFolderDataModule", f"--data.init_args.data_dir={tmp_path / 'raw'}",
            "--data.init_args.image_size=8", f"--data.init_args.cache_dir={tmp_path / 'cache'}",
            "--data.init_args.preprocess_workers=0",
            "--data.init_args.batch_size=4", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
        ])  # fmt: skip
    err = capsys.readouterr().err.split("\r")[-1].strip()  # after the progress bar, which erases itself
    assert exit_info.value.code == 2 and "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"lit-gans: error: cannot write {tmp_path / 'cache'}") and "No space left on device" in err, err
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.suffix == ".pt" or ".tmp-" in p.name]


# ---------------------------------------------------------------------------------------------- MNIST
def todays_mnist(mnist_dir, image_size: int) -> torch.Tensor:
    """Today's float digits of the fixture's raw file: converted, then resized (antialiased bilinear) and clamped."""
    raw = np.fromfile(mnist_dir / "MNIST" / "raw" / "train-images-idx3-ubyte", np.uint8, offset=16)
    images = todays_floats(torch.from_numpy(raw).view(-1, 1, 28, 28))
    return F.interpolate(images, size=image_size, mode="bilinear", antialias=True).clamp_(-1, 1)


def test_resized_mnist_gives_todays_batches_and_metric_images_bitwise(mnist_dir):
    kwargs = dict(download=False, image_size=32, val_split=0.1, seed=SEED, batch_size=16)
    all_images = todays_mnist(mnist_dir, 32)
    targets = torch.from_numpy(
        np.fromfile(mnist_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.uint8, offset=8).astype(np.int64)
    )
    train, val = todays_split(len(all_images), 0.1, SEED)
    images, labels = all_images[train], targets[train]
    record, dm = RecordBatches(), MNISTDataModule(mnist_dir, **kwargs)
    Trainer(**tiny_trainer_kwargs(max_epochs=1, limit_train_batches=4, callbacks=[record])).fit(tiny_dcgan((1, 32, 32)), dm)
    assert_same_batches(record.batches, todays_batches(images, labels, 16, SEED, epochs=1)[:4])

    # what the metrics read straight from the datamodule: the training, validation and test images
    assert dm.train_set.source_images.dtype == torch.uint8 and dm.train_set.source_images.shape[-1] == 28
    classifier_images, classifier_labels = labelled_tensors(dm.train_set)
    assert bitwise_equal(classifier_images, images) and torch.equal(classifier_labels, labels)
    assert bitwise_equal(float_images(dm.val_set), all_images[val])
    test_images, _, _ = real_test_set(dm, "CAS")  # the t10k file, which the fixture fills with the same digits
    assert bitwise_equal(test_images, all_images)
    trainer = SimpleNamespace(datamodule=dm)
    assert bitwise_equal(FIDCallback("mnist", num_real=300)._real_images(trainer), images[:300])
    diversity = DiversityMonitor(num_samples=64, seed=5)
    drawn = torch.randperm(len(images), generator=torch.Generator().manual_seed(5))[:64]
    assert bitwise_equal(diversity._real(trainer), images[drawn])


# ---------------------------------------------------------------------------------------------- memory
N_IMAGES, SIZE = 2000, 128
UINT8_BYTES = N_IMAGES * 3 * SIZE * SIZE  # 98 MB


@pytest.fixture(scope="module")
def cached_folder(tmp_path_factory) -> dict:
    """2,000 random 128 px RGB images (BMP files) and their cache, built before the fits (as for every run after the first)."""
    root = tmp_path_factory.mktemp("memory")
    write_random_images(root / "images", N_IMAGES, SIZE, suffix=".bmp")
    kwargs = dict(data_dir=root / "images", image_size=SIZE, cache_dir=root / "cache", batch_size=8, preprocess_workers=0)
    MeasuredImageFolder(**kwargs).prepare_data()
    return kwargs


def data_memory(kwargs: dict, folder, devices: int) -> list[int]:
    """Each process's growth of proportional set size from its data setup to every image of its share read."""
    model = DCGAN(image_shape=(3, SIZE, SIZE), latent_dim=4, generator_width=4, discriminator_width=4, max_generator_steps=1)
    strategy = "ddp_spawn_find_unused_parameters_true" if devices > 1 else "auto"
    trainer = Trainer(**tiny_trainer_kwargs(devices=devices, strategy=strategy, callbacks=[DatasetMemory(str(folder))]))
    trainer.fit(model, MeasuredImageFolder(**kwargs))
    return [int(p.read_text()) for p in sorted(folder.glob("rank*.txt"))]


def describe(grown: list[int]) -> str:
    ranks = ", ".join(f"{g / 2**20:.0f} MB" for g in grown)
    return f"PSS grew by {ranks}: {sum(grown) / UINT8_BYTES:.2f}x the {UINT8_BYTES / 2**20:.0f} MB of uint8 images"


def test_one_process_holds_the_images_once_as_uint8(cached_folder, tmp_path):
    assert proportional_set_size() > 0
    grown = data_memory(cached_folder, tmp_path, devices=1)
    assert len(grown) == 1
    assert 0.5 <= sum(grown) / UINT8_BYTES <= 1.2, describe(grown)  # at least half: the images were read


def test_two_ddp_ranks_share_one_copy_of_the_images(cached_folder, tmp_path):
    grown = data_memory(cached_folder, tmp_path, devices=2)
    assert len(grown) == 2
    assert 0.5 <= sum(grown) / UINT8_BYTES <= 1.3, describe(grown)

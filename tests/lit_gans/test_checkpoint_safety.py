"""No file the package reads back runs code: checkpoints (resume candidates, the divergence rollback, the W&B run
lookup, generate) and the datamodule cache load with ``weights_only=True``; a file that needs an unrestricted load
is refused in one line. Each test plants a pickle whose unpickling would write a marker file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_testing import plant
from gan_testing import TINY, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from lit_gans import DCGAN
from lit_gans.checkpoints import UnsafeCheckpointError, checkpoint_problem, load_checkpoint_file
from lit_gans.datamodules import ImageFolderDataModule
from lit_gans.gan import NonFiniteLossError
from lit_gans.generate import load_model
from lit_gans.loggers import wandb_run_in_checkpoint


@pytest.fixture
def marker(tmp_path) -> Path:
    """The marker's path, after checking that the payload does run when loaded without restrictions."""
    probe = tmp_path / "probe"
    torch.load(plant(tmp_path / "probe.ckpt", probe), weights_only=False)
    assert probe.read_text() == "ran"
    (tmp_path / "probe.ckpt").unlink()
    return tmp_path / "marker"


def test_a_file_that_needs_an_unrestricted_load_is_refused_in_one_line(tmp_path, marker):
    path = plant(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint_file(path)
    assert str(err.value).startswith(f"{path} is refused: it refers to exec,")
    assert "\n" not in str(err.value)
    assert checkpoint_problem(path).startswith("refused: it refers to exec,")
    with pytest.raises(ValueError, match=rf"^ckpt_path={path} is refused: it refers to exec,"):
        load_model(path)
    assert not marker.exists()


def test_the_wandb_run_lookup_does_not_unpickle_objects(tmp_path, marker):
    path = plant(tmp_path / "last.ckpt", marker, {"lit_gans_wandb_run": {"id": "abc", "project": "p"}})
    with pytest.raises(UnsafeCheckpointError):
        wandb_run_in_checkpoint(path)
    assert not marker.exists()
    torch.save({"lit_gans_wandb_run": {"id": "abc", "project": "p"}}, tmp_path / "good.ckpt")
    assert wandb_run_in_checkpoint(tmp_path / "good.ckpt") == {"id": "abc", "project": "p"}


def test_a_planted_datamodule_cache_is_rebuilt_without_running_it(tmp_path, marker):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / f"{i}.png")
    dm = ImageFolderDataModule(images, image_size=8, cache_dir=tmp_path / "cache", preprocess_workers=0)
    cache = dm.prepare_data()
    genuine = cache.read_bytes()
    plant(cache, marker, {"version": torch.load(cache, weights_only=True)["version"]})
    fresh = ImageFolderDataModule(images, image_size=8, cache_dir=tmp_path / "cache", preprocess_workers=0)
    fresh.setup()
    assert not marker.exists()
    assert len(fresh.train_set) == 4 and cache.read_bytes() == genuine  # rebuilt, same content
    # and a genuine cache is read back, not rebuilt
    mtime = cache.stat().st_mtime_ns
    ImageFolderDataModule(images, image_size=8, cache_dir=tmp_path / "cache", preprocess_workers=0).prepare_data()
    assert cache.stat().st_mtime_ns == mtime


class NaNAfter(DCGAN):
    """A NaN discriminator loss from generator step ``start`` on."""

    def __init__(self, start: int, **kwargs):
        super().__init__(**kwargs)
        self.nan_start = start

    def discriminator_loss(self, step):
        loss, logs = super().discriminator_loss(step)
        return (loss * float("nan") if self.generator_step >= self.nan_start else loss), logs


class PlantAfterSave(ModelCheckpoint):
    """Plants a payload file, newer than every genuine checkpoint, beside each one it saves."""

    def __init__(self, marker: Path, **kwargs):
        super().__init__(**kwargs)
        self.marker = marker

    def _save_checkpoint(self, trainer, filepath):
        super()._save_checkpoint(trainer, filepath)
        planted = plant(Path(filepath).with_name("zz-newest.ckpt"), self.marker)
        os.utime(planted, (time.time() + 60, time.time() + 60))  # the newest, whatever the clock's resolution


def test_the_divergence_rollback_never_runs_a_planted_checkpoint(tmp_path, marker):
    model = NaNAfter(start=5, max_nonfinite_steps=2, on_nonfinite="rollback", max_rollbacks=1, **TINY)
    checkpoints = PlantAfterSave(marker, dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[checkpoints], enable_checkpointing=True))
    with pytest.warns(UserWarning, match=r"zz-newest\.ckpt: refused: it refers to exec,"):
        with pytest.raises(NonFiniteLossError):
            trainer.fit(model, RandomImages(n=256))
    assert model._rollbacks == 1  # rolled back to a genuine checkpoint
    assert not marker.exists()

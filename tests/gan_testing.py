"""Small pieces the engine tests share: tiny networks and a random in-memory datamodule."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_gans.datamodules import ImageDataModule


class RandomImages(ImageDataModule):
    """``n`` random images in [-1, 1] of ``image_shape``; picklable for ddp_spawn."""

    def __init__(self, n: int = 64, image_shape=(1, 8, 8), batch_size: int = 8) -> None:
        super().__init__(batch_size=batch_size)
        self.n, self.image_shape = n, tuple(image_shape)

    def setup(self, stage=None) -> None:
        g = torch.Generator().manual_seed(123)
        self._set_tensors(torch.rand(self.n, *self.image_shape, generator=g) * 2 - 1, torch.zeros(self.n).long())

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup()
        # no shuffle: two runs see the same batches
        return DataLoader(self.train_set, batch_size=self.batch_size, drop_last=True)


def tiny_trainer_kwargs(**overrides):
    kwargs = dict(
        max_epochs=-1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    kwargs.update(overrides)
    return kwargs


__all__ = ["RandomImages", "TensorDataset", "tiny_trainer_kwargs"]

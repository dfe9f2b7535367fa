"""LightningDataModules that turn raw datasets into float tensors in [-1, 1] with their image shape exposed."""

from lit_gans.datamodules.base import ImageDataModule
from lit_gans.datamodules.mnist import MNISTDataModule

__all__ = ["ImageDataModule", "MNISTDataModule"]

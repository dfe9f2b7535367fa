"""LightningDataModules that turn raw datasets into float tensors in [-1, 1] with their image shape exposed."""

from lit_gans.datamodules.base import ImageDataModule
from lit_gans.datamodules.calligraphy import CalligraphyDataModule, render_font_dataset
from lit_gans.datamodules.cat_faces import CatFacesDataModule
from lit_gans.datamodules.image_folder import CachedImageDataModule, ImageFolderDataModule
from lit_gans.datamodules.mnist import MNISTDataModule
from lit_gans.datamodules.streaming import StreamingImageDataModule, prepare_streaming

__all__ = [
    "CachedImageDataModule",
    "CalligraphyDataModule",
    "CatFacesDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "StreamingImageDataModule",
    "prepare_streaming",
    "render_font_dataset",
]

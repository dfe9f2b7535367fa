"""MNIST and Fashion-MNIST on torchvision's datasets, held in memory as one tensor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch.nn.functional as F
from torchvision import datasets

from lit_gans.datamodules.base import ImageDataModule, to_unit_range
from lit_gans.validation import check_choice, check_int

DATASETS = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}


class MNISTDataModule(ImageDataModule):
    """MNIST (or Fashion-MNIST) digits as float32 ``(N, 1, S, S)`` tensors in [-1, 1] with their labels.

    The raw files are read by torchvision from ``data_dir/<MNIST|FashionMNIST>/raw`` (``train-images-idx3-ubyte``
    etc., un-gzipped, or the ``.gz`` archives with ``download=True``, which then only extracts them). The whole
    split is decoded once and kept in memory (47 MB for 60k digits), so no image is decoded per item.

    Args:
        data_dir: folder that holds (or will hold) torchvision's ``MNIST/raw`` layout.
        dataset: ``mnist`` or ``fashion_mnist``.
        train: use the 60k training split (``True``) or the 10k test split.
        download: fetch the files from torchvision's mirrors when they are missing.
        image_size: resize to ``image_size x image_size`` (antialiased bilinear) once at setup; ``None`` keeps 28.
        batch_size, num_workers, val_split, seed: see :class:`ImageDataModule`.

    Example::

        >>> dm = MNISTDataModule("data", image_size=32)
        >>> dm.image_shape
        (1, 32, 32)
    """

    num_classes = 10

    def __init__(
        self,
        data_dir: str | os.PathLike = "data",
        dataset: str = "mnist",
        train: bool = True,
        download: bool = True,
        image_size: Optional[int] = None,
        batch_size: int = 64,
        num_workers: int = 0,
        val_split: float = 0.0,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, val_split=val_split, seed=seed)
        self.data_dir = Path(data_dir)
        self.dataset = check_choice("dataset", dataset, tuple(DATASETS))
        self.train = train
        self.download = download
        self.image_size = 28 if image_size is None else check_int("image_size", image_size)
        self.image_shape = (1, self.image_size, self.image_size)

    def _expected_files(self) -> list[Path]:
        cls = DATASETS[self.dataset]
        raw = self.data_dir / cls.__name__ / "raw"
        return [raw / Path(url).name.removesuffix(".gz") for url, _ in cls.resources]

    def _open(self, download: bool) -> Any:
        cls = DATASETS[self.dataset]
        try:
            return cls(str(self.data_dir), train=self.train, download=download)
        except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found" or a failed download
            files = "\n  ".join(str(p) for p in self._expected_files())
            how = "the download failed (no network?)" if download else "download=False"
            raise FileNotFoundError(
                f"{self.dataset}: could not find the raw files, and {how}. Looked for:\n  {files}\n"
                f"Put these files (or their .gz archives, with download=True) there, or point data_dir elsewhere. "
                f"Cause: {err}"
            ) from err

    def prepare_data(self) -> None:
        self._open(self.download)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        ds = self._open(download=False)
        images = to_unit_range(ds.data.unsqueeze(1))
        if self.image_size != images.shape[-1]:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True).clamp_(-1, 1)
        self._set_tensors(images, ds.targets.long())


__all__ = ["MNISTDataModule"]

"""MNIST and Fashion-MNIST on torchvision's datasets, held in memory as one uint8 tensor."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from functools import partial
from pathlib import Path
from typing import Any, Optional

import torch.nn.functional as F
from torch import Tensor
from torchvision import datasets

from lit_gans.datamodules.base import ImageDataModule, ImageTensorDataset, uint8_to_unit_range
from lit_gans.validation import check_choice, check_int

DATASETS = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}
IDX_UINT8 = 0x08  # the IDX type code of unsigned bytes, the only one MNIST uses


def read_idx_header(dataset: str, path: Path, ndim: int, what: str) -> tuple[int, ...]:
    """The dimensions of an IDX file of unsigned bytes with ``ndim`` dimensions, after checking its magic number and
    that its size is exactly header + data.

    Raises:
        ValueError: starting with ``dataset`` and naming the file: "bad magic number", "truncated: expected N bytes,
            found M" or "too long: expected N bytes, found M".
    """
    size = path.stat().st_size
    header = 4 * (1 + ndim)
    with open(path, "rb") as f:
        head = f.read(header)
    expected_magic = IDX_UINT8 << 8 | ndim
    if len(head) >= 4 and int.from_bytes(head[:4], "big") != expected_magic:
        raise ValueError(
            f"{dataset}: {path} has a bad magic number 0x{int.from_bytes(head[:4], 'big'):08x} (expected "
            f"0x{expected_magic:08x}, an IDX file of {what}): the file is corrupt or not the right file. Delete it "
            "and download it again."
        )
    if len(head) < header:
        raise ValueError(
            f"{dataset}: {path} is truncated: expected at least {header} bytes (its IDX header), found {size}. "
            "Delete it and download it again."
        )
    dims = tuple(int.from_bytes(head[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(ndim))
    expected = header + math.prod(dims)
    if size != expected:
        problem = "truncated" if size < expected else "too long"
        raise ValueError(
            f"{dataset}: {path} is {problem}: expected {expected} bytes (header + {' x '.join(map(str, dims))} "
            f"{what}), found {size}. Delete it and download it again."
        )
    return dims


def check_idx_pair(dataset: str, images: Path, labels: Path) -> None:
    """Check an images/labels pair of MNIST-format IDX files: magic numbers, sizes, and equal counts.

    Raises:
        ValueError: as :func:`read_idx_header`, or "images and labels disagree in count".
    """
    image_dims = read_idx_header(dataset, images, 3, "uint8 pixels")
    (label_count,) = read_idx_header(dataset, labels, 1, "uint8 labels")
    if image_dims[0] != label_count:
        raise ValueError(
            f"{dataset}: images and labels disagree in count: {images} holds {image_dims[0]} images, {labels} "
            f"{label_count} labels. One of them is from another split or download; replace both."
        )


def check_gzip_archive(dataset: str, path: Path, md5: Optional[str] = None) -> None:
    """Check that ``path`` is a complete gzip archive (and, with ``md5``, the file torchvision lists: it would
    otherwise fetch it again, which fails offline).

    Raises:
        ValueError: starting with ``dataset`` and naming the file: "is damaged (<why>)" for a truncated or corrupt
            archive, "is damaged or another file: its md5 is X, torchvision expects Y".
    """
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as archive:
            while archive.read(1 << 20):  # to the end-of-stream marker: a truncated archive fails here
                pass
            raw.seek(0)
            for chunk in iter(lambda: raw.read(1 << 20), b""):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{dataset}: {path} is damaged ({' '.join(str(err).split())}): the archive is truncated or corrupt. "
            "Delete it and download it again."
        ) from err
    if md5 is not None and digest.hexdigest() != md5:
        raise ValueError(
            f"{dataset}: {path} is damaged or another file: its md5 is {digest.hexdigest()}, torchvision expects "
            f"{md5}. Delete it and download it again."
        )


def resized_unit_range(images: Tensor, size: int) -> Tensor:
    """uint8 images to float32 in [-1, 1] (:func:`~lit_gans.datamodules.base.uint8_to_unit_range`), resized to
    ``size x size`` (antialiased bilinear, clamped to [-1, 1]): MNIST's ``image_size``, per batch on its device."""
    images = uint8_to_unit_range(images)
    return F.interpolate(images, size=size, mode="bilinear", antialias=True).clamp_(-1, 1)


class MNISTDataModule(ImageDataModule):
    """MNIST (or Fashion-MNIST) digits with their labels, held as uint8 ``(N, 1, 28, 28)``; batches reach the model
    as float32 ``(B, 1, S, S)`` in [-1, 1].

    The raw files are read by torchvision from ``data_dir/<MNIST|FashionMNIST>/raw`` (``train-images-idx3-ubyte``
    etc., un-gzipped, or the ``.gz`` archives with ``download=True``, which then only extracts them). The whole
    split is decoded once and kept in memory as uint8 (47 MB for 60k digits), so no image is decoded per item.

    Missing files raise a ``FileNotFoundError`` listing the paths looked for; a corrupt file a ``ValueError``
    that names it and what is wrong (bad magic number, truncated, images and labels disagree in count; a ``.gz``
    archive that is truncated, corrupt or not the file torchvision lists).

    Args:
        data_dir: folder that holds (or will hold) torchvision's ``MNIST/raw`` layout.
        dataset: ``mnist`` or ``fashion_mnist``.
        train: use the 60k training split (``True``) or the 10k test split.
        download: fetch the files from torchvision's mirrors when they are missing.
        image_size: resize to ``image_size x image_size`` (antialiased bilinear, clamped to [-1, 1]), per batch on
            its device (:func:`resized_unit_range`), so that memory holds the 28x28 bytes; ``None`` keeps 28.
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
        if self.image_size != 28:
            self.to_float = partial(resized_unit_range, size=self.image_size)
        self._test_set: Optional[ImageTensorDataset] = None

    @property
    def class_names(self) -> list[str]:  # type: ignore[override]
        """``"0"`` ... ``"9"`` for the digits, torchvision's names for Fashion-MNIST."""
        return [str(i) for i in range(10)] if self.dataset == "mnist" else list(DATASETS[self.dataset].classes)

    def _expected_files(self) -> list[Path]:
        cls = DATASETS[self.dataset]
        raw = self.data_dir / cls.__name__ / "raw"
        return [raw / Path(url).name.removesuffix(".gz") for url, _ in cls.resources]

    def _split_files(self, train: bool) -> tuple[Path, Path]:
        """The raw images and labels files of the training (``train``) or the test split."""
        raw = self.data_dir / DATASETS[self.dataset].__name__ / "raw"
        prefix = "train" if train else "t10k"
        return raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"

    def _check_files(self, train: bool) -> bool:
        """Check a split's raw files when both are there (raising a ``ValueError`` that names the file and the
        problem); whether they were."""
        images, labels = self._split_files(train)
        if not (images.is_file() and labels.is_file()):
            return False
        check_idx_pair(self.dataset, images, labels)
        return True

    def _check_archives(self, download: bool) -> None:
        """Check the ``.gz`` archives of the raw files that are not extracted yet (what torchvision would extract):
        complete gzip streams, and with ``download`` the files torchvision lists (:func:`check_gzip_archive`)."""
        for url, md5 in DATASETS[self.dataset].resources:
            archive = self.data_dir / DATASETS[self.dataset].__name__ / "raw" / Path(url).name
            if archive.is_file() and not archive.with_suffix("").is_file():
                check_gzip_archive(self.dataset, archive, md5 if download else None)

    def _open(self, download: bool, train: Optional[bool] = None) -> Any:
        """torchvision's dataset of the split in use (or of ``train``: the training or the test split)."""
        cls = DATASETS[self.dataset]
        train = self.train if train is None else train
        # a corrupt file is reported as such, never as a missing one
        checked = self._check_files(train)
        self._check_archives(download)
        try:
            ds = cls(str(self.data_dir), train=train, download=download)
        except (RuntimeError, OSError, AssertionError, ValueError, TypeError) as err:
            everything_there = all(p.is_file() for p in self._expected_files())
            if self._check_files(train) and everything_there:  # the files are there (maybe just extracted)
                images, labels = self._split_files(train)
                raise ValueError(f"{self.dataset}: torchvision could not read {images} and {labels}: {err}") from err
            # torchvision: "Dataset not found" or a failed download
            files = "\n  ".join(str(p) for p in self._expected_files())
            how = "the download failed (no network?)" if download else "download=False"
            raise FileNotFoundError(
                f"{self.dataset}: could not find the raw files, and {how}. Looked for:\n  {files}\n"
                f"Put these files (or their .gz archives, with download=True) there, or point data_dir elsewhere. "
                f"Cause: {err}"
            ) from err
        if not checked:  # extracted from the .gz archives just now
            self._check_files(train)
        return ds

    def _read(self, train: bool) -> tuple[Tensor, Tensor]:
        """``(images, labels)`` of the training (``train``) or the test split as held: uint8 ``(N, 1, 28, 28)``
        (resized, if at all, per batch by :attr:`to_float`)."""
        ds = self._open(download=False, train=train)
        return ds.data.unsqueeze(1), ds.targets.long()

    def prepare_data(self) -> None:
        self._open(self.download)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        self._set_tensors(*self._read(self.train))

    def test_split(self) -> Optional[ImageTensorDataset]:
        """The 10k test split (read and resized like the training images, kept once read) when this module trains
        on the 60k training split; ``None`` with ``train=False``, whose test split is the training data itself."""
        if not self.train:
            return None
        if self._test_set is None:
            self._test_set = ImageTensorDataset(*self._read(train=False), to_float=self.to_float)
        return self._test_set


__all__ = ["MNISTDataModule", "resized_unit_range"]

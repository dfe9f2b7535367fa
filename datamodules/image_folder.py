"""Folder datamodules: preprocess once into an atomic on-disk cache, then train from it, memory-mapped as uint8.

:class:`CachedImageDataModule` is the shared machinery (cache, summary, DDP-safe preparation, augmentation,
class-balanced sampling); :class:`ImageFolderDataModule` applies it to any folder of images, and the cat-face and
calligraphy modules add their own preprocessing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler

from lit_gans.datamodules.base import ImageDataModule, _plain, dataset_labels
from lit_gans.datamodules.preprocessing import (
    SourceFile,
    cache_key,
    default_workers,
    fingerprint,
    format_summary,
    left_out_summary,
    load_cache,
    open_image,
    preprocess,
    save_cache,
    scan_folder,
    square_crop,
    square_pad,
    stack_images,
    summarize,
    to_chw_uint8,
)
from lit_gans.validation import check_choice, check_int


def default_cache_dir() -> Path:
    """``$LIT_GANS_CACHE``, else ``$XDG_CACHE_HOME/lit_gans`` (``~/.cache/lit_gans``)."""
    if os.environ.get("LIT_GANS_CACHE"):
        return Path(os.environ["LIT_GANS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lit_gans"


class CachedImageDataModule(ImageDataModule):
    """Base of the folder datamodules: inputs are preprocessed once (in ``prepare_data``, on rank 0, on all
    cores) into a cache keyed by the preprocessing parameters and the input files; every later run and every DDP
    rank maps the cache as one uint8 tensor (``torch.load(mmap=True)``): the ranks of a machine share its pages.

    Subclasses implement :meth:`collect_inputs` and :meth:`preprocess_function`, and extend :meth:`cache_params`.

    Args:
        data_dir: the raw data.
        image_size: side of the square output images.
        channels: 1 (grayscale) or 3 (RGB).
        cache_dir: where caches go (default :func:`default_cache_dir`).
        preprocess_workers: processes for preprocessing (default: all cores; 0 = in this process).
        horizontal_flip: flip half of each training batch left-right (on the batch's device, cheap).
        balanced_classes: sample classes uniformly (labelled data).
        batch_size, num_workers, val_split, seed: see :class:`ImageDataModule`.
    """

    def __init__(
        self,
        data_dir: Union[str, os.PathLike],
        image_size: int = 64,
        channels: int = 3,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        preprocess_workers: Optional[int] = None,
        horizontal_flip: bool = False,
        balanced_classes: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        val_split: float = 0.0,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, val_split=val_split, seed=seed)
        self.data_dir = Path(data_dir)
        self.image_size = check_int("image_size", image_size, minimum=4)
        self.channels = check_choice("channels", channels, (1, 3))
        self.image_shape = (channels, image_size, image_size)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.preprocess_workers = default_workers() if preprocess_workers is None else check_int(
            "preprocess_workers", preprocess_workers, minimum=0
        )
        self.horizontal_flip = horizontal_flip
        self.balanced_classes = balanced_classes
        self.classes: list[str] = []
        self.summary: Optional[dict[str, Any]] = None

    @property
    def class_names(self) -> Optional[list[str]]:  # type: ignore[override]
        """The class folders' names (calligraphy: the characters), in label order; ``None`` for unlabelled data."""
        return list(self.classes) if self.classes else None

    # ------------------------------------------------------------------ subclass API
    def collect_inputs(self) -> tuple[list[Any], list[int], list[str], list[SourceFile], dict[str, Any]]:
        """``(items, labels, classes, source files for the fingerprint, extra summary entries)``; items are
        picklable arguments of :meth:`preprocess_function`."""
        raise NotImplementedError

    def preprocess_function(self) -> Callable[[Any], np.ndarray]:
        """A picklable function ``item -> uint8 (C, S, S) array`` that raises ``Skipped`` for unusable inputs."""
        raise NotImplementedError

    def cache_params(self) -> dict[str, Any]:
        return {"module": type(self).__name__, "image_size": self.image_size, "channels": self.channels}

    # ------------------------------------------------------------------ preparation
    def _check_data_dir(self) -> None:
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"{type(self).__name__}: data_dir={str(self.data_dir)!r} is not a folder")

    def data_identity(self) -> dict[str, Any]:
        """:meth:`ImageDataModule.data_identity` plus what the preprocessing cache is keyed on: :meth:`cache_params`
        and the fingerprint of the input files (names, sizes, modification times)."""
        _, _, _, sources, _ = self.collect_inputs()
        return {**super().data_identity(), **_plain(self.cache_params()), "files": fingerprint(sources)}

    def cache_path(self, sources: Sequence[SourceFile]) -> Path:
        key = cache_key({**self.cache_params(), "data_dir": str(self.data_dir.resolve()), "files": fingerprint(sources)})
        return self.cache_dir / f"{type(self).__name__}-{key}.pt"

    def check_inputs(self, items: Sequence[Any], extra: dict[str, Any]) -> None:
        """Raise when :meth:`collect_inputs` found nothing to decode."""
        if not items and not extra.get("skipped_before_decoding"):
            ignored = f" (only {extra['ignored_files']} non-image files)" if extra.get("ignored_files") else ""
            raise ValueError(f"{type(self).__name__}: found no input images under {self.data_dir}{ignored}")

    def checked_summary(
        self, kept_labels: Sequence[int], classes: Sequence[str], skipped: list, notes: list, extra: dict,
        hint: str = "",
    ) -> dict[str, Any]:
        """The skip report of a preprocessing run (:func:`summarize`); raises when no image, or no image of a class
        folder (a class the model could never learn), was usable. ``hint``: where to read more, before "remove the
        folder"."""
        summary = summarize(
            len(kept_labels), skipped, notes, {"data_dir": str(self.data_dir), "params": self.cache_params(), **extra}
        )
        if not kept_labels:
            raise ValueError(
                f"{type(self).__name__}: no usable image under {self.data_dir}: {format_summary(summary)}. "
                f"First problems: {[s['file'] + ' (' + s['detail'] + ')' for s in summary['skipped_files'][:3]]}"
            )
        labelled = set(kept_labels)
        empty = [c for i, c in enumerate(classes) if i not in labelled]
        if empty:
            raise ValueError(
                f"{type(self).__name__}: the class folder {self.data_dir / empty[0]} has no usable image"
                f"{f' ({len(empty)} such folders)' if len(empty) > 1 else ''}: {format_summary(summary)}; "
                f"{hint}remove the folder"
            )
        return summary

    def prepare_data(self) -> Path:
        """Build the cache if there is none for these parameters and files; return its path."""
        self._check_data_dir()
        items, labels, classes, sources, extra = self.collect_inputs()
        path = self.cache_path(sources)
        if load_cache(path) is not None:
            return path
        if path.exists():  # a cache of an older version, or damaged
            rank_zero_info(f"{type(self).__name__}: the cache {path} is unreadable or from an older version: rebuilding it")
        self.check_inputs(items, extra)
        arrays, kept, skipped, notes = preprocess(
            self.preprocess_function(), items, labels, self.preprocess_workers, desc=f"{type(self).__name__}"
        )
        skipped = list(extra.pop("skipped_before_decoding", [])) + skipped
        hint = f"see {path.name}.summary.json beside the cache, or "
        summary = self.checked_summary(kept, classes, skipped, notes, extra, hint)
        images = stack_images(arrays)  # empties `arrays`: the dataset is held once, not twice
        save_cache(path, {"images": images, "labels": torch.tensor(kept, dtype=torch.long), "classes": classes, "summary": summary})
        rank_zero_info(f"{type(self).__name__}: {format_summary(summary)}; cached at {path}")
        return path

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        self._check_data_dir()
        _, _, _, sources, _ = self.collect_inputs()
        payload = load_cache(self.cache_path(sources))
        if payload is None:  # setup without prepare_data (a script, not the Trainer): prepare here
            path = self.prepare_data()
            payload = load_cache(path)
            if payload is None:  # written just now, yet unreadable: say so rather than fail on its contents
                raise ValueError(f"{type(self).__name__}: the cache {path} cannot be read back; remove it and retry")
        self.summary, self.classes = payload["summary"], list(payload["classes"])
        self.num_classes = len(self.classes) or None
        # uint8, memory-mapped: the ranks of a machine share the cache file's pages (page cache), none copies it
        self._set_tensors(payload["images"], payload["labels"])

    # ------------------------------------------------------------------ loading
    def train_sampler(self, dataset: Dataset) -> Sampler:
        if not self.balanced_classes:
            return super().train_sampler(dataset)
        labels = dataset_labels(self.train_set)
        weights = 1.0 / torch.bincount(labels).double()[labels]
        return WeightedRandomSampler(weights, num_samples=len(labels), generator=torch.Generator().manual_seed(self.seed))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)  # uint8 to float in [-1, 1]
        if self.horizontal_flip and self.trainer is not None and self.trainer.training:
            images, *rest = batch
            flip = torch.rand(images.shape[0], device=images.device) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            batch = [images, *rest]
        return batch


def border_color(image: Image.Image) -> Any:
    """Median colour of the outermost pixels: the background of scans and photos of paper."""
    a = np.asarray(image)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    med = np.median(border, axis=0).astype(int)
    return int(med) if med.ndim == 0 else tuple(int(v) for v in med)


def load_square_image(source: SourceFile, image_size: int, channels: int, resize: str) -> np.ndarray:
    """Decode, make square (central crop, or pad on the border colour keeping the aspect ratio), resize with
    antialiasing (Lanczos) to ``image_size``; uint8 ``(C, S, S)``."""
    image = open_image(source, "L" if channels == 1 else "RGB")
    image = square_crop(image) if resize == "crop" else square_pad(image, border_color(image))
    return to_chw_uint8(image.resize((image_size, image_size), Image.LANCZOS))


class ImageFolderDataModule(CachedImageDataModule):
    """Any folder of images (recursively, symlinked folders and zip archives included), optionally one subfolder
    per class.

    A file is an image when PIL decodes it, whatever its name (a JPEG named ``photo`` or ``photo.heic`` is one);
    every file that does not decode, dangling symlinks included, is skipped and counted by reason in
    :attr:`summary`. Hidden files and text or metadata files (``.txt``, ``.json``, ``.csv``, ...:
    :data:`~lit_gans.datamodules.preprocessing.NON_IMAGE_SUFFIXES`) are left out without decoding, and counted
    (``ignored_by_kind``).

    Example::

        >>> dm = ImageFolderDataModule("my_images", image_size=64, channels=3, resize="crop")
        >>> dm.image_shape
        (3, 64, 64)

    Args:
        data_dir: folder of images, or of class subfolders with ``labels=True``.
        resize: ``crop`` (central square) or ``pad`` (pad to square on the border colour, keeping everything).
        labels: label each image by its first-level subfolder (``num_classes`` = number of subfolders).
        **kwargs: see :class:`CachedImageDataModule` (``image_size``, ``channels``, ``batch_size``, ...).
    """

    def __init__(self, data_dir: Union[str, os.PathLike], resize: str = "crop", labels: bool = False, **kwargs: Any) -> None:
        super().__init__(data_dir, **kwargs)
        self.resize = check_choice("resize", resize, ("crop", "pad"))
        self.labels = labels
        if labels and self.data_dir.exists():  # known before any image is decoded: the CLI links num_classes
            self.classes = self.class_folders(scan_folder(self.data_dir).files)
            self.num_classes = len(self.classes) or None

    def class_folders(self, files: Sequence[SourceFile]) -> list[str]:
        """The sorted first-level subfolders that hold images: the classes, in label order."""
        return sorted({self.class_of(f) for f in files} - {""})

    def cache_params(self) -> dict[str, Any]:
        return {**super().cache_params(), "resize": self.resize, "labels": self.labels}

    def collect_inputs(self) -> tuple[list[Any], list[int], list[str], list[SourceFile], dict[str, Any]]:
        listing = scan_folder(self.data_dir)
        files = listing.files
        extra = {"skipped_before_decoding": listing.skipped, **left_out_summary(listing.left_out)}
        if not self.labels:
            return files, [0] * len(files), [], files, extra
        classes = self.class_folders(files)
        index = {c: i for i, c in enumerate(classes)}
        extra["skipped_before_decoding"] += [(str(f), "not_in_a_class_folder", "") for f in files if self.class_of(f) == ""]
        kept = [f for f in files if self.class_of(f) != ""]
        return kept, [index[self.class_of(f)] for f in kept], classes, files, extra

    def class_of(self, source: SourceFile) -> str:
        """The first-level subfolder of ``data_dir`` that holds ``source`` ("" for files at the top)."""
        if source.member is not None:
            parts = Path(source.member).parts
            return parts[0] if len(parts) > 1 else ""
        rel = Path(source.path).relative_to(self.data_dir).parts
        return rel[0] if len(rel) > 1 else ""

    def preprocess_function(self) -> Callable[[Any], np.ndarray]:
        return partial(load_square_image, image_size=self.image_size, channels=self.channels, resize=self.resize)


__all__ = ["CachedImageDataModule", "ImageFolderDataModule", "default_cache_dir", "border_color", "load_square_image"]

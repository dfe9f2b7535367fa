"""Shared machinery of the package's DataModules: in-memory tensors, deterministic splits, loaders."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, TensorDataset

from lit_gans.validation import check_float, check_int


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 ``[0, 255]`` images to float32 in [-1, 1] (the range of the generators' tanh output)."""
    return images.float().div_(127.5).sub_(1.0)


#: ``x / 127.5 - 1`` in float32 for each of the 256 byte values, computed once on the CPU (see
#: :func:`uint8_to_unit_range`)
_UNIT_RANGE = torch.arange(256, dtype=torch.uint8).float().div_(127.5).sub_(1.0)
_UNIT_RANGE_ON: dict[torch.device, Tensor] = {}


def uint8_to_unit_range(images: Tensor) -> Tensor:
    """uint8 ``[0, 255]`` images to float32 in [-1, 1] (the range of the generators' tanh output), on the device
    that holds them: ``x / 127.5 - 1``. Floating-point images (already in [-1, 1]) are returned as they are.

    The in-memory datamodules keep their images as uint8 (1 byte a pixel) and convert each batch with this after it
    reaches its device; the metrics convert the real images they read with it. It looks the 256 possible values up
    in a table computed on the CPU, so every device gives the same bits (CUDA divides by a scalar as a
    multiplication by its reciprocal, which can differ in the last bit).

    Raises:
        TypeError: for images that are neither uint8 nor floating point.
    """
    if images.is_floating_point():
        return images
    if images.dtype != torch.uint8:
        raise TypeError(f"images of dtype {images.dtype}: expected uint8 in [0, 255] or floats in [-1, 1]")
    table = _UNIT_RANGE_ON.get(images.device)
    if table is None:
        table = _UNIT_RANGE_ON.setdefault(images.device, _UNIT_RANGE.to(images.device))
    return table[images.long()]


class InMemoryDataset(TensorDataset):
    """A ``TensorDataset`` that a DataLoader reads a whole batch at a time: ``__getitems__`` indexes the tensors
    once per batch instead of once per sample, and :func:`collate_batch` passes the batch through unchanged.
    Only the package's own loaders use it (``train_set`` stays a plain ``TensorDataset`` for any DataLoader)."""

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(t.index_select(0, index) for t in self.tensors)  # 3x faster than t[index] on CPU


def collate_batch(batch: Any) -> Any:
    """The collate function for :class:`InMemoryDataset`: batches arrive already stacked."""
    return list(batch) if isinstance(batch, tuple) else batch


class EpochShuffleSampler(RandomSampler):
    """A shuffle that depends only on ``(seed, epoch)``: an epoch replayed after a resume has the same order.
    Lightning calls ``set_epoch``; under DDP it replaces this ``RandomSampler`` by its ``DistributedSampler``,
    which is deterministic per epoch in the same way."""

    def __init__(self, data_source: Dataset, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


class ResumableDataLoader(DataLoader):
    """A DataLoader that Lightning checkpoints (it has ``state_dict``/``load_state_dict``): it records how many
    batches of the current epoch it yielded, and after a resume skips them, so the interrupted epoch continues
    where it stopped instead of replaying its first batches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._yielded = 0
        self._skip = 0

    def __iter__(self):
        skip, self._skip = self._skip, 0
        self._yielded = skip
        for index, batch in enumerate(super().__iter__()):
            if index < skip:  # in-memory batches: skipping costs an index operation each
                continue
            self._yielded = index + 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches_yielded": self._yielded}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._skip = int(state_dict.get("batches_yielded", 0))


def split_indices(n: int, val_split: float | int, seed: int) -> tuple[Tensor, Tensor]:
    """Deterministic train/validation index split; ``val_split`` is a fraction (< 1) or a count."""
    n_val = int(round(n * val_split)) if isinstance(val_split, float) and val_split < 1 else int(val_split)
    if not 0 <= n_val < n:
        raise ValueError(f"val_split={val_split!r} leaves no training images out of {n}")
    if n_val == 0:
        return torch.arange(n), torch.arange(0)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


#: Constructor arguments that change how the images are loaded, never which images: left out of
#: :meth:`ImageDataModule.data_identity`.
NOT_IDENTITY = frozenset({"self", "batch_size", "num_workers", "download", "cache_dir", "preprocess_workers"})


def _plain(value: Any) -> Any:
    """A JSON-friendly, order-independent form of an identity value (paths resolved, sets sorted)."""
    if isinstance(value, os.PathLike):
        return str(Path(value).expanduser().resolve())
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class ImageDataModule(LightningDataModule):
    """Base of every DataModule of the package (and what the CLI accepts as ``data``).

    Subclasses set :attr:`image_shape` in ``__init__`` (so the CLI can link it into the model before any data is
    read), and ``self.train_set`` / ``self.val_set`` in ``setup``. Batches are ``(images, labels)`` with images
    float32 in [-1, 1].

    Args:
        batch_size: images per batch (per process under DDP).
        num_workers: DataLoader worker processes; 0 loads in the main process, which is fastest for in-memory
            tensors.
        val_split: fraction (< 1) or number of training images held out (``val_set``): real images no model
            trains on, where the Classification Accuracy Score tests when the data has no test split of its own
            (:meth:`test_split`). No
            ``val_dataloader`` is offered: a GAN has no validation loss (``lit-gans evaluate`` measures a
            checkpoint).
        seed: seed of the train/validation split.
    """

    #: ``(C, H, W)`` of the images this module yields.
    image_shape: tuple[int, int, int]
    #: number of classes for labelled data, else ``None``; known before setup, so the CLI can link it.
    num_classes: Optional[int] = None
    #: a name per class (the digit, the folder, the character), else ``None``.
    class_names: Optional[list[str]] = None

    def __init__(self, batch_size: int = 64, num_workers: int = 0, val_split: float = 0.0, seed: int = 42) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size)
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        self.val_split = check_float("val_split", val_split, inclusive=True)
        self.seed = seed
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None

    def data_identity(self) -> dict[str, Any]:
        """Everything that determines this module's training images, as a JSON-friendly dict: two modules with the
        same identity yield the same ``train_set``. ``FIDCallback`` keys its cached real statistics on it.

        Generic: the class, the resolved absolute ``data_dir`` (a relative one means another folder from another
        working directory), ``val_split``, ``seed``, and every constructor argument of the class and its bases
        that is kept as an attribute of the same name, except those that only change how images are loaded
        (:data:`NOT_IDENTITY`: ``batch_size``, ``num_workers``, ``download``, ...). Subclasses whose images depend
        on more (the input files, attributes stored under other names) extend it.
        """
        identity: dict[str, Any] = {"class": f"{type(self).__module__}.{type(self).__qualname__}"}
        for cls in type(self).__mro__:
            if cls in (ImageDataModule, LightningDataModule, object) or "__init__" not in vars(cls):
                continue
            for name, parameter in inspect.signature(vars(cls)["__init__"]).parameters.items():
                if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or name in NOT_IDENTITY:
                    continue
                if name not in identity and hasattr(self, name):
                    identity[name] = _plain(getattr(self, name))
        if getattr(self, "data_dir", None) is not None:
            identity["data_dir"] = str(Path(self.data_dir).expanduser().resolve())
        identity["val_split"], identity["seed"] = self.val_split, self.seed
        return identity

    def _set_tensors(self, images: Tensor, labels: Tensor) -> None:
        train_idx, val_idx = split_indices(len(images), self.val_split, self.seed)
        self.train_set = TensorDataset(images[train_idx], labels[train_idx])
        self.val_set = TensorDataset(images[val_idx], labels[val_idx]) if len(val_idx) else None

    def test_split(self) -> Optional[Dataset]:
        """The data's own test split: labelled real images, yielded like the training ones, that no training split
        holds (MNIST's 10k test digits), or ``None`` when the data has none (this default). Metrics that must score
        on real images the generator never saw, such as the Classification Accuracy Score, use it, else
        ``val_set``."""
        return None

    def class_counts(self) -> Optional[Tensor]:
        """Images per class in the training split (labelled data, after ``setup``), else ``None``: what a
        conditional model's ``sample(labels=None)`` draws from."""
        tensors = getattr(self.train_set, "tensors", None)
        if not self.num_classes or tensors is None or len(tensors) < 2:
            return None
        return torch.bincount(tensors[1].long(), minlength=self.num_classes)

    def train_sampler(self, dataset: Dataset) -> Sampler:
        """The order of training samples: a shuffle that depends only on ``(seed, epoch)``."""
        return EpochShuffleSampler(dataset, self.seed)

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        if isinstance(dataset, TensorDataset):  # read whole batches with one index instead of per sample
            dataset = InMemoryDataset(*dataset.tensors)
        return ResumableDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self.train_sampler(dataset) if train else None,
            # Equal batches: BatchNorm statistics and DDP ranks stay comparable; GANs never need the remainder.
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_batch if isinstance(dataset, InMemoryDataset) else None,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        if len(self.train_set) < self.batch_size:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the {len(self.train_set)} training images; "
                "lower batch_size"
            )
        return self._loader(self.train_set, train=True)


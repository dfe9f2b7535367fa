"""Shared machinery of the package's DataModules: in-memory tensors, deterministic splits, loaders."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, TensorDataset

from lit_gans.validation import check_float, check_int


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
    return table.index_select(0, images.reshape(-1).int()).view(images.shape)  # int32 indices: as fast as x / 127.5


class ImageTensorDataset(Dataset):
    """Labelled images held in memory as they are stored: uint8 ``(N, C, H, W)``, 1 byte a pixel, often a read-only
    memory map of the preprocessing cache that the processes of a machine (DDP ranks, loader workers) share through
    the page cache. A split (the training or the validation images) is an ``index`` into those images, never a
    copy of them.

    Items and batches are ``(image, label)`` as stored; :meth:`float_images` gives the images in [-1, 1] as the model
    receives them (``to_float``: :func:`uint8_to_unit_range`, or a datamodule's own conversion, e.g. MNIST's resize),
    and the datamodule converts each training batch the same way on its device
    (:meth:`ImageDataModule.on_after_batch_transfer`). Float images (already in [-1, 1]) are kept and yielded as they
    are. The package's loaders read it a batch at a time (:class:`ImageBatches`).

    Args:
        images: ``(N, ...)`` all images (uint8, or floats in [-1, 1]).
        labels: ``(N,)`` their labels.
        index: the images of this split, in order (``None``: all of them).
        to_float: a picklable function from stored images to float32 images in [-1, 1].
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        index: Optional[Tensor] = None,
        to_float: Callable[[Tensor], Tensor] = uint8_to_unit_range,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.source_images, self.index, self.to_float = images, index, to_float
        self.labels = labels if index is None else labels[index]  # 8 bytes an image: a copy costs nothing

    def __len__(self) -> int:
        return len(self.labels)

    def _source(self, positions: Tensor) -> Tensor:
        return positions if self.index is None else self.index[positions]

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        source = position if self.index is None else int(self.index[position])
        return self.source_images[source], self.labels[position]

    def batch(self, positions: list[int]) -> tuple[Tensor, Tensor]:
        """The items at ``positions`` stacked, read with one index (3x faster than ``images[positions]`` on CPU)."""
        positions = torch.as_tensor(positions)
        return self.source_images.index_select(0, self._source(positions)), self.labels.index_select(0, positions)

    @property
    def images(self) -> Tensor:
        """This split's images as stored (a copy when the split is a part of shared images)."""
        return self.source_images if self.index is None else self.source_images[self.index]

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(images, labels)`` as stored, as a ``TensorDataset`` has them (see :attr:`images`)."""
        return self.images, self.labels

    def float_images(self, positions: Any = None) -> Tensor:
        """The images at ``positions`` (an index, a slice, ``None``: all) as float32 in [-1, 1], as the model
        receives them: what the metrics read (4 bytes a pixel: take only the images needed)."""
        positions = slice(None) if positions is None else positions
        return self.to_float(self.source_images[positions if self.index is None else self.index[positions]])


class ImageBatches(Dataset):
    """How the package's loaders read an :class:`ImageTensorDataset`: a whole batch with one index
    (``__getitems__``, whose batch :func:`collate_batch` passes through) instead of image by image. The dataset
    itself yields single items, for any DataLoader."""

    def __init__(self, dataset: ImageTensorDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        return self.dataset[position]

    def __getitems__(self, positions: list[int]) -> tuple[Tensor, Tensor]:
        return self.dataset.batch(positions)


def float_images(dataset: Dataset, positions: Any = None) -> Tensor:
    """The images of an in-memory dataset (an :class:`ImageTensorDataset`, or a ``TensorDataset`` whose first
    tensor holds images) at ``positions`` (an index, a slice, ``None``: all) as float32 in [-1, 1], as its batches
    reach the model: what metrics that read the real images straight from a datamodule's ``train_set``,
    ``val_set`` or ``test_split()`` use."""
    if isinstance(dataset, ImageTensorDataset):
        return dataset.float_images(positions)
    images = dataset.tensors[0]
    return uint8_to_unit_range(images if positions is None else images[positions])


def dataset_labels(dataset: Optional[Dataset]) -> Optional[Tensor]:
    """The labels of an in-memory dataset (an :class:`ImageTensorDataset`'s, a ``TensorDataset``'s second
    tensor), else ``None``."""
    if isinstance(dataset, ImageTensorDataset):
        return dataset.labels
    tensors = getattr(dataset, "tensors", None)
    return tensors[1] if tensors is not None and len(tensors) >= 2 else None


class InMemoryDataset(TensorDataset):
    """A ``TensorDataset`` that a DataLoader reads a whole batch at a time: ``__getitems__`` indexes the tensors
    once per batch instead of once per sample, and :func:`collate_batch` passes the batch through unchanged.
    The package's loaders wrap a plain ``TensorDataset`` that a subclass sets as ``train_set`` in it (its own
    datasets, :class:`ImageTensorDataset`, through :class:`ImageBatches`)."""

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


#: Constructor arguments that change how the images are loaded or batched, never which images: left out of
#: :meth:`ImageDataModule.data_identity` (flips and class-balanced sampling act on training batches; the real images
#: the metrics read are the training set's as stored).
NOT_IDENTITY = frozenset({"self", "batch_size", "num_workers", "download", "cache_dir", "preprocess_workers",
                          "horizontal_flip", "balanced_classes"})  # fmt: skip


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
    read), and ``self.train_set`` / ``self.val_set`` in ``setup`` (:meth:`_set_tensors`). The images are held as
    uint8, 1 byte a pixel (:class:`ImageTensorDataset`), and the model receives batches ``(images, labels)`` with
    images float32 in [-1, 1], converted by :attr:`to_float` on the model's device
    (:meth:`on_after_batch_transfer`). Code that reads real images straight from ``train_set``, ``val_set`` or
    :meth:`test_split` gets them the same way with :func:`float_images`.

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
    #: stored images (uint8) to the float32 images in [-1, 1] the model receives; picklable (a function, or a
    #: ``functools.partial`` of one), as the datasets hold it.
    to_float: Callable[[Tensor], Tensor] = staticmethod(uint8_to_unit_range)

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
        """Split ``images`` (uint8 as stored, or floats in [-1, 1]) and ``labels`` into ``train_set`` and
        ``val_set``: :class:`ImageTensorDataset` s that index the same images (a memory map stays shared)."""
        train_idx, val_idx = split_indices(len(images), self.val_split, self.seed)
        if not len(val_idx):  # no split: the images as they are, not a gathered copy
            train_idx = None
        self.train_set = ImageTensorDataset(images, labels, train_idx, self.to_float)
        self.val_set = ImageTensorDataset(images, labels, val_idx, self.to_float) if len(val_idx) else None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A batch's images become float32 in [-1, 1] here, on the device that trains on them (:attr:`to_float`):
        in memory and on their way to a GPU they are uint8, a quarter of the bytes. Float images pass as they
        are."""
        if isinstance(batch, Tensor):
            return self.to_float(batch)
        if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
            return [self.to_float(batch[0]), *batch[1:]]
        return batch

    def test_split(self) -> Optional[Dataset]:
        """The data's own test split: labelled real images, yielded like the training ones, that no training split
        holds (MNIST's 10k test digits), or ``None`` when the data has none (this default). Metrics that must score
        on real images the generator never saw, such as the Classification Accuracy Score, use it, else
        ``val_set``."""
        return None

    def class_counts(self) -> Optional[Tensor]:
        """Images per class in the training split (labelled data, after ``setup``), else ``None``: what a
        conditional model's ``sample(labels=None)`` draws from."""
        labels = dataset_labels(self.train_set)
        if not self.num_classes or labels is None:
            return None
        return torch.bincount(labels.long(), minlength=self.num_classes)

    def train_sampler(self, dataset: Dataset) -> Sampler:
        """The order of training samples: a shuffle that depends only on ``(seed, epoch)``."""
        return EpochShuffleSampler(dataset, self.seed)

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        if isinstance(dataset, TensorDataset):  # read whole batches with one index instead of per sample
            dataset = InMemoryDataset(*dataset.tensors)
        elif isinstance(dataset, ImageTensorDataset):
            dataset = ImageBatches(dataset)
        batched = isinstance(dataset, (InMemoryDataset, ImageBatches))
        return ResumableDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self.train_sampler(dataset) if train else None,
            # Equal batches: BatchNorm statistics and DDP ranks stay comparable; GANs never need the remainder.
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_batch if batched else None,
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


"""Data larger than memory: a folder datamodule's images prepared once into LitData chunks
(:func:`prepare_streaming`, ``lit-gans prepare``), and :class:`StreamingImageDataModule`, which trains from them
with LitData's ``StreamingDataset`` / ``StreamingDataLoader``: each rank (of every node) streams its own shard,
locally or from object storage, and a mid-epoch resume continues where it stopped.

A prepared dataset (a local folder, or any URL LitData writes to: ``s3://``, ``gs://``, ...) holds::

    train/                  LitData chunks of the training images, in the order of the datamodule's train_set
    val/                    the images its val_split held out (only when it holds some out)
    lit_gans_dataset.json   image shape, class names and counts, what the images were prepared from, the skip
                            report; written last: a folder without it is no (complete) prepared dataset

Each item is ``{"image": uint8 (C, S, S) array, "label": int}``: 1 byte a pixel on disk and in transit; a batch
becomes float in [-1, 1] on its device (``on_after_batch_transfer``), as with the in-memory datamodules.
"""

from __future__ import annotations

import functools
import io
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import traceback
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union
from unittest import mock

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from lit_gans.datamodules.base import ImageDataModule, ImageTensorDataset, split_indices, uint8_to_unit_range
from lit_gans.datamodules.image_folder import CachedImageDataModule
from lit_gans.datamodules.preprocessing import format_summary, preprocess
from lit_gans.files import atomic_write_bytes, permissions_as_created

#: the file that makes a folder a prepared dataset; written last
METADATA_FILE = "lit_gans_dataset.json"
METADATA_FORMAT = "lit-gans streaming dataset"
METADATA_VERSION = 1
#: LitData's chunk size: large enough that object-storage reads are few, small enough that a rank's first batch
#: does not wait long
DEFAULT_CHUNK_BYTES = "64MB"
#: inputs decoded per block: the staging file grows block by block, memory holds one block of images
BLOCK = 4096


def is_url(location: Union[str, os.PathLike]) -> bool:
    """Whether ``location`` is a URL (``s3://bucket/data``) rather than a local path."""
    return "://" in str(location)


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}" if is_url(location) else str(Path(location) / name)


# ---------------------------------------------------------------------------------------------------- metadata
def _storage(url: str) -> Any:
    """The client LitData's own ``optimize`` and ``StreamingDataset`` use for ``url``'s scheme (S3, GCS, R2, ...)."""
    from litdata.streaming.fs_provider import _get_fs_provider

    try:
        return _get_fs_provider(url)
    except ValueError:
        raise ValueError(f"{url}: LitData stores datasets in local folders and s3://, gs:// and r2:// URLs") from None


def _read_bytes(location: str, name: str) -> bytes:
    """The file ``name`` of the folder or URL ``location`` (``FileNotFoundError`` when there is none)."""
    path = _join(location, name)
    if not is_url(location):
        return Path(path).read_bytes()
    storage = _storage(path)
    if not storage.exists(path):
        raise FileNotFoundError(path)
    with tempfile.TemporaryDirectory() as folder:
        storage.download_file(path, str(Path(folder) / name))
        return (Path(folder) / name).read_bytes()


def _write_bytes(location: str, name: str, data: bytes) -> None:
    """Write the file ``name`` in the folder or URL ``location`` (a local one atomically)."""
    if not is_url(location):
        atomic_write_bytes(Path(location) / name, data)
        return
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / name).write_bytes(data)
        _storage(location).upload_file(str(Path(folder) / name), _join(location, name))


def read_metadata(location: Union[str, os.PathLike]) -> Optional[dict[str, Any]]:
    """The metadata of the prepared dataset at ``location`` (a folder or a URL), or ``None`` when there is none
    (nothing there, or an interrupted prepare, which never writes it).

    Raises:
        ValueError: the file is there but is no lit-gans metadata (or of a newer version).
    """
    path = _join(str(location), METADATA_FILE)
    try:
        text = _read_bytes(str(location), METADATA_FILE).decode()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        metadata = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{path} is not a lit-gans prepared dataset's metadata: {err}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
        raise ValueError(f"{path} is not a lit-gans prepared dataset's metadata (no format {METADATA_FORMAT!r})")
    if metadata.get("version", 0) > METADATA_VERSION:
        raise ValueError(f"{path} was prepared by a newer lit-gans (version {metadata['version']}); upgrade lit-gans")
    return metadata


def _labels_file(split: str) -> str:
    return f"labels-{split}.npy"


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------- prepare
@dataclass
class PreparedDataset:
    """What :func:`prepare_streaming` did: the dataset's ``location``, its ``metadata``, and whether it ``wrote``
    it (``False``: it was there already)."""

    location: str
    metadata: dict[str, Any]
    wrote: bool

    def describe(self) -> str:
        """One line: the images, where, and the skip report (or that nothing was to do)."""
        m = self.metadata
        images = f"{m['train_images']} training images" + (f" and {m['val_images']} held out" if m["val_images"] else "")
        shape = "x".join(map(str, m["image_shape"]))
        if not self.wrote:
            return f"{self.location} already holds these {images} ({shape}); nothing to do"
        return f"prepared {images} ({shape}) in {self.location}: {format_summary(m['summary'])}"


def _check_output(output_dir: str, identity: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The metadata already at ``output_dir`` when it holds these images; ``None`` when it is free to write.

    Raises:
        ValueError: it holds images prepared from other data, or files of something else.
    """
    existing = read_metadata(output_dir)
    if existing is not None:
        if existing.get("source") == identity:
            return existing
        source = existing.get("source", {})
        raise ValueError(
            f"output_dir={output_dir} holds images prepared from other data ({source.get('class', '?')} of "
            f"{source.get('data_dir', '?')}, other files or settings): give another output_dir, or delete it first"
        )
    if is_url(output_dir):
        if not _storage(output_dir).is_empty(output_dir):
            raise ValueError(
                f"output_dir={output_dir} is not empty and holds no prepared dataset (no {METADATA_FILE}): give an "
                "empty or new location"
            )
        return None
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output_dir={output_dir} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise ValueError(
            f"output_dir={output_dir} is not empty and holds no prepared dataset (no {METADATA_FILE}): give an empty "
            "or new folder"
        )
    return None


def _stage_images(datamodule: CachedImageDataModule, path: Path) -> tuple[list[int], list[str], dict[str, Any]]:
    """Decode and preprocess every input of ``datamodule`` as its ``prepare_data`` does (same function, workers,
    skip reasons), block by block into the memory-mapped uint8 ``.npy`` file ``path``: memory holds one block.

    Returns:
        the labels of the kept images (the first ones of the file), the class names, the summary.
    """
    name = type(datamodule).__name__
    datamodule._check_data_dir()
    items, labels, classes, _, extra = datamodule.collect_inputs()
    datamodule.check_inputs(items, extra)
    skipped, notes, kept_labels = list(extra.pop("skipped_before_decoding", [])), [], []
    images = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.uint8, shape=(max(len(items), 1), *datamodule.image_shape)
    )
    function = datamodule.preprocess_function()
    for start in range(0, len(items), BLOCK):
        stop = min(start + BLOCK, len(items))
        arrays, block_labels, block_skipped, block_notes = preprocess(
            function, items[start:stop], labels[start:stop], datamodule.preprocess_workers,
            desc=f"{name} {start}-{stop} of {len(items)}",
        )  # fmt: skip
        if arrays:
            images[len(kept_labels) : len(kept_labels) + len(arrays)] = np.stack(arrays)
        kept_labels += block_labels
        skipped += block_skipped
        notes += block_notes
    images.flush()
    summary = datamodule.checked_summary(kept_labels, classes, skipped, notes, extra)
    return kept_labels, list(classes), summary


class _StagedItems:
    """``optimize``'s function: a block of indices of the staged images to LitData items, in the block's order.
    Picklable (the memory map is opened once per worker process)."""

    def __init__(self, path: Path, labels: list[int]) -> None:
        self.path, self.labels, self._images = str(path), labels, None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": None}

    def __call__(self, block: list[int]):
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
        for index in block:
            yield {"image": np.ascontiguousarray(self._images[index]), "label": int(self.labels[index])}


def _write_chunks(staged: _StagedItems, order: Tensor, output_dir: str, chunk_bytes: str) -> None:
    """Write the staged images ``order`` selects, in that order, as LitData chunks in ``output_dir``."""
    from litdata import optimize

    indices = order.tolist()
    blocks = [indices[i : i + 256] for i in range(0, len(indices), 256)]
    # one writer keeps the stored order that of `order` (several would interleave their chunks); forked, not
    # spawned: it only copies staged bytes, and a spawned one would first import torch and the package again
    start_method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with _ctrl_c_raises_keyboard_interrupt():
        # not verbose: its lines (an account advert, the hidden partial folder's path, each worker's state) are
        # nothing a user acts on; the staging above shows the progress
        optimize(fn=staged, inputs=blocks, output_dir=output_dir, chunk_bytes=chunk_bytes, num_workers=1,
                 start_method=start_method, verbose=False)  # fmt: skip


@contextmanager
def _ctrl_c_raises_keyboard_interrupt() -> Iterator[None]:
    """While LitData's ``optimize`` runs, Ctrl-C stops its workers and raises ``KeyboardInterrupt`` (so that the
    partial output is removed and the command exits 130), and afterwards Ctrl-C means what it meant before.

    LitData's own handler ends the process with ``os._exit(0)``, an interrupted prepare reported as a success with
    its staging files left behind, and it stays installed after ``optimize`` returns: a later fit's Ctrl-C would
    end the process with status 0, unsaved."""
    from litdata.processing.data_processor import DataProcessor

    before, owner = signal.getsignal(signal.SIGINT), os.getpid()

    def stop_workers(processor: Any, signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked worker (the terminal signals the whole group): the parent cleans up
            os._exit(1)
        for queue in processor.stop_queues:
            queue.put(None)
        for worker in processor.workers:
            worker.join(5)
            if worker.is_alive():
                worker.terminate()
        raise KeyboardInterrupt

    try:
        with mock.patch.object(DataProcessor, "_signal_handler", stop_workers):
            yield
    except KeyboardInterrupt as err:
        traceback.clear_frames(err.__traceback__)  # LitData's progress bar closes now, not after the last line
        raise
    finally:
        if before is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, before)


def prepare_streaming(
    datamodule: ImageDataModule,
    output_dir: Union[str, os.PathLike],
    chunk_bytes: str = DEFAULT_CHUNK_BYTES,
    staging_dir: Optional[Union[str, os.PathLike]] = None,
    log_result: bool = True,
) -> PreparedDataset:
    """Preprocess a folder datamodule's images (:class:`~lit_gans.datamodules.ImageFolderDataModule`,
    :class:`~lit_gans.datamodules.CatFacesDataModule`, :class:`~lit_gans.datamodules.CalligraphyDataModule`:
    the same crop, pad and resize, the same skip report) into LitData chunks in ``output_dir``, for
    :class:`StreamingImageDataModule`.

    The training images are stored in the order of the datamodule's ``train_set`` (its ``val_split`` held out, with
    its ``seed``): streamed, they are the images it would hold in memory. Inputs are decoded block by block into a
    memory-mapped staging file (in ``staging_dir``, default: beside a local ``output_dir``, else the temporary
    folder; removed after), so memory holds one block, never the dataset.

    A rerun with the same data and settings does nothing. Nothing half-written is ever taken for a prepared
    dataset: a local one is written to a hidden folder beside ``output_dir`` and renamed into place when complete,
    and its metadata file (:data:`METADATA_FILE`), without which a folder is no prepared dataset, is written last.

    Example::

        dm = ImageFolderDataModule("faces", image_size=256, labels=True)
        prepare_streaming(dm, "s3://my-bucket/faces-256").describe()
        # 'prepared 70000 training images (3x256x256) in s3://my-bucket/faces-256: 70000 images used, 0 skipped (none)'

    Args:
        datamodule: a folder datamodule (any :class:`~lit_gans.datamodules.image_folder.CachedImageDataModule`).
        output_dir: a local folder (new or empty), or any URL LitData's ``optimize`` writes to.
        chunk_bytes: LitData's chunk size (``"64MB"``).
        staging_dir: where the decoded images are staged while preparing (needs the dataset's uint8 size).
        log_result: log what was done in one line (``lit-gans prepare`` prints it itself, on stdout).

    Raises:
        ValueError: a datamodule that is no folder datamodule, an ``output_dir`` that holds something else, data
            without a usable image.
    """
    if not isinstance(datamodule, CachedImageDataModule):
        raise ValueError(
            f"prepare: {type(datamodule).__name__} is not a folder datamodule (ImageFolderDataModule, "
            "CatFacesDataModule, CalligraphyDataModule or another CachedImageDataModule); its data fits in memory: "
            "train with it as it is"
        )
    output_dir = str(output_dir)
    identity = datamodule.data_identity()
    existing = _check_output(output_dir, identity)
    if existing is not None:
        return _done(PreparedDataset(output_dir, existing, wrote=False), log_result)
    local = None if is_url(output_dir) else Path(output_dir).expanduser().resolve()
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
    staging_parent = Path(staging_dir) if staging_dir is not None else (local.parent if local is not None else None)
    with ExitStack() as cleanup:  # the staging file and a partial dataset are removed however this ends
        staging = cleanup.enter_context(tempfile.TemporaryDirectory(prefix=".lit-gans-staging-", dir=staging_parent))
        staged_file = Path(staging) / "images.npy"
        labels, classes, summary = _stage_images(datamodule, staged_file)
        train_idx, val_idx = split_indices(len(labels), datamodule.val_split, datamodule.seed)
        # a local dataset is written beside output_dir, and renamed into place once complete
        target = output_dir
        if local is not None:
            target = tempfile.mkdtemp(prefix=f".{local.name}.partial-", dir=local.parent)
            cleanup.callback(shutil.rmtree, target, ignore_errors=True)  # gone once renamed into place
        staged = _StagedItems(staged_file, labels)
        labels = torch.tensor(labels)
        for split, index in (("train", train_idx), ("val", val_idx)):
            if len(index):
                _write_chunks(staged, index, _join(target, split), chunk_bytes)
                # 8 bytes an image: what the metrics and class counts read whole
                _write_bytes(target, _labels_file(split), _npy_bytes(labels[index].numpy()))
        metadata = {
            "format": METADATA_FORMAT,
            "version": METADATA_VERSION,
            "image_shape": list(datamodule.image_shape),
            "class_names": classes or None,
            "class_counts": torch.bincount(labels[train_idx], minlength=len(classes)).tolist() if classes else None,
            "train_images": len(train_idx),
            "val_images": len(val_idx),
            "source": identity,
            "summary": summary,
        }
        # last: what makes the folder a prepared dataset
        _write_bytes(target, METADATA_FILE, json.dumps(metadata, indent=2, ensure_ascii=False).encode())
        if local is not None:
            if local.is_dir():  # empty (checked): a rename replaces an empty folder
                local.rmdir()
            permissions_as_created(target)  # mkdtemp's folder is owner-only: every node's account must read it
            os.replace(target, local)
    return _done(PreparedDataset(output_dir, metadata, wrote=True), log_result)


def _done(done: PreparedDataset, log_result: bool) -> PreparedDataset:
    if log_result:
        rank_zero_info(f"lit-gans: {done.describe()}")
    return done


# ---------------------------------------------------------------------------------------------------- training
def collate_items(items: list[dict[str, Any]]) -> list[Tensor]:
    """LitData items to a batch ``[uint8 images (B, C, H, W), int64 labels (B,)]``, as the in-memory loaders
    yield it before ``on_after_batch_transfer``."""
    images = torch.from_numpy(np.stack([np.asarray(item["image"]) for item in items]))
    return [images, torch.tensor([int(item["label"]) for item in items], dtype=torch.long)]


class StreamedImages(ImageTensorDataset):
    """A prepared split read item by item in its stored order, on every rank alike (no sharding): the datamodule's
    ``train_set`` / ``val_set``, where the metrics read their real images. It answers as the in-memory
    :class:`~lit_gans.datamodules.base.ImageTensorDataset` does: items ``(image, label)`` as stored (uint8),
    :attr:`labels` all in memory (8 bytes an image), :meth:`float_images` the images the metrics take in [-1, 1];
    but the images stay in the stream until read. Picklable: LitData's dataset opens in the process that reads."""

    def __init__(self, location: str, labels: Tensor, max_cache_size: str) -> None:
        # not ImageTensorDataset.__init__: there are no images in memory to index
        self.location, self.labels, self.max_cache_size = location, labels, max_cache_size
        self.index, self.to_float, self._stream = None, uint8_to_unit_range, None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stream": None}

    def _image(self, position: int) -> Tensor:
        if self._stream is None:
            from litdata import StreamingDataset

            self._stream = StreamingDataset(self.location, max_cache_size=self.max_cache_size)
        return torch.from_numpy(np.array(self._stream[position]["image"]))

    def _positions(self, positions: Any) -> list[int]:
        if positions is None or isinstance(positions, slice):
            return list(range(*(positions or slice(None)).indices(len(self))))
        return [p % len(self) for p in torch.as_tensor(positions).reshape(-1).tolist()]

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        if not -len(self) <= position < len(self):
            raise IndexError(f"image {position} of a split of {len(self)}")
        return self._image(position % len(self)), self.labels[position]

    def __getitems__(self, positions: list[int]) -> tuple[Tensor, Tensor]:
        positions = self._positions(positions)
        return torch.stack([self._image(p) for p in positions]), self.labels[positions]

    @property
    def images(self) -> "ImagesInStream":
        """The split's images, read when indexed (``images[:n]``, ``images[index]``: uint8 tensors); so are
        ``tensors[0]``."""
        return ImagesInStream(self)

    def float_images(self, positions: Any = None) -> Tensor:
        """The images at ``positions`` (an index, a slice, a sequence or tensor of indices, ``None``: all) as float32
        in [-1, 1], read from the stream: 4 bytes a pixel, so take only the images needed."""
        if isinstance(positions, int):
            return self.to_float(self[positions][0])
        positions = self._positions(positions)
        if not positions:
            return torch.empty(0, *self._image(0).shape)
        return self.to_float(self.__getitems__(positions)[0])


class ImagesInStream:
    """The images of a :class:`StreamedImages`, read from the stream when indexed: ``view[i]`` is one uint8 image,
    ``view[a:b]`` or ``view[index]`` a uint8 batch. Stands where an in-memory split has its image tensor, without
    reading what is not asked for."""

    def __init__(self, split: StreamedImages) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, positions: Any) -> Tensor:
        if isinstance(positions, int):
            return self.split[positions][0]
        return self.split.__getitems__(positions)[0]


@functools.cache
def resuming_loader_class() -> type:
    """LitData's ``StreamingDataLoader`` that resumes a loaded state for one epoch only (LitData imported when first
    needed).

    LitData's loader replays a state given to ``load_state_dict`` at every ``__iter__`` until one iteration runs to
    exhaustion; Lightning stops an epoch after its length in batches, without asking for one more, so every later
    epoch of a resumed fit would skip the interrupted epoch's first batches again (and miss them)."""
    from litdata import StreamingDataLoader

    class ResumingStreamingDataLoader(StreamingDataLoader):
        _resume_next_iteration = False

        def load_state_dict(self, obj: dict[str, Any]) -> None:
            super().load_state_dict(obj)
            self._resume_next_iteration = self.restore

        def __iter__(self) -> Any:
            if not self._resume_next_iteration:
                self.restore = False  # a new epoch, whether or not the last one was iterated to its end
            self._resume_next_iteration = False
            yield from super().__iter__()

    return ResumingStreamingDataLoader


class StreamingImageDataModule(ImageDataModule):
    """Trains from a dataset prepared by :func:`prepare_streaming` (``lit-gans prepare``), streamed with LitData:
    for data larger than a machine's memory, or many nodes reading one copy in object storage.

    Each rank reads its own shard of every epoch (LitData's ``StreamingDataset``, shuffled by ``seed`` and the
    epoch); memory holds the chunks in flight, not the dataset; LitData's loader state is saved in checkpoints, so a
    resumed fit continues the interrupted epoch where it stopped. The image shape, class names and class counts come
    with the data (a conditional model takes ``num_classes`` from it, as from an image folder), and the metrics
    read their real images from the stream: ``train_set`` is the training split in the order the source datamodule
    held it in memory, and their caches are keyed on what the images were prepared from (:meth:`data_identity`).

    Example::

        lit-gans prepare --config configs/dcgan_cats.yaml --output_dir s3://my-bucket/cats-64
        lit-gans fit --config configs/dcgan_cats.yaml --data lit_gans.datamodules.StreamingImageDataModule \\
            --data.input_dir s3://my-bucket/cats-64 --trainer.num_nodes 4

    Args:
        input_dir: the prepared dataset: a local folder or a URL (``s3://...``, ``gs://...``).
        horizontal_flip: flip half of each training batch left-right (on the batch's device).
        shuffle: shuffle every epoch (chunks, and items within them); off, each rank streams its shard in order.
        max_cache_size: the most that LitData keeps of a remote dataset's chunks on local disk.
        batch_size, num_workers, seed: see :class:`ImageDataModule` (``num_workers`` LitData reader processes).
    """

    def __init__(
        self,
        input_dir: str,
        horizontal_flip: bool = False,
        shuffle: bool = True,
        max_cache_size: str = "50GB",
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.input_dir = str(input_dir) if is_url(input_dir) else str(Path(input_dir).expanduser().resolve())
        self.horizontal_flip, self.shuffle, self.max_cache_size = horizontal_flip, shuffle, max_cache_size
        metadata = read_metadata(self.input_dir)
        if metadata is None:
            raise FileNotFoundError(
                f"StreamingImageDataModule: input_dir={input_dir} holds no prepared dataset (no {METADATA_FILE}): "
                f"prepare it with `lit-gans prepare --output_dir {input_dir}` and the data as fit takes it"
            )
        self.metadata = metadata
        self.image_shape = tuple(metadata["image_shape"])
        self.num_classes = len(metadata["class_names"]) if metadata.get("class_names") else None
        self.summary = metadata.get("summary")

    @property
    def class_names(self) -> Optional[list[str]]:  # type: ignore[override]
        """The class names stored with the data (the source's class folders), in label order; ``None`` unlabelled."""
        names = self.metadata.get("class_names")
        return list(names) if names else None

    def data_identity(self) -> dict[str, Any]:
        """The identity of the datamodule the images were prepared from (its class, data folder, files,
        preprocessing, split): the same training images, so a stream, wherever it is stored, shares the cached FID
        statistics and data classifiers of the folder it was prepared from."""
        return self.metadata["source"]

    def class_counts(self) -> Optional[Tensor]:
        counts = self.metadata.get("class_counts")
        return torch.tensor(counts) if counts else None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        for split in ("train", "val"):
            if self.metadata[f"{split}_images"]:
                labels = torch.from_numpy(np.load(io.BytesIO(_read_bytes(self.input_dir, _labels_file(split)))))
                images = StreamedImages(_join(self.input_dir, split), labels, self.max_cache_size)
                setattr(self, f"{split}_set", images)

    def train_dataloader(self) -> DataLoader:
        """LitData's ``StreamingDataLoader`` over this rank's shard (created here, once the process group exists,
        so LitData sees every rank and node)."""
        from litdata import StreamingDataset

        self.setup("fit")
        dataset = StreamingDataset(
            _join(self.input_dir, "train"), shuffle=self.shuffle, drop_last=True, seed=self.seed,
            max_cache_size=self.max_cache_size,
        )  # fmt: skip
        world_size = self.trainer.world_size if self.trainer is not None else 1
        per_rank = self.metadata["train_images"] // world_size
        if per_rank < self.batch_size:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the {per_rank} training images each of {world_size} "
                "ranks reads; lower batch_size"
            )
        # Lightning warns that an IterableDataset's length may count items twice across loader workers; LitData's
        # is this rank's and each worker reads its own part, so the warning could only mislead
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        return resuming_loader_class()(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=True,  # equal batches on every rank: BatchNorm statistics and DDP's collectives agree
            collate_fn=collate_items,
            pin_memory=torch.cuda.is_available(),
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, *rest = super().on_after_batch_transfer(batch, dataloader_idx)  # uint8 to float in [-1, 1]
        if self.horizontal_flip and self.trainer is not None and self.trainer.training:
            flip = torch.rand(images.shape[0], device=images.device) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return [images, *rest]


__all__ = [
    "METADATA_FILE",
    "PreparedDataset",
    "StreamedImages",
    "StreamingImageDataModule",
    "collate_items",
    "prepare_streaming",
    "read_metadata",
]

"""Pieces of the streaming tests that ddp_spawn children must import by name: images that carry their index, and
callbacks that record which images each rank trained on."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback
from PIL import Image


def write_indexed_images(root: Path, count: int, size: int, classes: int) -> Path:
    """``count`` RGB PNGs of ``size`` px under ``root/c<k>/`` (image ``i`` in class ``i % classes``): noise, except
    pixel (0, 0), whose red and green values are ``i // 256`` and ``i % 256``. Already square and of the target
    size, so preprocessing keeps every pixel."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        pixels[0, 0, :2] = (i // 256, i % 256)
        Image.fromarray(pixels).save(folder / f"{i:05d}.png", compress_level=1)
    return root


def image_ids(images: torch.Tensor) -> list[int]:
    """The indices that :func:`write_indexed_images` put into a batch of images (uint8, or float in [-1, 1])."""
    pixels = images[:, :2, 0, 0].double()
    if images.dtype != torch.uint8:
        pixels = (pixels + 1) * 127.5
    pixels = pixels.round().long()
    return (pixels[:, 0] * 256 + pixels[:, 1]).tolist()


class SeenImages(Callback):
    """Appends ``epoch id id ...`` to ``<folder>/rank<r>.txt`` for every training batch, inside each DDP worker."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        assert batch[0].dtype == torch.float32 and batch[0].min() >= -1 and batch[0].max() <= 1
        line = " ".join(map(str, [trainer.current_epoch, *image_ids(batch[0])]))
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.txt"), "a") as f:
            f.write(line + "\n")


def read_seen(folder: Path) -> dict[int, dict[int, list[int]]]:
    """``rank -> epoch -> ids in the order trained on``, from :class:`SeenImages`' files."""
    seen: dict[int, dict[int, list[int]]] = {}
    for path in sorted(Path(folder).glob("rank*.txt")):
        rank = int(path.stem[len("rank") :])
        for line in path.read_text().splitlines():
            epoch, *ids = map(int, line.split())
            seen.setdefault(rank, {}).setdefault(epoch, []).extend(ids)
    return seen


class StopAt(Callback):
    """Saves a checkpoint at ``path`` after batch ``batch`` of epoch ``epoch`` and stops: an interrupted run."""

    def __init__(self, path: str, epoch: int, batch: int) -> None:
        self.path, self.epoch, self.batch = path, epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def anonymous_memory_bytes() -> int:
    """This process' resident anonymous memory (``RssAnon``): what it holds itself, without the file pages it reads
    through the page cache."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class MemoryAt(Callback):
    """Records :func:`anonymous_memory_bytes` once ``images`` training images have been seen, for each of
    ``images``; ``self.memory`` maps each count to the bytes then."""

    def __init__(self, *images: int) -> None:
        self.marks, self.memory, self.seen = sorted(images), {}, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += len(batch[0])
        for mark in self.marks:
            if mark not in self.memory and self.seen >= mark:
                self.memory[mark] = anonymous_memory_bytes()

"""Synthetic data in the real on-disk formats, with known answers: CAT-dataset faces and calligraphy fixtures; and
the memory a process spends on its data (proportional set size)."""

from __future__ import annotations

import builtins
import errno
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning.pytorch import Callback
from PIL import Image, ImageDraw

from lit_gans.datamodules import ImageFolderDataModule

FONTS = sorted((Path(__file__).parents[1] / "fixtures" / "fonts").glob("*.ttf"))
BACKGROUND = (60, 110, 170)
LEFT_EYE_COLOR, RIGHT_EYE_COLOR = (230, 30, 30), (30, 220, 30)


@dataclass
class CatFace:
    """Where a correct preprocessing must put the eyes in an ``image_size`` crop."""

    left_eye: tuple[float, float]
    right_eye: tuple[float, float]


def face_landmarks(center, width: float, eye_half: float, angle_deg: float) -> np.ndarray:
    """The 9 CAT landmarks of an upright face (ear bases ``width`` apart, eyes ``2 * eye_half`` apart) rotated by
    ``angle_deg`` about ``center``: left eye, right eye, mouth, left ear 1-3, right ear 1-3."""
    w = width
    upright = np.array(
        [
            [-eye_half, 0], [eye_half, 0], [0, 0.35 * w],
            [-w / 2, -0.3 * w], [-0.35 * w, -0.7 * w], [-0.15 * w, -0.4 * w],
            [0.15 * w, -0.4 * w], [0.35 * w, -0.7 * w], [w / 2, -0.3 * w],
        ]
    )
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return upright @ rot.T + np.asarray(center, dtype=float)


def write_cat_face(
    folder: Path,
    name: str,
    angle_deg: float = 20.0,
    size=(400, 360),
    center=(200, 190),
    width: float = 200.0,
    eye_half: float = 50.0,
    image_size: int = 64,
    swap_labels: bool = False,
    annotation: bool = True,
) -> CatFace:
    """Draw a face (red left eye, green right eye as seen by the viewer) into ``folder/name`` as a JPEG with its
    ``.cat`` annotation beside it, and return where the eyes must land in the crop."""
    folder.mkdir(parents=True, exist_ok=True)
    points = face_landmarks(center, width, eye_half, angle_deg)
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    r = 12
    for (x, y), color in ((points[0], LEFT_EYE_COLOR), (points[1], RIGHT_EYE_COLOR)):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
    image.save(folder / name, quality=95)
    labelled = points.copy()
    if swap_labels:
        labelled[[0, 1]] = labelled[[1, 0]]
    if annotation:
        coords = " ".join(str(int(round(v))) for v in labelled.flatten())
        (folder / f"{name}.cat").write_text(f"9 {coords} ")
    s = image_size
    return CatFace(left_eye=((0.5 - eye_half / width) * s, 0.4 * s), right_eye=((0.5 + eye_half / width) * s, 0.4 * s))


def color_centroid(image: np.ndarray, color) -> tuple[float, float]:
    """``(x, y)`` centroid of the pixels close to ``color`` in an ``(H, W, 3)`` uint8 image."""
    distance = np.abs(image.astype(int) - np.asarray(color)).sum(axis=2)
    ys, xs = np.nonzero(distance < 150)
    assert len(xs) > 0, f"no pixel of colour {color}"
    weights = 1.0 / (1 + distance[ys, xs])
    return float((xs * weights).sum() / weights.sum()), float((ys * weights).sum() / weights.sum())


def chw_to_hwc_uint8(image) -> np.ndarray:
    """A tensor ``(C, H, W)`` in [-1, 1] back to uint8 ``(H, W, C)``."""
    return ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------- memory
def proportional_set_size(pid: int | str = "self") -> int:
    """The proportional set size of process ``pid`` (default: this one) in bytes: ``Pss`` of
    ``/proc/<pid>/smaps_rollup`` (Linux), its private pages plus each shared page divided by the number of processes
    that map it. Summed over processes, a page they share (a memory-mapped file in the page cache) counts once."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/smaps_rollup has no Pss line")


def write_random_images(folder: Path, n: int, size: int, seed: int = 0, suffix: str = ".png") -> None:
    """``n`` distinct RGB images of ``size x size`` random pixels, ``00000<suffix>``, ... (``.bmp``: uncompressed, 6x
    faster to write than PNGs)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}{suffix}", **({"compress_level": 1} if suffix == ".png" else {}))


class DatasetMemory(Callback):
    """Measures the memory a datamodule's data costs each process of a fit: the growth of its proportional set size
    (:func:`proportional_set_size`) from just before the datamodule's ``setup`` read the data to the moment every
    training image of this process (its DDP shard) has passed through the fit's own train loader and the
    datamodule's ``on_after_batch_transfer``, at the start of training. Written as bytes to
    ``<folder>/rank<global rank>.txt``; picklable for ddp_spawn.

    The datamodule is a :class:`MeasuredImageFolder` (which records ``pss_before_setup``)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_start(self, trainer, pl_module) -> None:
        data = trainer.datamodule
        for batch in trainer.train_dataloader:  # every image of this rank's shard, read as training reads it
            data.on_after_batch_transfer(batch, 0)
        grown = proportional_set_size() - data.pss_before_setup
        Path(self.folder, f"rank{trainer.global_rank}.txt").write_text(str(grown))


class MeasuredImageFolder(ImageFolderDataModule):
    """An :class:`~lit_gans.datamodules.ImageFolderDataModule` that records the proportional set size of its process
    just before its ``setup`` reads the data (``pss_before_setup``), for :class:`DatasetMemory`."""

    def setup(self, stage=None) -> None:
        if self.train_set is None:
            self.pss_before_setup = proportional_set_size()
        super().setup(stage)


def disk_full_after(monkeypatch, folder: Path, files: int, code: int = errno.ENOSPC) -> None:
    """The disk below ``folder`` fills up after ``files`` more files: the next file's data cannot be written."""
    real_open = builtins.open
    state = {"left": files}

    class FullFile:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            raise OSError(code, os.strerror(code))

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(os.fspath(file)).startswith(str(folder)) and "w" in mode:
            if state["left"] <= 0:
                return FullFile(f)
            state["left"] -= 1
        return f

    monkeypatch.setattr(builtins, "open", fake_open)


def current_umask() -> int:
    """This process' umask (reading it means setting it: set back at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask

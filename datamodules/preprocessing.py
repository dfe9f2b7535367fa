"""Machinery shared by the folder datamodules: listing files (folders and zip archives), preprocessing them once on
all cores with a progress bar, counting what was skipped and why, and an on-disk cache written atomically."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from lit_gans.files import atomic_write, atomic_write_bytes

#: files that are never images, left out of a data folder (and counted in the summary's ``ignored_by_kind``):
#: labels, metadata, notes and annotations; hidden files too (:func:`non_image_kind`). Every other file is decoded,
#: whatever its name: what PIL cannot read is skipped and counted (``not_an_image``, ...)
NON_IMAGE_SUFFIXES = (
    ".txt", ".md", ".rst", ".json", ".jsonl", ".csv", ".tsv", ".yaml", ".yml", ".xml", ".html", ".ini", ".log",
    ".cat", ".db", ".py",
)  # fmt: skip
#: 2: unreadable images counted by their own reason (empty_file, not_an_image, ...); 3: images recognised by
#: content, symlinked folders followed, non-image files counted
CACHE_VERSION = 3

#: the reasons :func:`scan_folder` skips an entry for, before anything is decoded
LISTING_SKIP_REASONS = {
    "unreadable_folder": "the folder cannot be listed (permissions, I/O error)",
    "symlink_loop": "a symlinked folder that leads back to a folder it is inside",
}

#: the reasons :func:`open_image` skips a file for (keys of the summary's ``skipped_by_reason``)
IMAGE_SKIP_REASONS = {
    "unreadable_file": "the file (or zip member) cannot be read",
    "empty_file": "the file has 0 bytes",
    "not_an_image": "no image format PIL reads",
    "truncated_image": "the image data ends early",
    "image_too_large": "more pixels than PIL's decompression-bomb limit, 2 * Image.MAX_IMAGE_PIXELS",
    "corrupt_image": "an image format PIL reads, but the file cannot be decoded",
}

# file signatures of the formats PIL reads most often, to tell a damaged image from something that is no image
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_BUFFER_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


class Skipped(Exception):
    """Raised by a preprocessing function for an input that cannot be used; ``reason`` is the summary's key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class SourceFile:
    """A file on disk, or a member of a zip archive (read without extracting the archive)."""

    path: str
    member: Optional[str] = None

    @property
    def name(self) -> str:
        return os.path.basename(self.member if self.member is not None else self.path)

    @property
    def parent_name(self) -> str:
        """Name of the folder holding the file (inside the archive for members)."""
        inner = self.member if self.member is not None else self.path
        return os.path.basename(os.path.dirname(inner.rstrip("/")))

    def read_bytes(self) -> bytes:
        if self.member is None:
            return Path(self.path).read_bytes()
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(self.member)

    def __str__(self) -> str:
        return self.path if self.member is None else f"{self.path}!{self.member}"


def non_image_kind(name: str) -> Optional[str]:
    """Why a file named ``name`` is no image to try: ``"hidden"`` (``.DS_Store``, macOS' ``._*`` and ``__MACOSX``
    resource forks, temporary files), or its suffix when that is one of :data:`NON_IMAGE_SUFFIXES`; ``None`` for
    any other file, which is decoded to find out (a JPEG named ``photo`` or ``photo.heic`` is an image)."""
    if name.startswith("."):
        return "hidden"
    suffix = os.path.splitext(name)[1].lower()
    return suffix if suffix in NON_IMAGE_SUFFIXES else None


@dataclass
class FolderListing:
    """What :func:`scan_folder` found: the ``files`` to decode (by content, whatever their names), the
    ``left_out`` non-image files (:func:`non_image_kind`), and the entries that could not be listed at all
    (``(path, reason, detail)`` with a reason of :data:`LISTING_SKIP_REASONS`)."""

    files: list[SourceFile] = field(default_factory=list)
    left_out: list[SourceFile] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, source: SourceFile) -> None:
        (self.left_out if non_image_kind(source.name) else self.files).append(source)


def scan_folder(root: Path, include_zips: bool = True) -> FolderListing:
    """Every file under ``root``, recursively, and the members of the ``*.zip`` archives found there, sorted (files
    of a folder, then its subfolders), so that the order (and the cache) does not depend on the filesystem.

    Symlinked folders are followed, except one that leads back to a folder it is inside (a loop: counted as
    ``symlink_loop``); a dangling symlink is listed like a file (decoding it counts it as ``unreadable_file``); a
    folder or archive that cannot be read is counted, never silently passed over."""
    listing = FolderListing()

    def visit(folder: str, ancestors: frozenset[str]) -> None:
        try:
            with os.scandir(folder) as entries:
                ordered = sorted(entries, key=lambda e: e.name)
        except OSError as err:
            listing.skipped.append((folder, "unreadable_folder", f"{folder}: {err.strerror or err}"))
            return
        folders = []
        for entry in ordered:
            try:
                is_folder = entry.is_dir()  # follows symlinks; False for a dangling one
            except OSError:
                is_folder = False
            if is_folder:
                folders.append(entry.path)
            elif include_zips and entry.name.lower().endswith(".zip"):
                add_archive(entry.path)
            else:
                listing.add(SourceFile(entry.path))
        for path in folders:
            real = os.path.realpath(path)
            if real in ancestors:
                listing.skipped.append((path, "symlink_loop", f"{path} leads back to {real}, which holds it"))
            else:
                visit(path, ancestors | {real})

    def add_archive(path: str) -> None:
        try:
            with zipfile.ZipFile(path) as archive:
                members = sorted(m for m in archive.namelist() if not m.endswith("/"))
        except (OSError, zipfile.BadZipFile) as err:
            listing.skipped.append((path, "unreadable_file", f"{path} is not a readable zip archive: {err}"))
            return
        for member in members:
            listing.add(SourceFile(path, member))

    visit(str(root), frozenset({os.path.realpath(root)}))
    return listing


def left_out_summary(left_out: Sequence[SourceFile]) -> dict[str, Any]:
    """The summary's count of the non-image files left out, by kind (:func:`non_image_kind`)."""
    kinds = Counter(non_image_kind(f.name) for f in left_out)
    return {"ignored_files": sum(kinds.values()), "ignored_by_kind": dict(sorted(kinds.items()))}


def _image_format(data: bytes) -> Optional[str]:
    """The image format ``data`` starts like, from its signature, or ``None``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in _SIGNATURES if data.startswith(signature)), None)


def _describe(err: BaseException, source: SourceFile) -> str:
    """PIL's message, with the in-memory buffer it names replaced by the file."""
    return _BUFFER_REPR.sub(str(source), str(err)) or type(err).__name__


def open_image(source: SourceFile, mode: str) -> Image.Image:
    """Decode ``source`` into a PIL image of ``mode`` (EXIF orientation applied), or raise :class:`Skipped` with
    one of the reasons of :data:`IMAGE_SKIP_REASONS` and a detail that names the file (``path`` or
    ``archive.zip!member``)."""
    try:
        data = source.read_bytes()
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as err:  # also a zip member with a bad CRC
        raise Skipped("unreadable_file", f"{source}: {err}") from err
    if not data:
        raise Skipped("empty_file", f"{source}: 0 bytes")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return ImageOps.exif_transpose(image).convert(mode)
    except Image.DecompressionBombError as err:
        raise Skipped("image_too_large", f"{source}: {_describe(err, source)}") from err
    except UnidentifiedImageError as err:
        kind = _image_format(data)
        if kind is None:
            raise Skipped("not_an_image", f"{source}: no image format PIL reads ({len(data)} bytes, starting {data[:8]!r})") from err
        raise Skipped("corrupt_image", f"{source}: starts like a {kind} file but its header cannot be read ({len(data)} bytes)") from err
    except (OSError, EOFError, SyntaxError, ValueError) as err:  # PIL's errors while decoding
        message = _describe(err, source)
        if isinstance(err, EOFError) or "truncated" in message.lower():
            raise Skipped("truncated_image", f"{source}: {message} ({len(data)} bytes)") from err
        raise Skipped("corrupt_image", f"{source}: {type(err).__name__}: {message}") from err
    except Exception as err:  # anything else PIL raises on a broken file
        raise Skipped("corrupt_image", f"{source}: {type(err).__name__}: {_describe(err, source)}") from err


def fingerprint(files: Iterable[SourceFile]) -> str:
    """A digest of names, sizes and modification times: a changed, added or removed file changes the cache key
    (a file that cannot be stat'ed, e.g. a dangling symlink, counts by its name)."""
    h = hashlib.sha256()
    for f in files:
        try:
            stat = os.stat(f.path)
        except OSError:
            h.update(f"{f}\0unreadable\n".encode())
            continue
        h.update(f"{f}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cache_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _apply(job: tuple[Callable, Any, Any]) -> tuple[Optional[np.ndarray], Any, Optional[str], str]:
    fn, item, label = job
    try:
        out = fn(item)
    except Skipped as skip:
        return None, label, skip.reason, skip.detail
    array, note = out if isinstance(out, tuple) else (out, "")
    return array, label, None, note


def _leave_signals_to_the_parent() -> None:
    """A decoding process ignores Ctrl-C (the terminal signals every process of the command; the parent stops the
    pool) and dies quietly of SIGTERM (not with the command's handler, which it inherited when forked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def preprocess(
    fn: Callable[[Any], np.ndarray],
    items: Sequence[Any],
    labels: Sequence[Any],
    workers: int,
    desc: str,
) -> tuple[list[np.ndarray], list[Any], list[tuple[str, str, str]]]:
    """Run ``fn`` over ``items`` on ``workers`` processes (0: in this process) with a progress bar, keeping the
    input order. ``fn`` is picklable and returns a uint8 ``(C, H, W)`` array (or ``(array, note)`` to flag a kept
    image, e.g. "dirty_cropped"), or raises :class:`Skipped`.

    Returns the arrays, their labels, ``(item, reason, detail)`` for every skipped item, and ``(item, note)`` for
    every flagged one.
    """
    jobs = [(fn, item, label) for item, label in zip(items, labels)]
    if workers > 0 and len(jobs) > 1:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_leave_signals_to_the_parent)
        try:
            results = list(tqdm(pool.map(_apply, jobs, chunksize=32), total=len(jobs), desc=desc, leave=False))
        finally:  # Ctrl-C or an error: the blocks under way finish, the rest are dropped, no process is left
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        results = [_apply(job) for job in tqdm(jobs, desc=desc, leave=False)]
    arrays, kept_labels, skipped, notes = [], [], [], []
    for (array, label, reason, detail), item in zip(results, items):
        if reason is None:
            arrays.append(array)
            kept_labels.append(label)
            if detail:
                notes.append((_display(item), detail))
        else:
            skipped.append((_display(item), reason, detail))
    return arrays, kept_labels, skipped, notes


def _display(item: Any) -> str:
    return str(item[0] if isinstance(item, tuple) else item)


def summarize(
    used: int,
    skipped: Sequence[tuple[str, str, str]],
    notes: Sequence[tuple[str, str]] = (),
    extra: Optional[dict] = None,
) -> dict[str, Any]:
    """The summary saved with the cache: how many images were used, per reason which were skipped, and which kept
    images were flagged (e.g. cleaned)."""
    reasons = Counter(reason for _, reason, _ in skipped)
    flags = Counter(note for _, note in notes)
    summary = {
        "used": used,
        "skipped": sum(reasons.values()),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "skipped_files": [{"file": f, "reason": r, "detail": d} for f, r, d in skipped],
        "flagged_by_kind": dict(sorted(flags.items())),
        "flagged_files": [{"file": f, "flag": n} for f, n in notes],
    }
    summary.update(extra or {})
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """One line: images used, skipped by reason, flagged by kind, non-image files left out by kind."""
    reasons = ", ".join(f"{k}: {v}" for k, v in summary["skipped_by_reason"].items()) or "none"
    text = f"{summary['used']} images used, {summary['skipped']} skipped ({reasons})"
    flags = ", ".join(f"{k}: {v}" for k, v in summary.get("flagged_by_kind", {}).items())
    text = f"{text}; flagged: {flags}" if flags else text
    ignored = summary.get("ignored_files", 0)
    if ignored:
        kinds = ", ".join(f"{k}: {v}" for k, v in summary["ignored_by_kind"].items())
        text += f"; {ignored} non-image file{'s' if ignored != 1 else ''} left out ({kinds})"
    return text


def stack_images(arrays: list[np.ndarray]) -> torch.Tensor:
    """One uint8 tensor ``(N, C, H, W)`` of the images :func:`preprocess` returned, emptying ``arrays`` as it copies
    them: the dataset is held once (plus one image), not twice as ``np.stack`` would."""
    images = torch.empty((len(arrays), *arrays[0].shape), dtype=torch.uint8)
    out = images.numpy()  # the same memory; numpy copies read-only arrays (PIL's) without a warning
    for i in range(len(arrays)):
        out[i] = arrays[i]
        arrays[i] = None  # type: ignore[call-overload]
    arrays.clear()
    return images


def save_cache(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` ``payload`` atomically, straight to the file (no copy of it in memory), with its summary as
    JSON beside it (``<cache>.summary.json``). :func:`load_cache` maps it back."""
    atomic_write(path, lambda file: torch.save({"version": CACHE_VERSION, **payload}, file))
    summary = json.dumps(payload.get("summary", {}), indent=2, ensure_ascii=False).encode()
    atomic_write_bytes(path.with_name(path.name + ".summary.json"), summary)


def load_cache(path: Path) -> Optional[dict[str, Any]]:
    """The cache at ``path``, or ``None`` when there is none or it is unreadable or of another version.

    Its tensors are memory-mapped (``torch.load(mmap=True)``), not read: pages are read when a batch needs them,
    and every process of a machine that maps the file (DDP ranks, loader workers) shares one copy of them in the
    page cache. ``weights_only=True``: a planted file must not run code (it is refused, and rebuilt)."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, mmap=True, weights_only=True)
    except Exception:
        return None
    return payload if isinstance(payload, dict) and payload.get("version") == CACHE_VERSION else None


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def square_pad(image: Image.Image, fill: Any) -> Image.Image:
    """Pad to a square on ``fill``, centred, keeping the aspect ratio."""
    w, h = image.size
    side = max(w, h)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def square_crop(image: Image.Image) -> Image.Image:
    """The central square of ``image``."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def to_chw_uint8(image: Image.Image) -> np.ndarray:
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


__all__ = [
    "Skipped",
    "SourceFile",
    "FolderListing",
    "scan_folder",
    "non_image_kind",
    "left_out_summary",
    "NON_IMAGE_SUFFIXES",
    "LISTING_SKIP_REASONS",
    "open_image",
    "IMAGE_SKIP_REASONS",
    "preprocess",
    "summarize",
    "save_cache",
    "stack_images",
    "load_cache",
    "square_pad",
    "square_crop",
]

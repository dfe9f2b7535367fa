"""open_image: every kind of bad image file is skipped with its own reason, and the detail names the file."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from lit_gans.datamodules import ImageFolderDataModule
from lit_gans.datamodules.preprocessing import IMAGE_SKIP_REASONS, Skipped, SourceFile, open_image


def encoded(fmt: str) -> bytes:
    """A real 64x64 noise image in ``fmt`` (noise, so that the compressed data is long enough to cut)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb_png(side: int) -> bytes:
    """A valid 1-bit PNG of ``side x side`` black pixels: tiny on disk, ``side**2`` pixels once decoded."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    compressor, row = zlib.compressobj(9), b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def skip_of(path, member=None) -> Skipped:
    with pytest.raises(Skipped) as err:
        open_image(SourceFile(str(path), member), "RGB")
    assert "BytesIO" not in err.value.detail and err.value.detail.startswith(str(SourceFile(str(path), member)))
    assert err.value.reason in IMAGE_SKIP_REASONS
    return err.value


def test_each_kind_of_bad_file_has_its_own_reason_and_names_the_file(tmp_path):
    png, jpeg = encoded("PNG"), encoded("JPEG")
    files = {
        "empty.png": (b"", "empty_file"),
        "notes.jpg": (b"shopping list: milk, eggs\n", "not_an_image"),
        "half.png": (png[: len(png) // 2], "truncated_image"),
        "half.jpg": (jpeg[: len(jpeg) // 2], "truncated_image"),
        "short.png": (png[:20], "truncated_image"),  # the header breaks off
        # a PNG whose compressed pixel data was overwritten: PIL reads the header, not the pixels
        "scrambled.png": (png[:200] + bytes(b ^ 0xFF for b in png[200:260]) + png[260:], "corrupt_image"),
        # a PNG signature, then a header that is no PNG header
        "header.png": (png[:16] + b"\xff" * 8 + png[24:], "corrupt_image"),
    }
    for name, (data, reason) in files.items():
        (tmp_path / name).write_bytes(data)
        assert skip_of(tmp_path / name).reason == reason, name
    assert "0 bytes" in skip_of(tmp_path / "empty.png").detail
    assert "truncated" in skip_of(tmp_path / "half.png").detail
    assert "starts like a PNG file" in skip_of(tmp_path / "header.png").detail

    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 100  # PIL refuses more than twice MAX_IMAGE_PIXELS
    bomb = decompression_bomb_png(side)
    assert len(bomb) < 1_000_000
    (tmp_path / "bomb.png").write_bytes(bomb)
    too_large = skip_of(tmp_path / "bomb.png")
    assert too_large.reason == "image_too_large" and str(side * side) in too_large.detail

    # a zip member whose stored bytes were damaged: its CRC does not match, the bytes cannot be read
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.png", png)
    raw = bytearray(archive.read_bytes())
    raw[raw.index(png[100:120]) + 5] ^= 0xFF
    archive.write_bytes(bytes(raw))
    assert skip_of(archive, "a.png").reason == "unreadable_file"

    (tmp_path / "good.png").write_bytes(png)
    assert open_image(SourceFile(str(tmp_path / "good.png")), "RGB").size == (64, 64)


def test_the_summary_counts_each_reason(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    png = encoded("PNG")
    (raw / "good.png").write_bytes(png)
    (raw / "empty.png").write_bytes(b"")
    (raw / "text.png").write_bytes(b"not an image")
    (raw / "cut.png").write_bytes(png[: len(png) // 2])
    dm = ImageFolderDataModule(raw, image_size=16, cache_dir=tmp_path / "cache", batch_size=1, preprocess_workers=0)
    dm.prepare_data()
    dm.setup()
    assert len(dm.train_set) == 1
    assert dm.summary["skipped_by_reason"] == {"empty_file": 1, "not_an_image": 1, "truncated_image": 1}
    details = {s["file"].rsplit("/", 1)[-1]: s["detail"] for s in dm.summary["skipped_files"]}
    assert set(details) == {"empty.png", "text.png", "cut.png"}
    assert all(str(raw / name) in detail and "BytesIO" not in detail for name, detail in details.items())

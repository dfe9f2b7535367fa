"""Nothing under a data folder is dropped without a count (issue 18, item 15): dangling symlinks are skipped as
unreadable, symlinked folders are followed (loops are not), images are recognised by their content rather than by
their file name, and the non-image files left out are counted in the summary."""

from __future__ import annotations

import os

import numpy as np
import pytest
from data_testing import write_cat_face
from PIL import Image

from lit_gans.datamodules import CalligraphyDataModule, CatFacesDataModule, ImageFolderDataModule


def write_images(folder, n, fmt="PNG", suffix=".png", size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"img{i}{suffix}", fmt)


def prepared(cls, tmp_path, data_dir, **kwargs):
    dm = cls(data_dir, cache_dir=tmp_path / "cache", batch_size=2, preprocess_workers=0, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def test_a_dangling_symlink_is_skipped_as_unreadable_and_counted(tmp_path):
    raw = tmp_path / "raw"
    write_images(raw, 3)
    (raw / "gone.png").symlink_to(tmp_path / "deleted.png")
    dm = prepared(ImageFolderDataModule, tmp_path, raw, image_size=16)
    assert len(dm.train_set) == 3
    assert dm.summary["skipped_by_reason"] == {"unreadable_file": 1}
    assert dm.summary["skipped_files"][0]["file"] == str(raw / "gone.png")


@pytest.mark.parametrize("cls", [ImageFolderDataModule, CalligraphyDataModule])
def test_a_symlinked_class_folder_keeps_its_class_and_a_folder_loop_is_not_followed(tmp_path, cls):
    raw = tmp_path / "raw"
    write_images(raw / "cats", 2)
    write_images(tmp_path / "elsewhere" / "dogs", 6)
    (raw / "dogs").symlink_to(tmp_path / "elsewhere" / "dogs", target_is_directory=True)
    (raw / "cats" / "again").symlink_to(raw, target_is_directory=True)  # a loop: listed once, not forever
    kwargs = {"labels": True} if cls is ImageFolderDataModule else {}
    dm = prepared(cls, tmp_path, raw, image_size=16, **kwargs)
    assert dm.classes == ["cats", "dogs"]
    assert dm.train_set.tensors[1].tolist() == [0, 0] + [1] * 6
    assert dm.summary["skipped_by_reason"] == {"symlink_loop": 1}
    assert dm.summary["skipped_files"][0]["file"] == str(raw / "cats" / "again")


def test_images_are_recognised_by_content_and_left_out_files_are_counted(tmp_path):
    raw = tmp_path / "raw"
    write_images(raw, 1)
    write_images(raw / "jpeg_without_extension", 1, fmt="JPEG", suffix="")
    write_images(raw / "jpeg_named_heic", 1, fmt="JPEG", suffix=".heic")
    (raw / "archive.tar.gz").write_bytes(b"\x1f\x8b not an image")  # an unknown file: tried, and counted
    (raw / "labels.csv").write_text("img0.png,cat\n")  # sidecar files: left out, and counted
    (raw / "README.txt").write_text("my photos\n")
    (raw / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    dm = prepared(ImageFolderDataModule, tmp_path, raw, image_size=16)
    assert len(dm.train_set) == 3
    assert dm.summary["skipped_by_reason"] == {"not_an_image": 1}
    assert dm.summary["skipped_files"][0]["file"] == str(raw / "archive.tar.gz")
    assert dm.summary["ignored_files"] == 3
    assert dm.summary["ignored_by_kind"] == {".csv": 1, ".txt": 1, "hidden": 1}


def test_the_console_summary_says_what_was_left_out(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_images(raw, 2)
    (raw / "notes.txt").write_text("x")
    (raw / "gone.png").symlink_to(tmp_path / "deleted.png")
    from lit_gans.datamodules.preprocessing import format_summary

    dm = prepared(ImageFolderDataModule, tmp_path, raw, image_size=16)
    assert format_summary(dm.summary) == (
        "2 images used, 1 skipped (unreadable_file: 1); 1 non-image file left out (.txt: 1)"
    )


def test_cat_faces_follow_symlinks_and_take_the_image_an_annotation_names(tmp_path):
    raw = tmp_path / "raw"
    write_cat_face(raw / "CAT_00", "00000001_000.jpg")
    write_cat_face(tmp_path / "elsewhere" / "CAT_01", "00000002_000.jpg")
    (raw / "CAT_01").symlink_to(tmp_path / "elsewhere" / "CAT_01", target_is_directory=True)
    write_cat_face(raw / "CAT_00", "00000001_001.jpeg")  # annotated as 00000001_001.jpeg.cat
    (raw / "CAT_00" / "00000001_002.jpg").symlink_to(tmp_path / "deleted.jpg")
    (raw / "CAT_00" / "00000001_002.jpg.cat").write_text((raw / "CAT_00" / "00000001_000.jpg.cat").read_text())
    dm = prepared(CatFacesDataModule, tmp_path, raw, image_size=64)
    assert len(dm.train_set) == 3
    assert dm.summary["skipped_by_reason"] == {"unreadable_file": 1}


def test_an_unreadable_folder_is_counted_not_silently_skipped(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_images(raw, 2)
    write_images(raw / "locked", 2)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(raw / "locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root ignores permissions, so the refusal is simulated
    dm = prepared(ImageFolderDataModule, tmp_path, raw, image_size=16)
    assert len(dm.train_set) == 2
    assert dm.summary["skipped_by_reason"] == {"unreadable_folder": 1}
    assert "Permission denied" in dm.summary["skipped_files"][0]["detail"]


def test_a_class_folder_without_a_usable_image_is_refused_naming_it(tmp_path):
    raw = tmp_path / "raw"
    write_images(raw / "cats", 2)
    (raw / "notes").mkdir()
    (raw / "notes" / "draft.docx").write_bytes(b"PK\x03\x04 not an image")  # decoded, and no image: no class
    with pytest.raises(ValueError, match=r"the class folder .*notes has no usable image.*not_an_image: 1"):
        prepared(ImageFolderDataModule, tmp_path, raw, image_size=16, labels=True)

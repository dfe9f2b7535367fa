"""Cat-face preprocessing on synthetic faces in the real CAT format whose correct crop is known."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from data_testing import LEFT_EYE_COLOR, RIGHT_EYE_COLOR, chw_to_hwc_uint8, color_centroid, face_landmarks, write_cat_face
from PIL import Image

from lit_gans.datamodules import CatFacesDataModule
from lit_gans.datamodules.base import float_images
from lit_gans.datamodules.cat_faces import crop_cat_face, parse_cat_annotation
from lit_gans.datamodules.preprocessing import Skipped


def module(tmp_path, data_dir, **kwargs) -> CatFacesDataModule:
    kwargs.setdefault("preprocess_workers", 0)
    dm = CatFacesDataModule(data_dir, cache_dir=tmp_path / "cache", batch_size=2, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.mark.parametrize("angle", [-35.0, 0.0, 12.5, 40.0])
def test_face_is_levelled_and_centred_where_the_rule_says(tmp_path, angle):
    expected = write_cat_face(tmp_path / "raw" / "CAT_00", "00000001_000.jpg", angle_deg=angle)
    dm = module(tmp_path, tmp_path / "raw", image_size=64)
    images = float_images(dm.train_set)
    assert images.shape == (1, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    face = chw_to_hwc_uint8(images[0])
    left, right = color_centroid(face, LEFT_EYE_COLOR), color_centroid(face, RIGHT_EYE_COLOR)
    assert abs(left[1] - right[1]) < 1.0  # level
    for measured, wanted in ((left, expected.left_eye), (right, expected.right_eye)):
        assert abs(measured[0] - wanted[0]) < 1.5 and abs(measured[1] - wanted[1]) < 1.5, (measured, wanted)


def test_swapped_eye_labels_give_the_same_crop():
    from lit_gans.datamodules.cat_faces import level_and_crop_geometry

    correct = face_landmarks((200, 180), 200, 50, -6)  # slightly tilted, eyes labelled as the viewer sees them
    swapped = correct.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    # the reference's swap condition holds: "left" eye right of and above the "right" one, mouth right of it
    assert swapped[0, 0] > swapped[1, 0] and swapped[0, 1] < swapped[1, 1] and swapped[2, 0] > swapped[1, 0]
    for a, b in zip(level_and_crop_geometry(swapped), level_and_crop_geometry(correct)):
        assert np.allclose(a, b)
    image = Image.effect_noise((400, 360), 40).convert("RGB")
    assert np.array_equal(np.asarray(crop_cat_face(image, swapped, 64)), np.asarray(crop_cat_face(image, correct, 64)))


def test_border_is_filled_gray_or_skipped(tmp_path):
    # a face near the bottom edge: all landmarks inside the photo, the bottom of the crop (0.6 x side below the
    # eyes) outside it
    write_cat_face(tmp_path / "raw", "00000001_001.jpg", angle_deg=0, center=(200, 260), width=200)
    dm = module(tmp_path, tmp_path / "raw", image_size=64)
    face = chw_to_hwc_uint8(float_images(dm.train_set)[0])
    assert np.abs(face[62, 32].astype(int) - 128).max() <= 3  # below the photo: gray
    assert np.abs(face[50, 32].astype(int) - (60, 110, 170)).max() <= 6  # inside it: the photo's background
    with pytest.raises(ValueError, match="crop_outside_image: 1"):
        module(tmp_path, tmp_path / "raw", image_size=64, border="skip")


def test_unusable_inputs_are_skipped_and_counted(tmp_path):
    raw = tmp_path / "raw" / "CAT_01"
    write_cat_face(raw, "00000002_000.jpg")  # good
    write_cat_face(raw, "00000002_001.jpg", width=50, eye_half=12)  # face of 50 px < min_size 64
    (raw / "00000002_002.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (raw / "00000002_002.jpg.cat").write_text("9 " + " ".join(["100"] * 18))
    write_cat_face(raw, "00000002_003.jpg")
    (raw / "00000002_003.jpg.cat").write_text("9 1 2 3")  # malformed
    write_cat_face(raw, "00000002_004.jpg", annotation=False)  # missing annotation
    write_cat_face(raw, "00000002_005.jpg")
    (raw / "00000002_005.jpg.cat").write_text("9 " + " ".join(["5000"] * 18))  # outside the image
    dm = module(tmp_path, tmp_path / "raw", image_size=64)
    assert len(dm.train_set) == 1
    assert dm.summary["skipped_by_reason"] == {
        "crop_too_small": 1,
        "landmarks_outside_image": 1,
        "malformed_annotation": 1,
        "missing_annotation": 1,
        "not_an_image": 1,
    }
    assert {s["file"].split("/")[-1] for s in dm.summary["skipped_files"]} == {f"00000002_00{i}.jpg" for i in range(1, 6)}
    # the summary is saved beside the cache
    assert list((tmp_path / "cache").glob("*.summary.json"))


def test_zero_usable_images_is_an_error_that_says_why(tmp_path):
    write_cat_face(tmp_path / "raw", "00000001_000.jpg", width=40, eye_half=10)
    with pytest.raises(ValueError, match="no usable image.*crop_too_small: 1"):
        module(tmp_path, tmp_path / "raw", image_size=64)


def test_zip_archives_are_read_directly(tmp_path):
    src = tmp_path / "src"
    expected = write_cat_face(src / "CAT_00", "00000001_000.jpg", angle_deg=15)
    write_cat_face(src / "CAT_00", "00000001_001.jpg", angle_deg=-10)
    raw = tmp_path / "raw"
    raw.mkdir()
    with zipfile.ZipFile(raw / "CAT_DATASET_01.zip", "w") as archive:
        for f in sorted((src / "CAT_00").iterdir()):
            archive.write(f, f"CAT_00/{f.name}")
    dm = module(tmp_path, raw, image_size=64)
    assert len(dm.train_set) == 2
    face = chw_to_hwc_uint8(float_images(dm.train_set)[0])
    left = color_centroid(face, LEFT_EYE_COLOR)
    assert abs(left[0] - expected.left_eye[0]) < 1.5 and abs(left[1] - expected.left_eye[1]) < 1.5


def test_errata_and_exclusions(tmp_path):
    raw = tmp_path / "raw"
    write_cat_face(raw / "CAT_00", "00000003_015.jpg", annotation=False)  # the dataset ships it unlabelled
    (raw / "CAT_00" / "00000003_019.jpg.cat").write_text("9 " + " ".join(["1"] * 18))  # the wrong one, no image
    write_cat_face(tmp_path / "fix", "00000003_015.jpg")  # the separately published corrected annotation
    (raw / "00000003_015.jpg.cat").write_text((tmp_path / "fix" / "00000003_015.jpg.cat").read_text())
    write_cat_face(raw / "CAT_00", "00000004_000.jpg")
    write_cat_face(raw / "CAT_00", "00000004_001.jpg")
    dm = module(tmp_path, raw, image_size=64, exclude=["00000004_001.jpg"])
    assert len(dm.train_set) == 2
    assert dm.summary["skipped_by_reason"] == {"excluded": 1}
    assert dm.summary["annotations_without_image"] == []  # 00000003_019.jpg.cat ignored by the errata
    off = module(tmp_path, raw, image_size=64, errata=False)
    assert off.summary["annotations_without_image"] == ["00000003_019.jpg.cat"]
    exclusion_file = tmp_path / "outliers.txt"
    exclusion_file.write_text("00000004_000.jpg\n00000004_001.jpg.cat\n")
    assert len(module(tmp_path, raw, image_size=64, exclude=str(exclusion_file)).train_set) == 1


def test_min_size_128_keeps_only_big_faces(tmp_path):
    write_cat_face(tmp_path / "raw", "00000001_000.jpg", width=200)
    write_cat_face(tmp_path / "raw", "00000001_001.jpg", width=100, eye_half=25)
    assert len(module(tmp_path, tmp_path / "raw", image_size=64, min_size=64).train_set) == 2
    dm = module(tmp_path, tmp_path / "raw", image_size=128)
    assert len(dm.train_set) == 1 and dm.image_shape == (3, 128, 128)


def test_parse_annotation():
    pts = parse_cat_annotation("9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 ")
    assert pts.shape == (9, 2) and pts[8].tolist() == [17, 18]
    with pytest.raises(Skipped, match="malformed_annotation"):
        parse_cat_annotation("8 1 2")


def test_horizontal_flip_is_off_by_default_and_flips_about_half_when_on(tmp_path):
    import torch

    for i in range(8):
        write_cat_face(tmp_path / "raw", f"00000001_00{i}.jpg", angle_deg=5 * i)
    dm = module(tmp_path, tmp_path / "raw", image_size=32, min_size=32)

    class FakeTrainer:
        training = True

    batch = list(dm.train_set.tensors)  # uint8, as the loader yields it
    floats = float_images(dm.train_set)
    dm.trainer = FakeTrainer()
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)[0], floats)  # converted, not flipped
    dm.horizontal_flip = True
    torch.manual_seed(0)
    out = dm.on_after_batch_transfer(batch, 0)[0]
    flipped = [torch.equal(o, x.flip(-1)) for o, x in zip(out, floats)]
    kept = [torch.equal(o, x) for o, x in zip(out, floats)]
    assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < 8


def test_download_without_network_fails_fast_naming_the_files(tmp_path, monkeypatch):
    import time

    import lit_gans.datamodules.cat_faces as cat_faces

    monkeypatch.setattr(cat_faces, "CAT_DATASET_URLS", ("http://127.0.0.1:9/CAT_DATASET_01.zip",) + cat_faces.CAT_DATASET_URLS[1:])
    dm = CatFacesDataModule(tmp_path / "cats", download=True, cache_dir=tmp_path / "cache")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match=r"could not download .*CAT_DATASET_01\.zip.*CAT_DATASET_02\.zip"):
        dm.prepare_data()
    assert time.monotonic() - start < 30
    # with the images already there nothing is downloaded
    write_cat_face(tmp_path / "have", "00000001_000.jpg")
    assert CatFacesDataModule(tmp_path / "have", download=True, cache_dir=tmp_path / "c", preprocess_workers=0).prepare_data().exists()

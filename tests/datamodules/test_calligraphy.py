"""Calligraphy on a small fixture rendered from the fonts in tests/fixtures/fonts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_testing import FONTS
from PIL import Image

from lit_gans.datamodules import CalligraphyDataModule, render_font_dataset
from lit_gans.datamodules.base import float_images
from lit_gans.datamodules.calligraphy import font_faces

CHARS = "永和二"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("calligraphy") / "train"
    used = render_font_dataset(root, CHARS, fonts=FONTS, images_per_font=4, dirty_fraction=0.5, seed=3)
    return root, used


def module(tmp_path, data_dir, **kwargs) -> CalligraphyDataModule:
    kwargs.setdefault("preprocess_workers", 0)
    dm = CalligraphyDataModule(data_dir, cache_dir=tmp_path / "cache", batch_size=4, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def test_renderer_uses_every_covering_font_in_the_competition_layout(rendered):
    root, used = rendered
    assert all(len(fonts) == 2 for fonts in used.values())  # UKai and UMing both cover the characters
    assert sorted(p.name for p in root.iterdir()) == sorted(CHARS)
    sizes = [Image.open(p).size for p in root.rglob("*.png")]
    assert len(sizes) == 3 * 2 * 4
    assert all(200 <= s <= 400 for size in sizes for s in size) and any(w != h for w, h in sizes)


def test_fonts_without_the_glyph_are_not_used(tmp_path):
    used = render_font_dataset(tmp_path, "永龍", fonts=FONTS, images_per_font=1)  # 龍 is not in the subsets
    assert used["龍"] == [] and not (tmp_path / "龍").exists()
    with pytest.raises(ValueError, match="no installed font covers"):
        render_font_dataset(tmp_path / "none", "龍", fonts=FONTS)
    assert all(ord("永") in cmap for _, _, _, cmap in font_faces(FONTS))


def test_shapes_range_and_labels_match_folders(rendered, tmp_path):
    root, _ = rendered
    dm = module(tmp_path, root, image_size=64)
    images, labels = float_images(dm.train_set), dm.train_set.labels
    assert dm.image_shape == (1, 64, 64) and images.shape == (24, 1, 64, 64)
    assert images.min() >= -1 and images.max() <= 1
    assert dm.num_classes == 3 and dm.classes == sorted(CHARS)
    counts = {c: len(list((root / c).glob("*.png"))) for c in CHARS}
    assert {dm.classes[i]: int(n) for i, n in enumerate(torch.bincount(labels))} == counts
    assert images.mean() > 0.5  # dark ink on light paper, not inverted
    inverted = module(tmp_path, root, image_size=64, invert=True)
    assert torch.allclose(float_images(inverted.train_set), -images, atol=1e-6)


def test_num_classes_is_known_before_any_image_is_read(rendered, tmp_path):
    root, _ = rendered
    assert CalligraphyDataModule(root, cache_dir=tmp_path).num_classes == 3


def test_aspect_ratio_is_preserved_by_padding_on_the_paper_colour(tmp_path):
    folder = tmp_path / "train" / "一"
    folder.mkdir(parents=True)
    image = Image.new("L", (400, 200), 240)
    image.paste(0, (50, 50, 350, 150))  # a 300 x 100 block of ink
    image.save(folder / "wide.png")
    dm = module(tmp_path, tmp_path / "train", image_size=64)
    out = ((float_images(dm.train_set)[0, 0].numpy() + 1) * 127.5).round()
    ink = np.argwhere(out < 120)
    height, width = np.ptp(ink[:, 0]) + 1, np.ptp(ink[:, 1]) + 1
    assert abs(width / height - 3.0) < 0.3  # still three times as wide as high
    assert abs(out[2, 32] - 240) <= 2 and abs(out[61, 32] - 240) <= 2  # padding is paper, not black


def test_dirty_and_unreadable_files_are_counted(rendered, tmp_path):
    root, _ = rendered
    dirty = {f"{p.parent.name}/{p.name}" for p in root.rglob("*_dirty.png")}
    assert 0 < len(dirty) < 24
    kept = module(tmp_path, root, image_size=64)
    flagged = {"/".join(f["file"].split("/")[-2:]) for f in kept.summary["flagged_files"]}
    assert flagged == dirty and kept.summary["flagged_by_kind"] == {"dirty_kept": len(dirty)}
    skipped = module(tmp_path, root, image_size=64, dirty="skip")
    assert len(skipped.train_set) == 24 - len(dirty) and skipped.summary["skipped_by_reason"] == {"dirty": len(dirty)}
    cropped = module(tmp_path, root, image_size=64, dirty="crop")
    assert len(cropped.train_set) == 24 and cropped.summary["flagged_by_kind"] == {"dirty_cropped": len(dirty)}

    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(root, broken)
    (broken / "永" / "scan.jpg").write_bytes(b"not an image")
    dm = module(tmp_path, broken, image_size=64)
    assert dm.summary["skipped_by_reason"] == {"not_an_image": 1} and len(dm.train_set) == 24


def test_class_balanced_sampling(tmp_path, rendered):
    root, _ = rendered
    import shutil

    lopsided = tmp_path / "lopsided"
    shutil.copytree(root, lopsided)
    for p in sorted((lopsided / "和").glob("*.png"))[:6]:  # 2 left of 8
        p.unlink()
    dm = module(tmp_path, lopsided, image_size=32, balanced_classes=True)
    loader = dm.train_dataloader()
    seen = torch.cat([y for _ in range(60) for _, y in loader])
    share = torch.bincount(seen, minlength=3).float() / len(seen)
    assert torch.all((share - 1 / 3).abs() < 0.06), share


def test_class_names_are_the_characters_and_counts_the_training_split(rendered, tmp_path):
    root, _ = rendered
    assert CalligraphyDataModule(root, cache_dir=tmp_path).class_names == sorted(CHARS)  # before any image is read
    dm = module(tmp_path, root, image_size=32)
    counts = {c: len(list((root / c).glob("*.png"))) for c in CHARS}
    assert dict(zip(dm.class_names, dm.class_counts().tolist())) == counts


def test_a_conditional_gan_on_balanced_characters_generates_for_every_character_equally(tmp_path, rendered):
    import shutil

    from lightning.pytorch import Trainer, seed_everything

    from lit_gans import DCGAN

    seed_everything(0)
    lopsided = tmp_path / "lopsided"
    shutil.copytree(root := rendered[0], lopsided)
    for p in sorted((lopsided / "和").glob("*.png"))[:6]:  # 2 left of 8
        p.unlink()
    dm = module(tmp_path, lopsided, image_size=32, balanced_classes=True)
    fake_labels = []

    class Recording(DCGAN):
        def labels_for_fakes(self, labels):
            fake_labels.append(super().labels_for_fakes(labels))
            return fake_labels[-1]

    model = Recording(num_classes=dm.num_classes, image_shape=(1, 32, 32), latent_dim=4, generator_width=4,
                      discriminator_width=4, max_generator_steps=100)  # fmt: skip
    Trainer(max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(model, dm)  # fmt: skip
    share = torch.bincount(torch.cat(fake_labels), minlength=3).float() / len(torch.cat(fake_labels))
    assert torch.all((share - 1 / 3).abs() < 0.08), share  # as balanced as the sampler, though 和 has 2 images of 18
    assert model.class_frequencies.tolist() == pytest.approx([8 / 18, 2 / 18, 8 / 18])  # what sample() draws: the data's
    assert root.exists()

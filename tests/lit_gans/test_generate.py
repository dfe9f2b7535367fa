"""lit_gans.generate: images out of a checkpoint alone, equal to sampling the seeded latents pixel for pixel,
deterministic, atomic, per-class folders that read back as labelled data, npz, the GIF, and one-line refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_testing import RandomImages, fitted_checkpoint
from lightning.pytorch import seed_everything
from PIL import Image

from lit_gans import DCGAN
from lit_gans.datamodules import ImageFolderDataModule
from lit_gans.gan import MODEL_CLASS_KEY
from lit_gans.generate import class_folders, generate, load_model, to_uint8

K = 4
NAMES = ["cat", "dog/x", "émile", "3"]
SMALL = dict(generator_width=8, discriminator_width=8, latent_dim=16)  # 28x28 grey


class NamedImages(RandomImages):
    class_names = NAMES


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    seed_everything(0)
    data = RandomImages(n=32, image_shape=(1, 28, 28))
    return {
        "ema": fitted_checkpoint(root / "ema.ckpt", DCGAN(generator_ema_decay=0.5, **SMALL), data),
        "plain": fitted_checkpoint(root / "plain.ckpt", DCGAN(**SMALL), data),
        "conditional": fitted_checkpoint(
            root / "conditional.ckpt",
            DCGAN(num_classes=K, **SMALL),
            NamedImages(n=32, image_shape=(1, 28, 28), num_classes=K),
        ),
    }


def run(ckpt, out, n=10, **kwargs) -> Path:
    kwargs.setdefault("device", "cpu")
    return generate(str(ckpt), n, str(out), progress=False, **kwargs)


def pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def seeded(model, n: int, seed: int = 1234) -> torch.Tensor:
    return model.sample_latent(n, generator=torch.Generator().manual_seed(seed))


def one_line_error(excinfo, *words: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------------------------------------- the images
def test_pngs_equal_sampling_the_seeded_latents_whatever_the_batch_size(ckpts, tmp_path):
    out = run(ckpts["plain"], tmp_path / "a", n=11, seed=5, batch_size=3)
    assert out == tmp_path / "a"
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:06d}.png" for i in range(11)] + ["generate.json"]
    model = load_model(ckpts["plain"])
    expected = to_uint8(model.sample(z=seeded(model, 11, seed=5)))  # (N, 28, 28, 1)
    for i in range(11):
        image = Image.open(out / f"{i:06d}.png")
        assert (image.mode, image.size) == ("L", (28, 28))
        assert np.array_equal(np.asarray(image), expected[i, ..., 0])
    # the same seed: the same files, bitwise, with another batch size; another seed: other images
    assert pngs(run(ckpts["plain"], tmp_path / "b", n=11, seed=5, batch_size=7)) == pngs(out)
    assert pngs(run(ckpts["plain"], tmp_path / "c", n=11, seed=6)) != pngs(out)
    assert not list(tmp_path.rglob(".*tmp*"))
    manifest = json.loads((out / "generate.json").read_text())
    assert (manifest["num_images"], manifest["seed"], manifest["image_shape"]) == (11, 5, [28, 28, 1])


def test_the_default_seed_gives_fidcallbacks_fixed_fakes(ckpts, tmp_path):
    from lit_gans.callbacks import FIDCallback

    model = load_model(ckpts["plain"])
    callback = FIDCallback("mnist", num_fake=6)
    out = run(ckpts["plain"], tmp_path / "out", n=6)
    expected = to_uint8(model.sample(z=callback.fake_latents(model)))
    assert all(np.array_equal(pixels(out / f"{i:06d}.png"), expected[i, ..., 0]) for i in range(6))


def test_ema_defaults_to_the_averaged_generator_and_false_takes_the_raw_one(ckpts, tmp_path):
    model = load_model(ckpts["ema"])
    z = seeded(model, 6)
    default, averaged = run(ckpts["ema"], tmp_path / "default", n=6), run(ckpts["ema"], tmp_path / "true", n=6, ema=True)
    raw = run(ckpts["ema"], tmp_path / "false", n=6, ema=False)
    assert pngs(default) == pngs(averaged) != pngs(raw)
    for folder, images in ((averaged, model.sample(z=z, ema=True)), (raw, model.sample(z=z, ema=False))):
        expected = to_uint8(images)
        assert all(np.array_equal(pixels(folder / f"{i:06d}.png"), expected[i, ..., 0]) for i in range(6))
    with pytest.raises(ValueError) as excinfo:
        run(ckpts["plain"], tmp_path / "no_ema", ema=True)
    one_line_error(excinfo, "ema=True", "generator_ema_decay")
    assert not (tmp_path / "no_ema").exists()  # refused before anything was written


@pytest.mark.filterwarnings("ignore:lit_gans generate")  # 9 drawn labels need not cover the 4 classes
def test_npz_holds_the_same_pixels_as_the_pngs(ckpts, tmp_path):
    for name in ("plain", "conditional"):
        folder = run(ckpts[name], tmp_path / f"{name}_png", n=9)
        path = run(ckpts[name], tmp_path / f"{name}_npz", n=9, format="npz", batch_size=4)
        assert path == tmp_path / f"{name}_npz" / "images.npz"
        with np.load(path) as data:
            images = data["images"]
            assert images.dtype == np.uint8 and images.shape == (9, 28, 28, 1)
            files = sorted(folder.rglob("*.png"), key=lambda p: p.name)  # by image index across class folders
            assert all(np.array_equal(images[i, ..., 0], pixels(p)) for i, p in enumerate(files))
            if name == "conditional":
                assert data["labels"].dtype == np.int64
                folders = class_folders(K, NAMES)
                assert [folders.index(p.parent.name) for p in files] == data["labels"].tolist()
            else:
                assert "labels" not in data.files


# ---------------------------------------------------------------------------------------------- conditional
def test_a_conditional_model_writes_class_folders_that_read_back_with_the_same_labels(ckpts, tmp_path):
    model = load_model(ckpts["conditional"])
    assert model.class_names == NAMES
    n = 24
    out = run(ckpts["conditional"], tmp_path / "out", n=n, seed=3)
    folders = class_folders(K, NAMES)
    assert folders == ["0_cat", "1_dog_x", "2_émile", "3"]
    labels = model.draw_labels(n, generator=torch.Generator().manual_seed(3))
    assert set(labels.tolist()) == set(range(K))  # every class got images (else the read-back renumbers them)
    expected = to_uint8(model.sample(z=seeded(model, n, seed=3), labels=labels))
    for i, c in enumerate(labels.tolist()):
        assert np.array_equal(pixels(out / folders[c] / f"{i:06d}.png"), expected[i, ..., 0])
    # read back as labelled training data: the same class indices
    dm = ImageFolderDataModule(out, labels=True, image_size=28, channels=1, cache_dir=tmp_path / "cache", preprocess_workers=0)
    dm.setup()
    assert dm.classes == folders and dm.num_classes == K
    images, read_labels = dm.train_set.tensors
    files = sorted(out.rglob("*.png"))  # the datamodule's order: class folder, then file name
    assert read_labels.tolist() == [folders.index(p.parent.name) for p in files]
    assert sorted(read_labels.tolist()) == sorted(labels.tolist())
    stored = images if images.dtype == torch.uint8 else ((images + 1) * 127.5).round().to(torch.uint8)  # as kept
    back = stored[:, 0].numpy()
    assert all(np.array_equal(back[j], pixels(p)) for j, p in enumerate(files))


def test_listed_labels_cycle_through_the_classes_by_index_or_name(ckpts, tmp_path):
    model = load_model(ckpts["conditional"])
    with pytest.warns(UserWarning, match="get no image"):  # classes 1 and 3 get none
        out = run(ckpts["conditional"], tmp_path / "out", n=6, labels=[2, "cat"])
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["0_cat", "2_émile"]
    expected = to_uint8(model.sample(z=seeded(model, 6), labels=torch.tensor([2, 0, 2, 0, 2, 0])))
    for i in range(6):
        assert np.array_equal(pixels(out / ("2_émile" if i % 2 == 0 else "0_cat") / f"{i:06d}.png"), expected[i, ..., 0])
    with pytest.warns(UserWarning):
        single = run(ckpts["conditional"], tmp_path / "single", n=3, labels="dog/x")
    assert [p.parent.name for p in sorted(single.rglob("*.png"))] == ["1_dog_x"] * 3


@pytest.mark.parametrize(
    "name, labels, words",
    [
        ("plain", 3, ["labels=3", "unconditional"]),
        ("conditional", 7, ["labels", "class 7 is out of range"]),
        ("conditional", [0, -1], ["labels", "class -1"]),
        ("conditional", "horse", ["labels", "'horse'", "cat"]),
    ],
)
def test_bad_labels_are_refused_in_one_line(ckpts, tmp_path, name, labels, words):
    with pytest.raises(ValueError) as excinfo:
        run(ckpts[name], tmp_path / "out", labels=labels)
    one_line_error(excinfo, *words)
    assert not (tmp_path / "out").exists()


def test_a_conditional_model_with_an_averaged_generator(tmp_path):
    seed_everything(0)
    ckpt = fitted_checkpoint(
        tmp_path / "c.ckpt", DCGAN(num_classes=K, generator_ema_decay=0.5, **SMALL),
        NamedImages(n=32, image_shape=(1, 28, 28), num_classes=K),
    )  # fmt: skip
    model = load_model(ckpt)
    out = run(ckpt, tmp_path / "out", n=8, labels=[0, 1, 2, 3])
    expected = to_uint8(model.sample(z=seeded(model, 8), labels=torch.arange(8) % K, ema=True))
    assert np.array_equal(pixels(out / "1_dog_x" / "000005.png"), expected[5, ..., 0])


# ---------------------------------------------------------------------------------------------- output folder
def test_an_output_dir_with_earlier_images_is_refused_unless_overwrite(ckpts, tmp_path):
    out = run(ckpts["plain"], tmp_path / "out", n=12)
    with pytest.raises(ValueError) as excinfo:
        run(ckpts["plain"], out, n=3)
    one_line_error(excinfo, f"output_dir={out}", "overwrite")
    assert len(list(out.glob("*.png"))) == 12  # untouched
    run(ckpts["plain"], out, n=3, seed=9, overwrite=True)  # fewer images: nothing of the old run remains
    assert sorted(pngs(out)) == ["000000.png", "000001.png", "000002.png"]
    assert pngs(out) == pngs(run(ckpts["plain"], tmp_path / "fresh", n=3, seed=9))
    run(ckpts["plain"], out, n=3, format="npz", overwrite=True)  # another format replaces the PNGs too
    assert sorted(p.name for p in out.iterdir()) == ["generate.json", "images.npz"]
    with pytest.raises(ValueError, match="already holds generated images"):
        run(ckpts["plain"], out, n=3, format="npz")
    # a folder of other files is never written into (they would be read as data) nor cleaned
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError) as excinfo:
        run(ckpts["plain"], other, overwrite=True)
    one_line_error(excinfo, f"output_dir={other}", "notes.txt")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_a_failure_mid_write_leaves_no_partial_file(ckpts, tmp_path, monkeypatch):
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 5:  # the 5th image's bytes are in its temporary file: the rename fails
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        run(ckpts["plain"], tmp_path / "out", n=8, batch_size=2)
    monkeypatch.setattr(os, "replace", real_replace)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(4)]  # no temporary, no manifest
    complete = pngs(run(ckpts["plain"], tmp_path / "whole", n=8))
    assert all(complete[name] == data for name, data in pngs(out).items())  # every visible file is complete
    with pytest.raises(ValueError, match="overwrite"):  # the interrupted run is not silently extended
        run(ckpts["plain"], out, n=8)
    assert pngs(run(ckpts["plain"], out, n=8, overwrite=True)) == complete


def test_interpolation_gif(ckpts, tmp_path):
    gif = tmp_path / "walk.gif"
    run(ckpts["ema"], tmp_path / "out", n=2, interpolation_gif=str(gif), interpolation_steps=3)
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 4 * 3  # 4 keyframes, a closed loop
        assert image.size == (8 * 30 + 2, 30 + 2)  # 8 paths side by side, make_grid's padding
        first = np.asarray(image.convert("L"))
        image.seek(3)
        assert not np.array_equal(first, np.asarray(image.convert("L")))
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ValueError) as excinfo:
        run(ckpts["plain"], tmp_path / "o2", interpolation_gif=str(tmp_path / "o2" / "walk.gif"))
    one_line_error(excinfo, "interpolation_gif", "output_dir")


# ---------------------------------------------------------------------------------------------- load_model
def test_load_model_takes_a_folder_and_a_checkpoint_with_only_the_cli_class_path(ckpts, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    checkpoint = torch.load(ckpts["ema"], weights_only=True)
    del checkpoint[MODEL_CLASS_KEY]  # an older file: only LightningCLI's class path
    checkpoint["hyper_parameters"].update(_class_path="lit_gans.DCGAN", _instantiator="lightning.pytorch.cli.instantiate_module")
    torch.save(checkpoint, folder / "old.ckpt")
    model = load_model(folder)
    assert type(model) is DCGAN and model.generator_ema is not None and not model.training
    assert model.checkpoint_path == str(folder / "old.ckpt") and model.class_names is None
    z = torch.randn(3, 16)
    assert torch.equal(model.sample(z=z), load_model(ckpts["ema"]).sample(z=z))


def test_load_model_refuses_what_is_no_lit_gans_checkpoint_in_one_line(ckpts, tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        load_model(tmp_path / "missing.ckpt")
    one_line_error(excinfo, "missing.ckpt", "no such")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as excinfo:
        load_model(tmp_path / "empty")
    one_line_error(excinfo, "empty", "no loadable")
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    with pytest.raises(ValueError) as excinfo:
        load_model(tmp_path / "text.ckpt")
    one_line_error(excinfo, "text.ckpt", "not a checkpoint torch can read")
    torch.save({"state_dict": {}}, tmp_path / "anonymous.ckpt")
    with pytest.raises(ValueError) as excinfo:
        load_model(tmp_path / "anonymous.ckpt")
    one_line_error(excinfo, "anonymous.ckpt", "not a lit-gans checkpoint")
    checkpoint = torch.load(ckpts["plain"], weights_only=True)
    for class_path, words in (("torch.nn.Linear", "not a lit_gans.GAN"), ("nowhere.Model", "cannot be imported")):
        checkpoint[MODEL_CLASS_KEY] = class_path
        torch.save(checkpoint, tmp_path / "other.ckpt")
        with pytest.raises(ValueError) as excinfo:
            load_model(tmp_path / "other.ckpt")
        one_line_error(excinfo, "other.ckpt", class_path, words)
    with pytest.raises(ValueError) as excinfo:  # and through generate, before any folder is made
        run(tmp_path / "other.ckpt", tmp_path / "out")
    one_line_error(excinfo, "other.ckpt")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(n=0), ["num_images=0"]),
        (dict(batch_size=0), ["batch_size=0"]),
        (dict(format="jpg"), ["format='jpg'"]),
        (dict(device="gpu0"), ["device='gpu0'"]),
    ],
)
def test_bad_arguments_are_refused_naming_the_parameter(ckpts, tmp_path, kwargs, words):
    with pytest.raises(ValueError) as excinfo:
        run(ckpts["plain"], tmp_path / "out", **kwargs)
    one_line_error(excinfo, *words)


# ---------------------------------------------------------------------------------------------- the command
def test_the_command_writes_what_the_function_writes(ckpts, tmp_path, capsys):
    from lit_gans.cli import main

    run(ckpts["conditional"], tmp_path / "function", n=12, labels=[1, 2], seed=5)
    main(["generate", "--ckpt_path", str(ckpts["conditional"]), "--num_images", "12", "--output_dir",
          str(tmp_path / "command"), "--labels", "[1, 2]", "--seed", "5", "--device", "cpu", "--progress", "false"])
    assert pngs(tmp_path / "command") == pngs(tmp_path / "function") and len(pngs(tmp_path / "function")) == 12
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said == f"lit-gans: wrote 12 images to {tmp_path / 'command'} from {ckpts['conditional']} (generator step 2)"


def test_the_command_reports_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    from lit_gans.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--ckpt_path", str(tmp_path / "nope.ckpt"), "--num_images", "3", "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lit-gans: error: ckpt_path={tmp_path / 'nope.ckpt'}: no such checkpoint file or folder"


def test_a_run_folder_gives_its_best_checkpoint_else_its_newest(ckpts, tmp_path):
    import shutil
    import time

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(ckpts["plain"], folder / "best-fid-generator_step=2.ckpt")
    time.sleep(0.01)
    weights_only = torch.load(ckpts["ema"], weights_only=True)
    for key in ("optimizer_states", "loops", "callbacks"):  # what resuming needs and sampling does not
        weights_only.pop(key, None)
    torch.save(weights_only, folder / "last.ckpt")
    assert Path(load_model(folder).checkpoint_path).name == "best-fid-generator_step=2.ckpt"
    (folder / "best-fid-generator_step=2.ckpt").write_bytes(b"truncated")
    newest = load_model(folder)
    assert Path(newest.checkpoint_path).name == "last.ckpt" and newest.generator_ema is not None


def test_npz_of_a_conditional_model_makes_no_class_folders(ckpts, tmp_path):
    out = tmp_path / "out"
    run(ckpts["conditional"], out, n=4, labels=[0, 1, 2, 3], format="npz")
    assert sorted(p.name for p in out.iterdir()) == ["generate.json", "images.npz"]


def test_overwrite_leaves_folders_generate_did_not_write(ckpts, tmp_path):
    out = tmp_path / "out"
    run(ckpts["conditional"], out, n=4, labels=[0, 1, 2, 3], format="npz")
    trip = out / "2024_trip"
    trip.mkdir()
    (trip / "001.png").write_bytes(b"a holiday photo")
    run(ckpts["conditional"], out, n=4, labels=[0, 1, 2, 3], format="npz", overwrite=True)
    assert (trip / "001.png").read_bytes() == b"a holiday photo"


def test_a_gan_built_from_network_objects_says_how_to_load_it(tmp_path, capsys):
    from lit_gans import GAN
    from lit_gans.cli import main
    from lit_gans.networks import MLPDiscriminator, MLPGenerator

    def networks():
        return {"generator": MLPGenerator(8, (1, 4, 4), (16,)), "discriminator": MLPDiscriminator((1, 4, 4), (16,))}

    path = fitted_checkpoint(tmp_path / "gan.ckpt", GAN(**networks(), latent_dim=8), RandomImages(n=16, image_shape=(1, 4, 4)))
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--ckpt_path", str(path), "--num_images", "3", "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    [err] = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("lit-gans: error: ") and "(generator, discriminator)" in err
    assert "GAN.load_from_checkpoint(path, generator=..., discriminator=...)" in err
    assert not (tmp_path / "out").exists()
    loaded = GAN.load_from_checkpoint(path, **networks())  # what the line says works
    assert loaded.sample(2).shape == (2, 1, 4, 4)


# ---------------------------------------------------------------------------------------------- seeds and truncation
def by_seed(model, seeds, psi: float = 1.0) -> torch.Tensor:
    """The latent of each seed drawn alone, truncated by hand: psi * z (the latents are centred)."""
    return psi * torch.cat([model.sample_latent(1, generator=torch.Generator().manual_seed(s)) for s in seeds])


def test_each_seed_gives_its_own_image_alone_or_among_others(ckpts, tmp_path):
    from lit_gans.generate import parse_seeds

    model = load_model(ckpts["ema"])
    many = run(ckpts["ema"], tmp_path / "many", n=None, seeds="0-9,12", batch_size=4)
    assert sorted(p.name for p in many.glob("*.png")) == [f"seed{s:04d}.png" for s in [*range(10), 12]]
    alone = run(ckpts["ema"], tmp_path / "alone", n=None, seeds=7)
    mixed = run(ckpts["ema"], tmp_path / "mixed", n=None, seeds=[3, "7", "1-2"])
    assert pngs(alone)["seed0007.png"] == pngs(mixed)["seed0007.png"] == pngs(many)["seed0007.png"]
    expected = to_uint8(model.sample(z=by_seed(model, parse_seeds("0-9,12"))))
    for i, s in enumerate(parse_seeds("0-9,12")):
        assert np.array_equal(pixels(many / f"seed{s:04d}.png"), expected[i, ..., 0])
    manifest = json.loads((many / "generate.json").read_text())
    assert manifest["seeds"] == [*range(10), 12] and manifest["num_images"] == 11 and manifest["seed"] is None
    with pytest.raises(ValueError, match="already holds generated images"):  # seed-named files are generate's own
        run(ckpts["ema"], many, n=None, seeds="0-3")
    with np.load(run(ckpts["ema"], tmp_path / "npz", n=None, seeds="12,7", format="npz")) as data:
        assert data["seeds"].tolist() == [12, 7]
        assert np.array_equal(data["images"][1], expected[7])


def test_a_seed_draws_a_conditional_models_class_too(ckpts, tmp_path):
    model = load_model(ckpts["conditional"])
    folders = class_folders(K, NAMES)
    with pytest.warns(UserWarning, match="get no image"):
        alone = run(ckpts["conditional"], tmp_path / "alone", n=None, seeds="5")
    many = run(ckpts["conditional"], tmp_path / "many", n=None, seeds="0-15")
    [path] = alone.rglob("seed0005.png")
    assert pngs(alone)[str(path.relative_to(alone))] == pngs(many)[str(path.relative_to(alone))]
    generator = torch.Generator().manual_seed(5)
    z = model.sample_latent(1, generator=generator)
    label = model.draw_labels(1, generator=generator)  # after the latent, from the same generator
    assert path.parent.name == folders[int(label)]
    assert np.array_equal(pixels(path), to_uint8(model.sample(z=z, labels=label))[0, ..., 0])
    with pytest.warns(UserWarning):  # listed classes cycle through the seeds
        listed = run(ckpts["conditional"], tmp_path / "listed", n=None, seeds="4-6", labels="dog/x")
    assert sorted(str(p.relative_to(listed)) for p in listed.rglob("*.png")) == [
        f"1_dog_x/seed000{s}.png" for s in (4, 5, 6)
    ]


@pytest.mark.parametrize(
    "seeds, words",
    [("3-1", ["seeds='3-1'", "backwards"]), ("1,x", ["seeds='1,x'", "'x'"]), ("2,1-3", ["seed 2 more than once"]),
     ("-4", ["'-4'", "integers >= 0"]), ("", ["no seed"])],
)
def test_bad_seeds_are_refused_in_one_line(ckpts, tmp_path, seeds, words):
    with pytest.raises(ValueError) as excinfo:
        run(ckpts["plain"], tmp_path / "out", n=None, seeds=seeds)
    one_line_error(excinfo, *words)
    assert not (tmp_path / "out").exists()


def test_num_images_or_seeds_not_both_nor_neither(ckpts, tmp_path):
    for n, seeds, word in ((3, "0-2", "not both"), (None, None, "give either")):
        with pytest.raises(ValueError) as excinfo:
            run(ckpts["plain"], tmp_path / "out", n=n, seeds=seeds)
        one_line_error(excinfo, "num_images", "seeds", word)


def test_truncation_moves_each_latent_towards_the_mean(ckpts, tmp_path):
    from lit_gans.generate import truncate

    model = load_model(ckpts["ema"])
    untruncated = run(ckpts["ema"], tmp_path / "plain", n=None, seeds="0-5")
    assert pngs(run(ckpts["ema"], tmp_path / "one", n=None, seeds="0-5", truncation=1.0)) == pngs(untruncated)
    half = run(ckpts["ema"], tmp_path / "half", n=None, seeds="0-5", truncation=0.5)
    expected = to_uint8(model.sample(z=by_seed(model, range(6), psi=0.5)))
    assert all(np.array_equal(pixels(half / f"seed{s:04d}.png"), expected[s, ..., 0]) for s in range(6))
    assert pngs(half) != pngs(untruncated)
    z = seeded(model, 64)
    norms = [truncate(model, z, psi).norm(dim=1) for psi in (1.0, 0.7, 0.3, 0.0)]
    assert torch.equal(norms[0], z.norm(dim=1)) and torch.allclose(norms[1], 0.7 * norms[0])
    assert (norms[2] < norms[1]).all() and (norms[3] == 0).all()
    # psi=0: every seed's image is the mean latent's, the same for all
    mean = pngs(run(ckpts["ema"], tmp_path / "mean", n=None, seeds="0-3", truncation=0.0))
    assert len(set(mean.values())) == 1
    # the N-image mode truncates the same way; the manifest says so
    out = run(ckpts["ema"], tmp_path / "n", n=4, seed=9, truncation=0.5)
    assert np.array_equal(pixels(out / "000002.png"), to_uint8(model.sample(z=0.5 * seeded(model, 4, seed=9)))[2, ..., 0])
    assert json.loads((out / "generate.json").read_text())["truncation"] == 0.5
    with pytest.raises(ValueError) as excinfo:
        run(ckpts["ema"], tmp_path / "neg", n=4, truncation=-0.5)
    one_line_error(excinfo, "truncation=-0.5")


def test_truncation_leaves_infogans_codes_alone():
    from lit_gans.generate import truncate
    from lit_gans.models import InfoGAN

    model = InfoGAN(noise_dim=6, categorical_dim=3, continuous_dim=2, generator_width=4, discriminator_width=4)
    z = model.sample_latent(5, generator=torch.Generator().manual_seed(0))
    truncated = truncate(model, z, 0.5)
    assert torch.equal(truncated[:, :6], 0.5 * z[:, :6]) and torch.equal(truncated[:, 6:], z[:, 6:])


def test_the_command_takes_seeds_and_truncation(ckpts, tmp_path, capsys):
    from lit_gans.cli import main

    main(["generate", "--ckpt_path", str(ckpts["plain"]), "--seeds", "0-35", "--truncation", "0.7", "--output_dir",
          str(tmp_path / "command"), "--device", "cpu", "--progress", "false"])  # fmt: skip
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said == f"lit-gans: wrote 36 images to {tmp_path / 'command'} from {ckpts['plain']} (generator step 2)"
    assert pngs(tmp_path / "command") == pngs(run(ckpts["plain"], tmp_path / "function", n=None, seeds="0-35", truncation=0.7))

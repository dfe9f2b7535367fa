"""lit-gans evaluate: a checkpoint's metrics, computed from the fit's config, equal what the callbacks logged at
that step (same fixed latents, same real statistics, same averaged generator); overrides, JSON, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from gan_testing import tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer
from PIL import Image

from lit_gans import DCGAN
from lit_gans.callbacks import BestCheckpoint, DiversityMonitor, FIDCallback
from lit_gans.cli import _user_error, main
from lit_gans.datamodules import MNISTDataModule
from lit_gans.evaluate import check_compatible, evaluate, format_metrics
from lit_gans.gan import MODEL_CLASS_KEY

FID = dict(feature_extractor="mnist", num_real=500, num_fake=200, batch_size=100, every_n_generator_steps=2)
DIVERSITY = dict(num_samples=64, classifier="mnist", every_n_generator_steps=2)
MODEL = dict(latent_dim=16, generator_width=8, discriminator_width=8)


def callback(class_path: str, **init_args) -> dict:
    return {"class_path": class_path, "init_args": init_args}


def write_config(path: Path, mnist_dir: Path, callbacks: list, model: dict, trainer: dict = None, **data) -> Path:
    config = {
        "seed_everything": 3,
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "callbacks": callbacks, **(trainer or {})},
        "model": {"class_path": "lit_gans.DCGAN", "init_args": model},
        "data": {"class_path": "lit_gans.datamodules.MNISTDataModule",
                 "init_args": {"data_dir": str(mnist_dir), "download": False, "batch_size": 16, **data}},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


class Recorder(Callback):
    """``trainer.callback_metrics`` after every batch, by generator step (after the metric callbacks ran)."""

    def __init__(self) -> None:
        self.at: dict[int, dict[str, float]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.at[pl_module.generator_step] = {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """A 4-step fit of a tiny DCGAN with a weight-averaged generator, FID and diversity every 2 generator steps,
    and the best-FID checkpoint (written right after the FID it improved on), in Python; and its config."""
    root = tmp_path_factory.mktemp("evaluate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIT_GANS_CACHE", str(root / "fit-cache"))
        torch.manual_seed(0)
        recorder = Recorder()
        best = BestCheckpoint(dirpath=root / "ckpt", monitor="fid")
        fid = FIDCallback(**FID)
        callbacks = [fid, DiversityMonitor(**DIVERSITY), recorder, best]
        model = DCGAN(image_shape=(1, 28, 28), max_generator_steps=4, generator_ema_decay=0.9, **MODEL)
        trainer = Trainer(**tiny_trainer_kwargs(callbacks=callbacks, enable_checkpointing=True, default_root_dir=root))
        trainer.fit(model, MNISTDataModule(mnist_dir, download=False, batch_size=16))
    config = write_config(
        root / "config.yaml", mnist_dir, model=MODEL,
        callbacks=[callback("lit_gans.callbacks.FIDCallback", **FID),
                   callback("lit_gans.callbacks.DiversityMonitor", **DIVERSITY),
                   callback("lit_gans.callbacks.GradientNormMonitor", every_n_generator_steps=1),
                   callback("lit_gans.callbacks.BestCheckpoint", monitor="fid")],
    )  # fmt: skip
    step = int(torch.load(best.best_model_path, weights_only=True)["state_dict"]["generator_steps"])
    assert best.best_model_score == pytest.approx(fid.best_fid) and step in (2, 4)
    return dict(root=root, ckpt=best.best_model_path, config=config, logged=recorder.at[step])


def test_evaluate_reproduces_the_logged_fid_and_diversity_of_the_checkpoint(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))  # real statistics recomputed, not read back
    results = evaluate(trained["ckpt"], trained["config"], output_json=str(tmp_path / "out" / "metrics.json"))
    logged = trained["logged"]
    assert list(results)[:2] == ["fid", "diversity/ms_ssim_fake"]  # the config's order; no GradientNormMonitor
    for key in ("fid", "diversity/ms_ssim_fake", "diversity/ms_ssim_real", "diversity/modes_covered"):
        print(f"logged {key} {logged[key]:.6f}, evaluated {results[key]:.6f}")
        assert results[key] == pytest.approx(logged[key], rel=1e-3), key
    assert list((tmp_path / "cache" / "fid").glob("real-mnist-500-*.pt"))  # a cache, and no logs
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == pytest.approx(results)
    table = format_metrics(results).splitlines()
    assert table[0].split() == ["metric", "value"] and len(table) == len(results) + 1
    assert table[1].split() == ["fid", f"{results['fid']:.6g}"] and len({len(line) for line in table}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]  # no logs, no checkpoints


def test_overrides_equal_the_same_settings_in_the_config(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_GANS_CACHE", str(trained["root"] / "fit-cache"))
    default = evaluate(trained["ckpt"], trained["config"])
    more = tmp_path / "more.yaml"
    more.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        callback("lit_gans.callbacks.FIDCallback", **{**FID, "num_fake": 300, "seed": 5}),
    ]}}))  # fmt: skip
    from_config = evaluate(trained["ckpt"], [trained["config"], more])
    from_flags = evaluate(trained["ckpt"], trained["config"], num_fake=300, seed=5)
    assert set(from_config) == {"fid"} and from_flags["fid"] == pytest.approx(from_config["fid"], rel=1e-6)
    assert abs(from_flags["fid"] - default["fid"]) > 1e-3 * default["fid"]  # another computation
    assert "diversity/ms_ssim_fake" in from_flags  # num_fake -> DiversityMonitor.num_samples too
    raw = evaluate(trained["ckpt"], [trained["config"], more], ema=False)  # the raw generator, not the average
    assert abs(raw["fid"] - from_config["fid"]) > 1e-3 * from_config["fid"]


def test_conditional_checkpoint_of_a_cli_fit(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    fid = {**FID, "intra_class": True, "num_real_per_class": 20, "num_fake_per_class": 10}
    config = write_config(
        tmp_path / "cgan.yaml", mnist_dir, model={**MODEL, "conditioning": "concat", "max_generator_steps": 2},
        trainer={"max_epochs": -1},
        callbacks=[callback("lit_gans.callbacks.FIDCallback", **fid),
                   callback("lit_gans.callbacks.ConditionalAccuracy", classifier="mnist", num_per_class=10,
                            every_n_generator_steps=2),
                   callback("lightning.pytorch.callbacks.ModelCheckpoint", dirpath=str(tmp_path / "ckpt"),
                            monitor="fid", mode="min", every_n_train_steps=1)],
    )  # fmt: skip
    cli = main(["fit", "--config", str(config)])
    assert cli.model.num_classes == 10 and cli.model.generator_step == 2  # the last step is the checkpoint's
    logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    results = evaluate(cli.trainer.checkpoint_callback.best_model_path, config)
    for key in ("fid", "fid_intra_class", "conditional/accuracy", "conditional/accuracy_7"):
        print(f"conditional: logged {key} {logged[key]:.6f}, evaluated {results[key]:.6f}")
        assert results[key] == pytest.approx(logged[key], rel=1e-3), key
    # a CLI run's checkpoint also names its class in its hyperparameters (checkpoints older than MODEL_CLASS_KEY)
    checkpoint = torch.load(cli.trainer.checkpoint_callback.best_model_path, weights_only=True)
    del checkpoint[MODEL_CLASS_KEY]
    torch.save(checkpoint, tmp_path / "older.ckpt")
    assert evaluate(str(tmp_path / "older.ckpt"), config)["fid"] == pytest.approx(results["fid"], rel=1e-6)
    with pytest.raises(ValueError, match="holds no weight-averaged generator"):
        evaluate(str(tmp_path / "older.ckpt"), config, ema=True)


def one_line_user_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and _user_error(excinfo.value) is excinfo.value  # `lit-gans: error: ...`
    return message


def test_refusals(trained, mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_GANS_CACHE", str(trained["root"] / "fit-cache"))
    with pytest.raises(FileNotFoundError) as excinfo:
        evaluate(str(tmp_path / "missing.ckpt"), trained["config"])
    assert "missing.ckpt" in one_line_user_error(excinfo)
    with pytest.raises(FileNotFoundError) as excinfo:
        evaluate(trained["ckpt"], str(tmp_path / "missing.yaml"))
    assert "missing.yaml" in one_line_user_error(excinfo)
    checkpoint = torch.load(trained["ckpt"], weights_only=True)  # a Python fit: no hyper_parameters._class_path
    del checkpoint[MODEL_CLASS_KEY]
    torch.save(checkpoint, tmp_path / "anonymous.ckpt")
    with pytest.raises(ValueError) as excinfo:
        evaluate(str(tmp_path / "anonymous.ckpt"), trained["config"])
    assert "names no model class" in one_line_user_error(excinfo)
    no_metrics = write_config(
        tmp_path / "none.yaml", mnist_dir, model=MODEL,
        callbacks=[callback("lit_gans.callbacks.GradientNormMonitor", every_n_generator_steps=1)],
    )  # fmt: skip
    with pytest.raises(ValueError) as excinfo:
        evaluate(trained["ckpt"], no_metrics)
    assert "no metric callback" in one_line_user_error(excinfo)
    larger = write_config(
        tmp_path / "32.yaml", mnist_dir, model=MODEL, image_size=32,
        callbacks=[callback("lit_gans.callbacks.FIDCallback", **FID)],
    )  # fmt: skip
    with pytest.raises(ValueError) as excinfo:
        evaluate(trained["ckpt"], larger)
    assert "image_shape=(1, 28, 28)" in one_line_user_error(excinfo) and "(1, 32, 32)" in str(excinfo.value)
    conditional = DCGAN(num_classes=10, conditioning="concat", **MODEL)
    with pytest.raises(ValueError) as excinfo:
        check_compatible(conditional, type("Unlabelled", (), {"image_shape": (1, 28, 28), "num_classes": None})())
    assert "num_classes=10" in one_line_user_error(excinfo)
    check_compatible(DCGAN(**MODEL), MNISTDataModule(mnist_dir))  # an unconditional model on labelled data is fine


@pytest.mark.parametrize("command", ["evaluate", "validate", "test"])
def test_the_command_prints_the_table_and_writes_the_json(command, trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIT_GANS_CACHE", str(trained["root"] / "fit-cache"))
    out = tmp_path / "scores.json"
    results = main([command, "--ckpt_path", trained["ckpt"], "--config", str(trained["config"]), "--output_json", str(out)])
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-len(results) - 1:] == format_metrics(results).splitlines()
    assert json.loads(out.read_text()) == pytest.approx(results)
    assert results["fid"] == pytest.approx(trained["logged"]["fid"], rel=1e-3)


def test_a_config_without_a_model_and_what_the_command_prints(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIT_GANS_CACHE", str(trained["root"] / "fit-cache"))
    config = yaml.safe_load(trained["config"].read_text())
    del config["model"]  # the model is the checkpoint's
    data_only = tmp_path / "data_only.yaml"
    data_only.write_text(yaml.safe_dump(config))
    results = main(["evaluate", "--ckpt_path", str(Path(trained["ckpt"]).parent), "--config", str(data_only)])
    assert results["fid"] == pytest.approx(trained["logged"]["fid"], rel=1e-3)
    header = capsys.readouterr().out.splitlines()[-len(results) - 2]
    step = int(torch.load(trained["ckpt"], weights_only=True)["state_dict"]["generator_steps"])
    assert header == f"lit-gans: {trained['ckpt']} (generator step {step})"  # the folder's best checkpoint


@pytest.mark.parametrize(
    "args, words",
    [
        (["--num_fake", "many"], ["evaluate:", "num_fake", "--help"]),
        (["--data.init_args.data_dir=/x"], ["evaluate:", "data.init_args.data_dir"]),
        (["--num_per_class", "5"], ["--num_per_class", "no metric callback", "DiversityMonitor", "FIDCallback"]),
    ],
)
def test_command_mistakes_are_one_line(args, words, trained, monkeypatch, capsys):
    monkeypatch.setenv("LIT_GANS_CACHE", str(trained["root"] / "fit-cache"))
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--ckpt_path", trained["ckpt"], "--config", str(trained["config"]), *args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and err.startswith("lit-gans: error: "), err
    assert all(word in err for word in words), err


def test_an_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["generat", "--ckpt_path", "x"])
    assert capsys.readouterr().err.strip().startswith("lit-gans: error: no command 'generat': use fit, generate")


# ---------------------------------------------------------------------------------------------- --images DIR
FID_ONLY = dict(feature_extractor="mnist", num_real=500, num_fake=200, batch_size=100)


def fid_config(path: Path, mnist_dir: Path, **fid) -> Path:
    return write_config(path, mnist_dir, model=MODEL, callbacks=[callback("lit_gans.callbacks.FIDCallback", **{**FID_ONLY, **fid})])


def test_a_folder_written_by_generate_scores_as_its_checkpoint(trained, mnist_dir, tmp_path, monkeypatch, capsys):
    """generate's default seed is FIDCallback's, so its 200 PNGs are the FID's 200 fakes, rounded to 8 bits."""
    from lit_gans.datamodules.base import uint8_to_unit_range
    from lit_gans.gan import GAN
    from lit_gans.generate import generate, to_uint8

    monkeypatch.setenv("LIT_GANS_CACHE", str(trained["root"] / "fit-cache"))
    config = fid_config(tmp_path / "fid.yaml", mnist_dir)
    folder = generate(trained["ckpt"], 200, str(tmp_path / "fakes"), device="cpu", progress=False)
    from_images = main(["evaluate", "--images", str(folder), "--config", str(config)])
    assert capsys.readouterr().out.splitlines()[-3] == f"lit-gans: the images in {folder}"
    from_checkpoint = evaluate(trained["ckpt"], config)
    print(f"FID of the PNGs {from_images['fid']:.8f}, of the checkpoint {from_checkpoint['fid']:.8f}")
    # PNG rounds each pixel to the nearest of 256 grey levels: it moves by at most 1/255 in [-1, 1] (half a
    # level), which moves the features, and so the FID, by far less than 0.1% (here by about 1e-4 of it)
    assert from_images["fid"] == pytest.approx(from_checkpoint["fid"], rel=1e-3)
    # the same 8-bit rounding applied to the checkpoint's images: exactly the same value
    sample = GAN.sample

    def rounded(self, *args, **kwargs):
        uint8 = torch.from_numpy(to_uint8(sample(self, *args, **kwargs))).permute(0, 3, 1, 2)
        return uint8_to_unit_range(uint8.contiguous())

    monkeypatch.setattr(GAN, "sample", rounded)
    assert evaluate(trained["ckpt"], config) == from_images
    # a metric that asks for more images than the folder holds is refused in one line
    with pytest.raises(ValueError) as excinfo:
        evaluate(images=str(folder), config=config, num_fake=300)
    assert "holds 200 images, and a metric of the config asks for more" in one_line_user_error(excinfo)


def write_idx_images(mnist_dir: Path, folder: Path, n: int, size: int = 28, labels: bool = False) -> Path:
    """The first ``n`` images of the data's training file, as PNGs (``size`` x ``size``), in class folders with
    ``labels``."""
    raw = mnist_dir / "MNIST" / "raw"
    pixels = np.frombuffer((raw / "train-images-idx3-ubyte").read_bytes()[16:], dtype=np.uint8).reshape(-1, 28, 28)
    classes = np.frombuffer((raw / "train-labels-idx1-ubyte").read_bytes()[8:], dtype=np.uint8)
    for i in range(n):
        target = folder / f"{classes[i]}_digit" if labels else folder
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i]).resize((size, size), Image.LANCZOS).save(target / f"real{i:05d}.png")
    return folder


def test_the_real_images_themselves_score_a_near_zero_fid(trained, mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIT_GANS_CACHE", str(trained["root"] / "fit-cache"))
    config = fid_config(tmp_path / "fid.yaml", mnist_dir, num_fake=500)  # the 500 real images of the statistics
    folder = write_idx_images(mnist_dir, tmp_path / "real", 500)
    (folder / "notes.txt").write_text("left out: not an image")
    fid = evaluate(images=str(folder), config=config)["fid"]
    assert abs(fid) < 1e-3, fid
    assert evaluate(trained["ckpt"], config)["fid"] > 1000 * max(abs(fid), 1e-6)  # a generator is far from it
    # larger images are cropped and resized as a folder datamodule prepares them, and one line says so
    evaluate(images=str(write_idx_images(mnist_dir, tmp_path / "large", 500, size=56)), config=config)
    [note] = [line for line in capsys.readouterr().err.splitlines() if "note" in line]
    assert note.startswith("lit-gans: note: 500 of the 500 images of") and "(e.g. real00000.png: 56x56)" in note


def test_class_folders_serve_the_conditional_metrics(mnist_dir, tmp_path, monkeypatch):
    """Real digits sorted into their class folders: ConditionalAccuracy finds each image of its class."""
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    accuracy = callback("lit_gans.callbacks.ConditionalAccuracy", classifier="mnist", num_per_class=10)
    config = write_config(tmp_path / "c.yaml", mnist_dir, model={**MODEL, "conditioning": "concat"}, callbacks=[accuracy])
    folder = write_idx_images(mnist_dir, tmp_path / "by_class", 300, labels=True)
    results = evaluate(images=str(folder), config=config)
    assert results["conditional/accuracy"] >= 0.9
    flat = write_idx_images(mnist_dir, tmp_path / "flat", 300)
    with pytest.raises(ValueError) as excinfo:  # no class folders: no class-conditional images
        evaluate(images=str(flat), config=config)
    assert "num_classes=0" in one_line_user_error(excinfo)


def test_images_refusals(trained, mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_GANS_CACHE", str(trained["root"] / "fit-cache"))
    config = fid_config(tmp_path / "fid.yaml", mnist_dir)
    (tmp_path / "empty").mkdir()
    mixed = write_idx_images(mnist_dir, tmp_path / "mixed", 3, labels=True)
    Image.new("L", (28, 28)).save(mixed / "top.png")
    broken = write_idx_images(mnist_dir, tmp_path / "broken", 3)
    (broken / "half.png").write_bytes((broken / "real00000.png").read_bytes()[:40])
    three = tmp_path / "three"
    for c in range(3):
        write_idx_images(mnist_dir, three / f"{c}", 2)
    cases = [
        (dict(images=str(tmp_path / "nowhere")), FileNotFoundError, "no such folder"),
        (dict(images=str(tmp_path / "empty")), ValueError, "holds no image files"),
        (dict(images=str(mixed)), ValueError, "both at its top"),
        (dict(images=str(broken)), ValueError, "half.png"),
        (dict(images=str(three)), ValueError, "has 3 class folders (0, 1, 2), the config's data 10 classes"),
        (dict(images=str(broken), ema=True), ValueError, "ema"),
        (dict(images=str(broken), ckpt_path=trained["ckpt"]), ValueError, "not both"),
        (dict(), ValueError, "give one"),
    ]
    for kwargs, error, words in cases:
        with pytest.raises(error) as excinfo:
            evaluate(config=config, **kwargs)
        assert words in one_line_user_error(excinfo), kwargs

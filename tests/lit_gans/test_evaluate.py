"""lit-gans evaluate: a checkpoint's metrics, computed from the fit's config, equal what the callbacks logged at
that step (same fixed latents, same real statistics, same averaged generator); overrides, JSON, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from gan_testing import tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer

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

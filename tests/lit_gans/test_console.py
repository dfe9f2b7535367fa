"""What a user watching a run sees: a bar of generator steps with losses and FID, no Lightning noise, a summary
at the end; and Lightning's other subcommands say what they do for a GAN."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from gan_testing import TINY, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from lit_gans import DCGAN
from lit_gans.callbacks import SampleGrid
from lit_gans.cli import main
from lit_gans.console import FitSummary, GANProgressBar, fit_summary

REPO = Path(__file__).resolve().parents[2]
#: what a default run printed before, none of which a user acts on
NOISE = ("val_dataloader", "LeafSpec", "litlogger", "manual optimization", "Initializing distributed",
         "Traceback", "TPU available", "will override existing callbacks", "logging interval")


def test_a_shipped_config_shows_steps_losses_fid_and_a_summary(mnist_dir, tmp_path):
    """The README's main job, shortened to 100 generator steps of a width-8 DCGAN: the first FID evaluation and
    the best-FID checkpoint happen at step 100."""
    small = tmp_path / "small.yaml"
    small.write_text(
        "model:\n  init_args: {max_generator_steps: 100, generator_width: 8, discriminator_width: 8}\n"
        # 35 batches an epoch, fewer than log_every_n_steps: Lightning's warning about it does not apply to a GAN
        f"data:\n  init_args: {{data_dir: '{mnist_dir}', download: false, batch_size: 256}}\n"
        "fid: {init_args: {every_n_generator_steps: 100}}\nsamples: {init_args: {every_n_generator_steps: 50}}\n"
    )
    env = {**os.environ, "WANDB_MODE": "offline", "LIT_GANS_CACHE": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, "-m", "lit_gans", "fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"), "--config",
         str(small)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    console = (run.stdout + run.stderr).replace("\r", "\n")
    assert run.returncode == 0, console[-3000:]
    for noise in NOISE:
        assert noise not in console, noise
    bars = [line for line in console.splitlines() if line.startswith("G steps:")]
    assert bars and "100/100" in bars[-1] and "d_loss=" in bars[-1] and "g_loss=" in bars[-1]
    assert re.search(r"fid=\d", bars[-1]), bars[-1]
    assert "lit-gans: DCGAN on MNISTDataModule (1x28x28)" in console and "100 generator steps" in console
    summary = console[console.index("lit-gans: fit ended"):]
    assert "fit ended at generator step 100 of 100" in summary
    assert re.search(r"best fid: [\d.]+ at generator step 100\b", summary), summary
    best = re.search(r"checkpoint \(best fid\): (\S+)", summary).group(1)
    assert best.endswith("best-fid-generator_step=100.ckpt") and (tmp_path / best).exists()
    assert (tmp_path / re.search(r"checkpoint \(last\): (\S+)", summary).group(1)).exists()
    sync = re.search(r"`wandb sync (\S+)`", summary).group(1)
    assert (tmp_path / sync).is_dir()
    assert "sample images: in the W&B run" in summary
    gif = tmp_path / re.search(r"samples over training: (\S+)", summary).group(1)
    assert gif.exists() and gif.parent.parent == (tmp_path / best).parent.parent  # beside the run's checkpoints


def test_the_bar_counts_generator_steps_from_a_resumed_step(tmp_path):
    model = DCGAN(**TINY, n_critic=3, max_generator_steps=4)
    bar = GANProgressBar()
    trainer = Trainer(**{**tiny_trainer_kwargs(callbacks=[bar]), "enable_progress_bar": True})
    trainer.fit(model, RandomImages(n=128))
    assert trainer.global_step > 4  # D and G steps: what Lightning's bar would have counted
    assert (bar.train_progress_bar.n, bar.train_progress_bar.total) == (4, 4)
    trainer.save_checkpoint(tmp_path / "4.ckpt")

    resumed = DCGAN(**TINY, n_critic=3, max_generator_steps=6)
    bar = GANProgressBar()
    trainer = Trainer(**{**tiny_trainer_kwargs(callbacks=[bar]), "enable_progress_bar": True})
    trainer.fit(resumed, RandomImages(n=128), ckpt_path=tmp_path / "4.ckpt")
    assert (bar.train_progress_bar.initial, bar.train_progress_bar.n, bar.train_progress_bar.total) == (4, 6, 6)


def test_the_engine_replaces_only_lightnings_default_bar():
    def bar_of(**kwargs):
        trainer = Trainer(**{**tiny_trainer_kwargs(), **kwargs})
        trainer.fit(DCGAN(**TINY, max_generator_steps=1), RandomImages())
        return trainer.progress_bar_callback, trainer.callbacks

    default, callbacks = bar_of(enable_progress_bar=True)
    assert type(default) is GANProgressBar and any(isinstance(c, FitSummary) for c in callbacks)
    mine = TQDMProgressBar(refresh_rate=3)

    class MyBar(TQDMProgressBar):
        pass

    chosen, _ = bar_of(enable_progress_bar=True, callbacks=[MyBar()])
    assert type(chosen) is MyBar
    none, _ = bar_of(enable_progress_bar=False)
    assert none is None
    kept_rate, _ = bar_of(enable_progress_bar=True, callbacks=[mine])
    assert type(kept_rate) is GANProgressBar and kept_rate.refresh_rate == 3


def test_the_bar_shows_losses_and_fid():
    model = DCGAN(**TINY, max_generator_steps=2)
    bar = GANProgressBar()
    trainer = Trainer(**{**tiny_trainer_kwargs(callbacks=[bar]), "enable_progress_bar": True, "log_every_n_steps": 1})
    trainer.fit(model, RandomImages())
    trainer.callback_metrics.update(fid=torch.tensor(12.345678), best_fid=torch.tensor(11.0))
    shown = bar.get_metrics(trainer, model)
    assert shown["fid"] == "12.35" and shown["best_fid"] == "11"
    assert float(shown["d_loss"]) == pytest.approx(float(trainer.callback_metrics["train/d_loss"]), rel=1e-2)
    assert list(shown)[:2] == ["d_loss", "g_loss"]


def test_the_summary_points_at_image_files_without_an_image_logger(tmp_path):
    grid = SampleGrid(every_n_generator_steps=None, interpolation=False)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[grid], logger=CSVLogger(tmp_path), default_root_dir=tmp_path))
    model = DCGAN(**TINY, max_generator_steps=2)
    trainer.fit(model, RandomImages())
    text = fit_summary(trainer, model, seconds=75)
    assert text.splitlines()[0] == "lit-gans: fit ended at generator step 2 of 2 in 1m15s"
    images = Path(text.split("sample images: ")[1].strip())
    assert images.is_dir() and list(images.rglob("*.png"))


@pytest.mark.parametrize("command", ["predict"])
def test_lightnings_predict_says_what_to_use(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--config", str(REPO / "configs" / "dcgan_mnist.yaml")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lit-gans: error: `lit-gans predict` is not for GANs")
    assert "lit-gans generate" in err


def test_the_wandb_run_is_named_after_its_model_and_data(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = REPO / "configs" / "gan_mnist.yaml"
    cli = main(["fit", "--config", str(config), f"--data.init_args.data_dir={mnist_dir}", "--data.init_args.download=false",
                "--model.init_args.max_generator_steps=1", "--trainer.logger.init_args.offline=true"])
    assert cli.trainer.logger.experiment.name == "VanillaGAN-NonSaturating-MNIST"  # its model and data
    cli.trainer.logger.experiment.finish()  # else the next logger reuses this process's run
    named = main(["fit", "--config", str(config), f"--data.init_args.data_dir={mnist_dir}", "--data.init_args.download=false",
                  "--model.init_args.max_generator_steps=1", "--trainer.logger.init_args.offline=true",
                  "--trainer.logger.init_args.name=mine"])
    assert named.trainer.logger.experiment.name == "mine"


def test_the_top_level_help_names_the_after_training_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "lit-gans generate" in shown and "lit-gans evaluate" in shown
    assert "validate" in shown and "predict" in shown  # lit-gans commands, not Lightning's loops


def test_ctrl_c_prints_where_the_fit_got_and_how_to_resume(tmp_path, monkeypatch):
    import signal

    from lightning.pytorch import Callback

    from lit_gans import console
    from lit_gans.callbacks import LastCheckpoint

    class CtrlC(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if pl_module.generator_step == 5:
                raise KeyboardInterrupt

    printed = []
    monkeypatch.setattr(console, "rank_zero_info", printed.append)
    handler = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT while it shuts down
    last = LastCheckpoint(dirpath=tmp_path, every_n_generator_steps=2, every_n_minutes=None)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[last, CtrlC()], enable_checkpointing=True))
    try:
        with pytest.raises(SystemExit):
            trainer.fit(DCGAN(**TINY, max_generator_steps=100), RandomImages(n=128))
    finally:
        signal.signal(signal.SIGINT, handler)
    summary = printed[-1].splitlines()
    assert summary[0].startswith("lit-gans: fit was interrupted at generator step 5 of 100")
    # last.ckpt is behind the step where the fit stopped (a KeyboardInterrupt of the program's own is not the
    # engine's Ctrl-C, which saves first): say which step a resume starts from (before: nothing), in Python's terms
    call = f'trainer.fit(model, datamodule, ckpt_path="{tmp_path / "last.ckpt"}")'
    assert summary[1] == f"  resume with {call} (training resumes at generator step 4)"
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["generator_steps"] == 4


def test_warnings_print_as_one_line_and_are_still_recorded(monkeypatch):
    import warnings

    from lit_gans.console import quiet_console

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    quiet_console()
    assert warnings.formatwarning("mode collapse\n  at step 500", UserWarning, "/site/x.py", 3) == (
        "lit-gans: warning: mode collapse at step 500\n"
    )
    with pytest.warns(UserWarning, match="recorded"):
        warnings.warn("recorded")


def test_a_resumed_offline_run_says_wandb_sync_append_once(mnist_dir, tmp_path):
    """Offline, each resumed piece of a W&B run is its own folder, which only ``wandb sync --append`` adds to the
    run: the resumed fit's console says that command, once; the first fit's says ``wandb sync``, once."""
    env = {**os.environ, "WANDB_MODE": "offline", "LIT_GANS_CACHE": str(tmp_path / "cache")}
    env.pop("WANDB_SILENT", None)
    fit = [sys.executable, "-m", "lit_gans", "fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"),
           f"--data.init_args.data_dir={mnist_dir}", "--data.init_args.download=false", "--data.init_args.batch_size=64",
           "--model.init_args.generator_width=8", "--model.init_args.discriminator_width=8", "--fid=null",
           "--diversity=null", "--samples=null", "--best_checkpoint=null"]  # fmt: skip

    def run(*args):
        done = subprocess.run([*fit, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        console = (done.stdout + done.stderr).replace("\r", "\n")
        assert done.returncode == 0, console[-3000:]
        return console

    first = run("--model.init_args.max_generator_steps=2")
    assert len(re.findall(r"wandb sync", first)) == 1 and "--append" not in first, first[-2000:]
    folder = re.search(r"--ckpt_path (\S+)|checkpoint \(last\): (\S+)", first)
    last = next(g for g in folder.groups() if g)
    resumed = run("--model.init_args.max_generator_steps=4", f"--ckpt_path={last}")
    assert len(re.findall(r"wandb sync", resumed)) == 1, resumed[-2000:]
    sync = re.search(r"`wandb sync --append (\S+)`", resumed)
    assert sync and (tmp_path / sync.group(1)).is_dir(), resumed[-2000:]

"""The divergence guard against what is not NaN yet (a blow-up), checkpoints of states it rejects, and skipped
steps that are said (issue 18 #17)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gan_testing import TINY, NaNAfter, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer

from lit_gans import DCGAN
from lit_gans.callbacks import LastCheckpoint
from lit_gans.cli import main
from lit_gans.gan import NonFiniteLossError

REPO = Path(__file__).resolve().parents[2]


def adam(lr: float):
    return lambda params: torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))


def test_lr_10_on_the_shipped_config_stops_with_a_clear_message_and_writes_no_blown_up_checkpoint(
    mnist_dir, tmp_path, monkeypatch, capsys
):
    # before: rc 0 at the budget, BatchNorm running_var 1e10 and every pixel saturated, without a word
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(  # the run's last checkpoint, every 5 steps, and none of its other callbacks
        "fid: null\ndiversity: null\ngradient_norms: null\nsamples: null\nbest_checkpoint: null\n"
        "last_checkpoint:\n  init_args: {dirpath: checkpoints, every_n_generator_steps: 5}\n"
    )
    with pytest.raises(SystemExit) as stop:
        main([
            "fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"), "--config", "tiny.yaml",
            f"--data.init_args.data_dir={mnist_dir}", "--data.init_args.download=false", "--data.init_args.batch_size=16",
            "--model.init_args.generator_width=8", "--model.init_args.discriminator_width=8",
            "--model.init_args.max_generator_steps=30", "--model.init_args.generator_optimizer.lr=10",
            "--model.init_args.discriminator_optimizer.lr=10", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
        ])  # fmt: skip
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lit-gans: error:")]
    assert len(errors) == 1 and "parameters and buffers of G and D was" in errors[0], errors
    assert "beyond max_abs_value=1e+06) at generator step 10" in errors[0]  # the first check, long before NaN
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # step 5 was already blown up: never saved


def test_max_abs_value_none_turns_the_blowup_check_off():
    def fit(**guard):
        opt = adam(10.0)
        shape = dict(TINY, image_shape=(1, 16, 16))  # D with BatchNorm
        model = DCGAN(**shape, max_generator_steps=20, generator_optimizer=opt, discriminator_optimizer=opt, **guard)
        Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=64, image_shape=(1, 16, 16)))
        return model

    assert fit(max_abs_value=None).generator_step == 20
    with pytest.raises(NonFiniteLossError, match="beyond max_abs_value"):  # the same run, guarded
        fit()


def test_a_rollback_never_lands_inside_the_streak(tmp_path):
    # D's loss is NaN from generator step 5 on; G keeps training. last.ckpt is due at steps 6 and 8, inside the
    # streak: before, it was written there, and the rollback went back into the streak (to step 8)
    model = NaNAfter(start=5, max_nonfinite_steps=4, on_nonfinite="rollback", max_rollbacks=1, **TINY)
    last = LastCheckpoint(dirpath=tmp_path, every_n_generator_steps=2, every_n_minutes=None)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[last], enable_checkpointing=True))
    with pytest.warns(UserWarning) as warned, pytest.raises(NonFiniteLossError):
        trainer.fit(model, RandomImages(n=256))
    messages = [str(w.message) for w in warned]
    (rollback,) = [m for m in messages if "rolled back" in m]
    assert "(saved at generator step 4)" in rollback
    skipped = [m for m in messages if m.startswith("not writing")]
    assert len(skipped) == 1 and "at generator step 6" in skipped[0]  # said once, not at every due step


def test_skipped_steps_are_said_in_one_line_not_one_per_step():
    # before: nothing said; D steps 1, 3, 5 are skipped (every other D loss is NaN)
    model = NaNAfter(start=0, every_other=True, max_nonfinite_steps=3, max_generator_steps=6, **TINY)
    with pytest.warns(UserWarning) as warned:
        Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=64))
    said = [str(w.message) for w in warned if "skipped the discriminator step" in str(w.message)]
    assert int(model.nonfinite_steps) == 3
    assert said == [
        "skipped the discriminator step at generator step 0: its loss was nan (1 in a row; 3 in a row end the run; "
        "train/nonfinite_steps counts them)"
    ]


def test_sigterm_inside_a_streak_leaves_the_last_healthy_checkpoint(tmp_path):
    """The preemption save is a checkpoint too: inside a streak of skipped steps it writes nothing, and the fit
    still stops for the signal."""
    import os
    import signal

    from lightning.pytorch import Callback

    class SigtermAt(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if pl_module.generator_step == 7:  # inside the streak that starts at step 5
                os.kill(os.getpid(), signal.SIGTERM)  # recorded by the engine's handler, acted on at the batch end

    model = NaNAfter(start=5, max_nonfinite_steps=10, **TINY)
    last = LastCheckpoint(dirpath=tmp_path, every_n_generator_steps=2, every_n_minutes=None)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[last, SigtermAt()], enable_checkpointing=True))
    with pytest.warns(UserWarning, match="not writing"), pytest.raises(SystemExit):  # Lightning's SIGTERMException
        trainer.fit(model, RandomImages(n=256))
    assert model.generator_step == 8
    assert int(torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["generator_steps"]) == 4

"""Resume after SIGKILL, checkpoint on SIGTERM, non-finite losses, bad configurations, corrupt checkpoints,
exact resume of data and noise, determinism."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from gan_testing import TINY, NaNAfter, RandomImages, SaveAt, tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_gans import DCGAN, WGAN, WGANGP, InfoGAN
from lit_gans.checkpoints import checkpoint_problem, resolve_checkpoint
from lit_gans.gan import NonFiniteLossError
from lit_gans.step import split_batch

SCRIPT = Path(__file__).with_name("resume_script.py")
REPO = Path(__file__).resolve().parents[2]


def start(out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "helpers"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, str(SCRIPT), str(out), *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(out: Path, proc: subprocess.Popen, min_step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = out / "ckpt" / "last.ckpt"
        if last.exists() and checkpoint_problem(last) is None:
            if int(torch.load(last, weights_only=False)["state_dict"]["generator_steps"]) >= min_step:
                return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    raise TimeoutError("no checkpoint appeared")


def logged_steps(out: Path) -> list[list[int]]:
    runs = []
    for metrics in sorted((out / "logs" / "run").glob("version_*/metrics.csv")):
        runs.append(sorted({int(r["step"]) for r in csv.DictReader(open(metrics)) if r.get("train/d_loss")}))
    return runs


@pytest.mark.parametrize("min_step", [10, 13])  # mostly a checkpoint at a cycle's end (12), then mid-cycle (13)
def test_sigkill_mid_run_then_resume_reaches_the_budget_and_continues_the_curve(tmp_path, min_step):
    proc = start(tmp_path)
    wait_for_checkpoint(tmp_path, proc, min_step=min_step)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(resolve_checkpoint(tmp_path / "ckpt"), weights_only=False)["state_dict"]
    saved = int(state["generator_steps"])
    assert 10 <= saved < 60
    # Checkpoints fall every 4 optimizer steps, so some land between the 2 critic steps of a cycle (n_critic=2 in
    # the script); the resumed run's first batch then completes that cycle and logs the next generator step.
    first_logged = saved + (1 if int(state["critic_steps_since_generator"]) + 1 >= 2 else 0)
    resumed = start(tmp_path, "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "FINAL_GENERATOR_STEP 60" in output
    first, second = logged_steps(tmp_path)
    assert second[0] == first_logged and second[-1] == 60  # the curve continues at the restored step
    assert first[0] <= saved <= first[-1]


def test_sigterm_saves_a_loadable_checkpoint_and_exits_cleanly(tmp_path):
    proc = start(tmp_path)
    wait_for_checkpoint(tmp_path, proc, min_step=4)
    before = int(torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]["generator_steps"])
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "SIGTERM received, saved" in output
    last = tmp_path / "ckpt" / "last.ckpt"
    assert checkpoint_problem(last) is None
    assert int(torch.load(last, weights_only=False)["state_dict"]["generator_steps"]) >= before


def test_injected_nan_is_skipped_then_training_stops_with_a_clear_message():
    model = NaNAfter(start=3, max_nonfinite_steps=4, **TINY)
    with pytest.raises(NonFiniteLossError) as err:
        Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=64))
    message = str(err.value)
    # D steps at generator steps 3, 4, 5, 6 were skipped (G kept training on its own finite loss)
    assert "discriminator loss was nan for 4 consecutive steps at generator step 6" in message
    assert "last finite losses: discriminator" in message and "generator" in message
    assert int(model.nonfinite_steps) == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())  # skipped, never applied


def test_intermittent_nan_is_skipped_and_training_goes_on():
    model = NaNAfter(start=0, every_other=True, max_nonfinite_steps=3, max_generator_steps=6, **TINY)
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=64))
    assert model.generator_step == 6 and int(model.nonfinite_steps) == 3  # D steps 1, 3, 5 skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_rollback_to_the_last_checkpoint_with_a_lower_learning_rate(tmp_path):
    model = NaNAfter(start=5, max_nonfinite_steps=2, on_nonfinite="rollback", max_rollbacks=2, **TINY)
    checkpoints = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[checkpoints], enable_checkpointing=True))
    # the injected NaNs persist, so: two rollbacks (each to the newest checkpoint, rates halved), then the stop
    with pytest.warns(UserWarning, match=r"rolled back to .*with learning rates x0\.25"):
        with pytest.raises(NonFiniteLossError, match="generator step"):
            trainer.fit(model, RandomImages(n=256))
    assert model._rollbacks == 2
    assert [opt.optimizer.param_groups[0]["lr"] for opt in model.optimizers()] == pytest.approx([2e-4 * 0.25] * 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: DCGAN(n_critic=0), "n_critic=0"),
        (lambda: DCGAN(generator_optimizer=lambda p: torch.optim.Adam(p, lr=-1e-3)), "generator_optimizer is invalid: Invalid learning rate: -0.001"),
        (lambda: DCGAN(discriminator_optimizer=lambda p: torch.optim.SGD(p, lr=float("nan"))), "discriminator_optimizer has lr=nan"),
        (lambda: WGAN(clip_value=0.0), "clip_value=0.0"),
        (lambda: WGAN(clip_value=-0.01), "clip_value=-0.01"),
        (lambda: WGANGP(gradient_penalty_weight=-1.0), "gradient_penalty_weight=-1.0"),
        (lambda: WGANGP(learning_rate=float("nan")), "learning_rate=nan"),
        (lambda: DCGAN(image_shape=(1, 30, 30)), "image_size=30"),
        (lambda: DCGAN(image_shape=(1, 32, 64)), r"image_shape=\(1, 32, 64\)"),
        (lambda: InfoGAN(latent_dim=50), "latent_dim=50 does not fit the InfoGAN codes"),
        (lambda: DCGAN(max_nonfinite_steps=0), "max_nonfinite_steps=0"),
        (lambda: DCGAN(on_nonfinite="ignore"), "on_nonfinite='ignore'"),
    ],
)
def test_invalid_configuration_is_rejected_at_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_channel_mismatch_is_rejected_before_any_data_is_prepared():
    class Watched(RandomImages):
        prepared = False

        def prepare_data(self):
            Watched.prepared = True

    model = DCGAN(image_shape=(3, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4)
    with pytest.raises(ValueError, match=r"image_shape=\(3, 8, 8\) does not match the datamodule's image_shape=\(1, 8, 8\)"):
        Trainer(**tiny_trainer_kwargs()).fit(model, Watched(n=16))
    assert not Watched.prepared


def test_cli_reports_bad_parameters_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lit_gans", "fit", "--config", str(REPO / "configs" / "wgan_mnist.yaml"),
         "--model.init_args.clip_value=-1"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "lit-gans: error: clip_value=-1.0 is out of range" in result.stderr
    assert "Traceback" not in result.stderr


def test_truncated_checkpoint_is_detected_and_the_previous_one_used(tmp_path):
    model = DCGAN(max_generator_steps=2, **TINY)
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(model, RandomImages(n=32))
    good, newer = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    trainer.save_checkpoint(good)
    time.sleep(0.01)
    trainer.save_checkpoint(newer)
    newer.write_bytes(newer.read_bytes()[: newer.stat().st_size // 2])
    assert "unreadable" in checkpoint_problem(newer)
    with pytest.warns(UserWarning, match=r"Skipping checkpoint .*b\.ckpt: unreadable"):
        assert resolve_checkpoint(newer) == good
    with pytest.warns(UserWarning):
        assert resolve_checkpoint(tmp_path) == good
    good.write_bytes(b"")
    # nothing to fall back to: the error names every checkpoint tried and what is wrong with it
    with pytest.raises(FileNotFoundError, match=r"no valid checkpoint .*a\.ckpt: unreadable.*b\.ckpt: unreadable"):
        resolve_checkpoint(tmp_path)


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    model = DCGAN(max_generator_steps=1, **TINY)
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(model, RandomImages(n=16))
    path = tmp_path / "x.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()

    def crash(*args):
        raise KeyboardInterrupt  # killed between writing the temporary file and the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["x.ckpt"]


class Record(Callback):
    def __init__(self):
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append(batch[0].sum().item())


def test_resume_mid_epoch_continues_the_data_and_noise_exactly(tmp_path, mnist_dir):
    from lit_gans.datamodules import MNISTDataModule

    def data():
        return MNISTDataModule(mnist_dir, download=False, batch_size=512, seed=3)  # 19 batches an epoch

    seed_everything(0)
    straight, seen = DCGAN(max_generator_steps=30, **dict(TINY, image_shape=(1, 28, 28))), Record()
    Trainer(callbacks=[seen], **tiny_trainer_kwargs()).fit(straight, data())

    seed_everything(0)
    first, ckpt = DCGAN(max_generator_steps=30, **dict(TINY, image_shape=(1, 28, 28))), tmp_path / "mid.ckpt"
    Trainer(callbacks=[SaveAt(ckpt, 6)], **tiny_trainer_kwargs()).fit(first, data())  # interrupted in epoch 0
    seed_everything(123)  # a different global RNG: the data order and the noise must not depend on it
    resumed, seen_after = DCGAN(max_generator_steps=30, **dict(TINY, image_shape=(1, 28, 28))), Record()
    Trainer(callbacks=[seen_after], **tiny_trainer_kwargs()).fit(resumed, data(), ckpt_path=ckpt)
    assert seen_after.batches == seen.batches[7:]  # the rest of epoch 0, then epoch 1 in the same order
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)  # and the same weights as the uninterrupted run


def test_two_deterministic_cpu_runs_give_identical_weights():
    def run():
        seed_everything(7)
        model = DCGAN(max_generator_steps=200, **TINY)
        Trainer(**tiny_trainer_kwargs(deterministic=True)).fit(model, RandomImages(n=256))
        return model.state_dict()

    a, b = run(), run()
    assert int(a["generator_steps"]) == 200
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_skipped_nonfinite_step_leaves_no_trace_in_batchnorm_statistics():
    # 16x16: both networks have BatchNorm, whose running statistics every training-mode forward moves
    model = NaNAfter(start=0, max_nonfinite_steps=100, max_generator_steps=1, **dict(TINY, image_shape=(1, 16, 16)))
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=64, image_shape=(1, 16, 16)))
    assert int(model.nonfinite_steps) == 1  # the one D step was skipped, the G step was not
    tracked = {k: int(v) for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    assert any(k.startswith("generator.") for k in tracked) and any(k.startswith("discriminator.") for k in tracked)
    # only the G step's forwards count (G(z), then D(G(z))): the skipped D step's G(z), D(real) and D(fake) do not
    assert tracked == {k: 1 for k in tracked}


class NaNBatch(DCGAN):
    """Real batches are NaN at generator step ``at``: D's forward on them would poison its statistics."""

    def __init__(self, at: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.at = at

    def training_step(self, batch, batch_idx):
        real, labels = split_batch(batch)
        poisoned = real * float("nan") if self.generator_step == self.at else real
        return super().training_step((poisoned, labels) if labels is not None else poisoned, batch_idx)


def test_one_nan_batch_does_not_poison_batchnorm_statistics_or_checkpoints(tmp_path):
    model = NaNBatch(at=2, max_generator_steps=4, **dict(TINY, image_shape=(1, 16, 16)))  # D with BatchNorm
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(model, RandomImages(n=64, image_shape=(1, 16, 16)))
    assert int(model.nonfinite_steps) == 1
    trainer.save_checkpoint(tmp_path / "after.ckpt")
    state = torch.load(tmp_path / "after.ckpt", weights_only=True)["state_dict"]
    for key, value in state.items():
        assert torch.isfinite(value.float()).all(), key


def test_rollback_warning_names_the_divergence_and_the_diverged_step(tmp_path):
    model = NaNAfter(start=5, max_nonfinite_steps=2, on_nonfinite="rollback", max_rollbacks=1, **TINY)
    checkpoints = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[checkpoints], enable_checkpointing=True))
    with pytest.warns(UserWarning) as warnings_, pytest.raises(NonFiniteLossError):
        trainer.fit(model, RandomImages(n=256))
    (message,) = [str(w.message) for w in warnings_ if "rolled back" in str(w.message)]
    # D steps at generator steps 5 and 6 were non-finite: the run diverged at step 6, the checkpoint is older
    assert "discriminator loss was nan for 2 consecutive steps at generator step 6" in message
    restored = int(message.split("saved at generator step ")[1].split(")")[0])
    assert restored < 6


def test_a_zero_learning_rate_is_reported():
    with pytest.warns(UserWarning, match="discriminator_optimizer has lr=0: that network will never change"):
        DCGAN(discriminator_optimizer=lambda p: torch.optim.Adam(p, lr=0.0), **TINY)


def test_a_finished_run_resumed_in_python_trains_nothing(tmp_path, caplog):
    model = DCGAN(max_generator_steps=3, **TINY)
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(model, RandomImages(n=64))
    trainer.save_checkpoint(tmp_path / "done.ckpt")
    resumed = DCGAN(max_generator_steps=3, **TINY)
    Trainer(**tiny_trainer_kwargs()).fit(resumed, RandomImages(n=64), ckpt_path=tmp_path / "done.ckpt")
    assert resumed.generator_step == 3
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert "already reached" in caplog.text


def test_rollback_restores_the_schedulers_and_the_lowered_rate_survives_their_steps(tmp_path):
    constant = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)  # noqa: E731 - recomputes from base_lrs
    model = NaNAfter(start=5, max_nonfinite_steps=2, on_nonfinite="rollback", max_rollbacks=1,
                     generator_lr_scheduler=constant, discriminator_lr_scheduler=constant, **TINY)  # fmt: skip
    checkpoints = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[checkpoints], enable_checkpointing=True))
    with pytest.warns(UserWarning, match="rolled back"), pytest.raises(NonFiniteLossError):
        trainer.fit(model, RandomImages(n=256))
    # generator steps (and so scheduler steps) ran after the rollback: the rates are still halved
    assert model.generator_step > 6
    assert [opt.optimizer.param_groups[0]["lr"] for opt in model.optimizers()] == pytest.approx([2e-4 * 0.5] * 2)
    assert [s.base_lrs[0] for s in model._lr_scheduler_list()] == pytest.approx([2e-4 * 0.5] * 2)


def test_sigterm_at_an_epochs_end_still_saves_the_checkpoint(tmp_path):
    """Lightning also checks for SIGTERM at an epoch's end, after the engine's per-batch check: a signal arriving
    there stopped the fit without the preemption checkpoint."""
    from lit_gans.checkpoints import LastCheckpoint

    class SigtermAtEpochEnd(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                trainer._signal_connector.received_sigterm = True  # what Lightning's SIGTERM handler sets

    last = LastCheckpoint(dirpath=tmp_path, every_n_generator_steps=None, every_n_minutes=None)
    model = DCGAN(**TINY, max_generator_steps=1000)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[last, SigtermAtEpochEnd()], enable_checkpointing=True))
    with pytest.raises(SystemExit):  # Lightning's SIGTERMException
        trainer.fit(model, RandomImages(n=64, batch_size=8))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert int(saved["state_dict"]["generator_steps"]) == model.generator_step == 16  # two epochs of 8 batches

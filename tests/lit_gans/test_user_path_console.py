"""What a user sees and gets on the way issue 21 walked: Ctrl-C in a Python fit saves where it stopped (item 3), a
plain Python ``Trainer(...).fit`` has the command's console (item 5), every logger's step is the generator step
and says so (item 6), and the latest quality metrics are in the bar and the summary, warnings on lines of their
own (item 7)."""

from __future__ import annotations

import csv
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from gan_testing import TINY, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import CSVLogger, Logger

from lit_gans import DCGAN, console
from lit_gans.callbacks import ConditionalAccuracy, GradientNormMonitor, LastCheckpoint, SampleGrid
from lit_gans.console import GANProgressBar, fit_summary
from lit_gans.loggers import WandbLogger
from lit_gans.preemption import INTERRUPTED_EXIT_STATUS


# ---------------------------------------------------------------------------------------------- item 3: Ctrl-C
class CtrlC(Callback):
    """Presses Ctrl-C (SIGINT to this process) ``times`` times when the fit reaches generator step ``step``."""

    def __init__(self, step: int, times: int = 1) -> None:
        self.step, self.times = step, times

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.generator_step == self.step and self.times:
            for _ in range(self.times):
                self.times -= 1
                signal.raise_signal(signal.SIGINT)


@pytest.fixture
def default_ctrl_c():
    """Ctrl-C means KeyboardInterrupt here (else the engine leaves Ctrl-C alone), and does so again afterwards."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    yield
    handler = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    assert handler is signal.default_int_handler, "the fit did not give Ctrl-C back"


def interrupted_fit(tmp_path, monkeypatch, *callbacks, datamodule=None):
    printed = []
    monkeypatch.setattr(console, "rank_zero_info", printed.append)
    last = LastCheckpoint(dirpath=tmp_path, every_n_generator_steps=2, every_n_minutes=None)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[last, *callbacks], enable_checkpointing=True))
    with pytest.raises(SystemExit) as stopped:
        trainer.fit(DCGAN(**TINY, max_generator_steps=100), datamodule or RandomImages(n=128))
    return stopped.value.code, printed


def test_ctrl_c_in_a_python_fit_saves_where_it_stopped_and_the_printed_call_resumes(tmp_path, monkeypatch, default_ctrl_c):
    # before: exit status 1, last.ckpt at generator step 4 (the schedule's), no resume call
    code, printed = interrupted_fit(tmp_path, monkeypatch, CtrlC(step=5))
    assert code == INTERRUPTED_EXIT_STATUS == 130
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["generator_steps"] == 5
    summary = printed[-1].splitlines()
    assert summary[0].startswith("lit-gans: fit was interrupted at generator step 5 of 100")
    call = f'trainer.fit(model, datamodule, ckpt_path="{tmp_path / "last.ckpt"}")'
    assert summary[1] == f"  resume with {call} (training resumes at generator step 5)"

    model = DCGAN(**TINY, max_generator_steps=7)
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=128), ckpt_path=tmp_path / "last.ckpt")
    assert model.generator_step == 7


def test_ctrl_c_twice_stops_at_once_and_points_at_the_last_saved_state(tmp_path, monkeypatch, default_ctrl_c):
    code, printed = interrupted_fit(tmp_path, monkeypatch, CtrlC(step=5, times=2))
    assert code == 130
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["generator_steps"] == 4  # not saved
    assert printed[-1].splitlines()[1].endswith("(training resumes at generator step 4)")


class CtrlCAtSetup(RandomImages):
    def setup(self, stage=None):
        signal.raise_signal(signal.SIGINT)


def test_ctrl_c_before_training_stops_with_130_and_saves_nothing(tmp_path, monkeypatch, default_ctrl_c):
    # before: exit status 1
    code, printed = interrupted_fit(tmp_path, monkeypatch, datamodule=CtrlCAtSetup())
    assert code == 130
    assert not list(tmp_path.glob("*.ckpt"))
    assert "resume with" not in printed[-1]


# ------------------------------------------------------------------------ items 5 and 7: a plain Python fit
#: the README's Python example, tiny, with a callback of the user's that warns mid-training
README_PYTHON_FIT = """
import sys, warnings
from lightning.pytorch import Callback, Trainer
from lit_gans import DCGAN
from lit_gans.datamodules import MNISTDataModule

class Warns(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.generator_step == 2 and batch_idx == 1:
            warnings.warn("mode collapse?")

datamodule = MNISTDataModule(sys.argv[1], batch_size=128, download=False)
model = DCGAN(image_shape=datamodule.image_shape, max_generator_steps=3, generator_width=8, discriminator_width=8)
Trainer(max_epochs=-1, callbacks=[Warns()]).fit(model, datamodule)
"""
#: what Lightning printed in such a fit before (issue 21 #5)
PYTHON_NOISE = ("litlogger", "litmodels", "tensorboardX", "will override existing callbacks", "LeafSpec",
                "| Name", "Trainable params", "Traceback", "Detected KeyboardInterrupt")  # fmt: skip


@pytest.fixture(scope="module")
def python_fit(mnist_dir, tmp_path_factory):
    """A Python script's fit, run as a user runs it; stdout and stderr on one pipe, as in a terminal or log file."""
    folder = tmp_path_factory.mktemp("python_fit")
    (folder / "train.py").write_text(README_PYTHON_FIT)
    env = {**os.environ, "LIT_GANS_CACHE": str(folder / "cache"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "train.py", str(mnist_dir)], cwd=folder, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    return folder, run.stdout


def test_a_python_fit_prints_the_commands_console_and_names_its_checkpoint(python_fit):
    folder, output = python_fit
    for noise in PYTHON_NOISE:
        assert noise not in output, noise
    assert "lit-gans: DCGAN on MNISTDataModule (1x28x28)" in output and "3 generator steps" in output
    assert re.search(r"G steps: .*3/3", output)
    summary = output[output.index("lit-gans: fit ended at generator step 3 of 3"):]
    checkpoint = re.search(r"checkpoint \(last\): (\S+)", summary)
    assert checkpoint is not None, summary
    model = DCGAN.load_from_checkpoint(folder / checkpoint[1], weights_only=True)
    assert model.generator_step == 3


def test_a_warning_prints_on_a_line_of_its_own_not_inside_the_bars(python_fit):
    # before: "G steps: 67%|...| 2/3 [...]/tmp/.../train.py:9: UserWarning: mode collapse?" and the source line
    _, output = python_fit
    lines = output.split("\n")
    assert "lit-gans: warning: mode collapse?" in lines, [line for line in lines if "mode collapse" in line]
    assert "warnings.warn(" not in output


# ------------------------------------------------------------------------- item 6: the generator step as the axis
class Recorder(Logger):
    """Any Lightning logger (TensorBoard's logs each value with ``add_scalar(name, value, step)``): what it gets."""

    def __init__(self):
        super().__init__()
        self.calls = []

    name, version = "recorder", 0

    def log_metrics(self, metrics, step=None):
        self.calls.append((dict(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def fit_with_loggers(*loggers, n_critic=3):
    model = DCGAN(**TINY, n_critic=n_critic, max_generator_steps=4)
    # values and images of callbacks, logged through the callbacks' path
    callbacks = [GradientNormMonitor(every_n_generator_steps=2), SampleGrid(every_n_generator_steps=2, num_images=4, nrow=2)]
    trainer = Trainer(**tiny_trainer_kwargs(logger=list(loggers), callbacks=callbacks, log_every_n_steps=1))
    trainer.fit(model, RandomImages(n=64))
    assert trainer.global_step == 4 * (n_critic + 1)  # Lightning's count of D and G updates: not the axis
    return model


def test_every_logged_value_is_at_the_generator_step_named_generator_step(tmp_path):
    # before: CSV and TensorBoard had the generator step only as the unnamed step; no generator_step value
    recorder = Recorder()
    fit_with_loggers(CSVLogger(tmp_path, name="csv"), recorder)
    assert recorder.calls and all(metrics.get("generator_step") == step for metrics, step in recorder.calls)
    assert {step for _, step in recorder.calls} == {0, 1, 2, 3, 4}
    assert any("grad_norm/generator" in metrics for metrics, _ in recorder.calls)
    rows = list(csv.DictReader((tmp_path / "csv" / "version_0" / "metrics.csv").open()))
    assert rows and all(row["generator_step"] and float(row["generator_step"]) == float(row["step"]) for row in rows)
    assert max(float(row["generator_step"]) for row in rows) == 4


def wandb_records(run_folder: Path) -> list:
    """The records of an offline W&B run, what ``wandb sync`` uploads: its ``run-<id>.wandb`` file, a LevelDB-style
    log (a 7-byte file header, then 32 KiB blocks of chunks, each with a 7-byte header: CRC, length, type) of
    protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_folder.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, payload, offset, block = [], b"", 7, 32768
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # a block's tail too short for a chunk header is padding
            offset += block - offset % block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        if kind == 0:  # padding of a preallocated or unfinished block
            break
        payload += data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            records.append(record)
            payload = b""
    return records


def test_wandb_plots_every_metric_against_generator_step(tmp_path, monkeypatch):
    # before: the axis was Lightning's trainer/global_step, which counts D and G updates (it held generator steps)
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(save_dir=str(tmp_path))
    fit_with_loggers(logger)
    logger.experiment.finish()
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    records = wandb_records(run)
    metrics = {(r.metric.name or r.metric.glob_name): r.metric for r in records  # as defined, not as W&B applied them
               if r.WhichOneof("record_type") == "metric" and not r.metric.expanded_from_glob}
    assert "generator_step" in metrics
    assert metrics["*"].step_metric == "generator_step"  # the last definition of the glob wins
    assert metrics["trainer/global_step"].options.hidden
    history = [{item.key or item.nested_key[0]: item.value_json for item in r.history.item}  # an image: its fields
               for r in records if r.WhichOneof("record_type") == "history"]  # fmt: skip
    logged = [h for h in history if "train/d_loss" in h or "grad_norm/generator" in h]
    assert logged and all(float(h["generator_step"]) == float(h["trainer/global_step"]) for h in logged)
    assert {float(h["generator_step"]) for h in logged} == {0, 1, 2, 3, 4}
    images = [h for h in history if "samples/grid" in h]
    assert [float(h["generator_step"]) for h in images] == [2, 4]


# ------------------------------------------------------------------------- item 7: the quality metrics shown
class Pixels(torch.nn.Module):
    """A fixed classifier of 8x8 images into 2 classes (no training): a known real accuracy."""

    held_out_accuracy = 0.5

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        mean = images.flatten(1).float().mean(1, keepdim=True)
        return torch.cat([mean, -mean], 1)


def test_the_bar_and_the_summary_show_the_latest_fid_and_accuracies():
    # before: the bar showed only the losses and FID, the summary only the best FID
    bar = GANProgressBar()
    accuracy = ConditionalAccuracy(Pixels(), num_per_class=4, every_n_generator_steps=2, metric_name="legibility")
    model = DCGAN(**TINY, num_classes=2, max_generator_steps=4)
    trainer = Trainer(**{**tiny_trainer_kwargs(callbacks=[accuracy, bar]), "enable_progress_bar": True})
    trainer.fit(model, RandomImages(n=64, num_classes=2))
    measured = float(trainer.callback_metrics["legibility/accuracy"])
    assert f"legibility_acc={measured:.4g}" in str(bar.train_progress_bar.postfix)
    trainer.callback_metrics.update(fid=torch.tensor(12.345678))  # as an FIDCallback logs it
    shown = bar.get_metrics(trainer, model)
    assert list(shown) == ["d_loss", "g_loss", "fid", "legibility_acc"]  # not the per-class or real accuracies
    assert f"  latest metrics: fid 12.35, legibility/accuracy {measured:.4g}" in fit_summary(trainer, model).splitlines()


def test_warnings_end_the_bars_line_once_in_a_file_or_pipe(capsys):
    bar = console._BarTqdm(total=10, file=sys.stdout)  # pytest's captured stdout: not a terminal
    bar.n = 3
    bar.refresh()
    assert console._format_warning("D wins\n  at step 3", UserWarning, "/site/x.py", 1) == "lit-gans: warning: D wins at step 3\n"
    console._format_warning("again", UserWarning, "/site/x.py", 1)  # the bar's line is already ended
    bar.n = 4
    bar.refresh()
    bar.close()
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 3 and "3/10" in lines[0] and "4/10" in lines[1] and lines[2] == ""


def test_lightnings_default_model_table_gives_way_to_the_header_line_a_chosen_one_stays():
    from lightning.pytorch.callbacks import ModelSummary

    def tables_of(**kwargs):
        trainer = Trainer(**{**tiny_trainer_kwargs(), **kwargs})
        trainer.fit(DCGAN(**TINY, max_generator_steps=1), RandomImages())
        return [c for c in trainer.callbacks if isinstance(c, ModelSummary)]

    (default,) = tables_of(enable_model_summary=True)
    assert default._max_depth == 0  # prints nothing: the header line says what the table said
    mine = ModelSummary(max_depth=2)
    assert tables_of(enable_model_summary=True, callbacks=[mine]) == [mine] and mine._max_depth == 2

"""Interrupting and resuming a shipped config through the ``lit-gans`` command, as a preempted cloud user does:
the scheduled last.ckpt, SIGKILL and SIGTERM, the exit status, the README's resume command, a finished run,
stale temporary files, --ckpt_path files and folders, and which model arguments win."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import wandb
from checkpoint_testing import plant

from lit_gans.checkpoints import checkpoint_problem
from lit_gans.cli import PREEMPTED_EXIT_STATUS

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "dcgan_mnist.yaml"


def command(mnist_dir: Path, *extra: str) -> list[str]:
    """The README's main job on the test MNIST, checkpointing every 20 generator steps instead of 500."""
    return [
        sys.executable, "-m", "lit_gans", "fit", "--config", str(CONFIG),
        f"--data.init_args.data_dir={mnist_dir}", "--data.init_args.download=false", "--data.init_args.batch_size=32",
        "--last_checkpoint.every_n_generator_steps=20", "--trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip


def start(cwd: Path, mnist_dir: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, WANDB_MODE="disabled")
    return subprocess.Popen(command(mnist_dir, *extra), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(cwd: Path, mnist_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="disabled")
    return subprocess.run(command(mnist_dir, *extra), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def checkpoint_folder(cwd: Path) -> Path:
    (folder,) = (cwd / "lightning_logs" / "lit-gans").glob("*/checkpoints")
    return folder


def step_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["generator_steps"])


def wait_for_last(cwd: Path, proc: subprocess.Popen, min_step: int, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for last in (cwd / "lightning_logs" / "lit-gans").glob("*/checkpoints/last.ckpt"):
            if checkpoint_problem(last) is None and step_of(last) >= min_step:
                return last
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    raise TimeoutError("no scheduled checkpoint appeared")


def test_sigkill_after_the_first_interval_leaves_a_checkpoint_the_readme_resume_continues(tmp_path, mnist_dir):
    proc = start(tmp_path, mnist_dir, "--model.init_args.max_generator_steps=5000")
    last = wait_for_last(tmp_path, proc, min_step=20)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = step_of(last)
    assert saved % 20 == 0 and saved < 5000
    folder = checkpoint_folder(tmp_path)
    # a save that the kill interrupted leaves a temporary file; the resume removes it
    (folder / ".last.ckpt.tmp-999999999").write_bytes(b"partial")
    # the README's resume command (a folder); the budget given on the command line wins over the checkpoint's
    resumed = run(tmp_path, mnist_dir, f"--ckpt_path={folder}", f"--model.init_args.max_generator_steps={saved + 10}")
    assert resumed.returncode == 0, resumed.stderr
    assert f"max_generator_steps={saved + 10} overrides the checkpoint's 5000" in resumed.stderr
    assert step_of(folder / "last.ckpt") == saved + 10
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # no last-v1.ckpt, no temporary file


def test_sigterm_exits_with_the_preemption_status_and_last_stays_the_newest(tmp_path, mnist_dir):
    proc = start(tmp_path, mnist_dir, "--model.init_args.max_generator_steps=5000")
    wait_for_last(tmp_path, proc, min_step=20)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_STATUS == 75, output
    folder = checkpoint_folder(tmp_path)
    stopped = step_of(folder / "last.ckpt")  # written at the SIGTERM, past the scheduled step
    assert f"stopped by SIGTERM at generator step {stopped} of max_generator_steps=5000" in output
    assert f"resume with --ckpt_path {folder.relative_to(tmp_path)}" in output

    # resumed to a budget from the config file: the checkpoint's 5000 is kept unless the command line says otherwise
    budget = stopped + 25
    resumed = run(tmp_path, mnist_dir, f"--ckpt_path={folder / 'last.ckpt'}", f"--model.init_args.max_generator_steps={budget}")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]
    assert step_of(folder / "last.ckpt") == budget  # "last" is the last, after the resume too
    before = (folder / "last.ckpt").stat().st_mtime_ns

    # resuming the finished run trains nothing and says so
    again = run(tmp_path, mnist_dir, f"--ckpt_path={folder}", f"--model.init_args.max_generator_steps={budget}")
    assert again.returncode == 0, again.stderr
    assert f"budget of max_generator_steps={budget} generator steps is already reached" in again.stderr
    assert step_of(folder / "last.ckpt") == budget and (folder / "last.ckpt").stat().st_mtime_ns == before


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir) -> Path:
    """A finished 6-step run of the config with tiny networks and an averaged generator; its checkpoint folder."""
    cwd = tmp_path_factory.mktemp("trained")
    from lit_gans.cli import main

    # W&B offline, named by the logger itself: wandb reads WANDB_MODE once per process, so an in-process run
    # cannot switch it after an earlier test's run
    old, mode = os.getcwd(), os.environ.pop("WANDB_MODE", None)
    os.chdir(cwd)
    try:
        main(command(mnist_dir, "--model.init_args.max_generator_steps=6", "--model.init_args.generator_width=8",
                     "--model.init_args.discriminator_width=8")[3:])  # fmt: skip
    finally:
        os.chdir(old)
        if mode is not None:
            os.environ["WANDB_MODE"] = mode
    return checkpoint_folder(cwd)


@pytest.fixture
def checkpoints(trained, tmp_path) -> Path:
    """A copy of the finished run's checkpoint folder, for one test to resume from."""
    return Path(shutil.copytree(trained, tmp_path / "checkpoints"))


def cli(tmp_path, monkeypatch, mnist_dir, *extra):
    from lit_gans.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return main(command(mnist_dir, *extra)[3:])


def test_a_file_and_a_folder_resume_alike_and_the_command_line_wins(trained, tmp_path, monkeypatch, mnist_dir, caplog):
    for path in (trained, trained / "last.ckpt"):
        path = shutil.copytree(trained, tmp_path / path.name) if path.is_dir() else shutil.copy(path, tmp_path)
        run_ = cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={path}", "--model.init_args.max_generator_steps=9",
                   "--model.init_args.generator_ema_decay=0.99")  # fmt: skip
        model = run_.model
        assert model.generator_step == 9 and model.max_generator_steps == 9
        assert model.generator_ema is not None and model.hparams.generator_ema_decay == 0.99
        # the architecture came from the checkpoint, not from the config file's width 64
        assert model.hparams.generator_width == 8
    assert "generator_width=8 from the checkpoint (the config says 64" in caplog.text


def test_a_corrupt_checkpoint_file_falls_back_to_a_valid_one_beside_it(checkpoints, tmp_path, monkeypatch, mnist_dir):
    corrupt = checkpoints / "corrupt.ckpt"
    corrupt.write_bytes((checkpoints / "last.ckpt").read_bytes()[:1000])
    with pytest.warns(UserWarning, match=r"Skipping checkpoint .*corrupt\.ckpt: unreadable.*resuming from .*last\.ckpt"):
        model = cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={corrupt}", "--model.init_args.max_generator_steps=7").model
    assert model.generator_step == 7


def test_another_model_class_is_refused(checkpoints, tmp_path, monkeypatch, mnist_dir, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(tmp_path, monkeypatch, mnist_dir, "--model=lit_gans.LSGAN", f"--ckpt_path={checkpoints}")
    assert exit_.value.code == 2
    assert "holds a lit_gans.DCGAN, but the config's model is lit_gans.LSGAN" in capsys.readouterr().err


def test_an_optimizer_setting_resumes_with_the_checkpoint_and_says_so_or_is_refused(checkpoints, tmp_path, monkeypatch, mnist_dir, caplog, capsys):
    faster = tmp_path / "faster.yaml"  # the config file asks for another lr than the run trained with
    faster.write_text("model:\n  init_args:\n    generator_optimizer:\n      class_path: torch.optim.Adam\n"
                      "      init_args: {lr: 0.001, betas: [0.5, 0.999]}\n")  # fmt: skip
    model = cli(tmp_path, monkeypatch, mnist_dir, "--config", str(faster), f"--ckpt_path={checkpoints}",
                "--model.init_args.max_generator_steps=7").model  # fmt: skip
    assert model.optimizers()[0].param_groups[0]["lr"] == 0.0002  # the saved state wins, as Lightning restores it
    assert "generator_optimizer lr=0.0002 from the checkpoint (the config says 0.001;" in caplog.text
    with pytest.raises(SystemExit) as exit_:  # asked for on the command line: it would be undone, so refused
        cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={checkpoints}", "--model.init_args.max_generator_steps=8",
            "--model.init_args.generator_optimizer.init_args.lr=0.001")  # fmt: skip
    assert exit_.value.code == 2
    assert "generator_optimizer lr=0.001 cannot change on resume" in capsys.readouterr().err
    rmsprop = tmp_path / "rmsprop.yaml"
    rmsprop.write_text("model:\n  init_args:\n    discriminator_optimizer:\n      class_path: torch.optim.RMSprop\n")
    with pytest.raises(SystemExit) as exit_:
        cli(tmp_path, monkeypatch, mnist_dir, "--config", str(rmsprop), f"--ckpt_path={checkpoints}")
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert "its discriminator_optimizer has settings amsgrad, betas" in err and "torch.optim.RMSprop does not take" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--ckpt_path=missing/last.ckpt"], "lit-gans: error: --ckpt_path=missing/last.ckpt: no such checkpoint file or folder"),
        (["--ckpt_path=notes.txt"], "lit-gans: error: no valid checkpoint to resume from at notes.txt: checkpoint notes.txt: unreadable"),
        (["--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger", "--trainer.logger.save_dir=tb"],
         "lit-gans: error: Neither `tensorboard` nor `tensorboardX` is available"),
        (["--model.init_args.image_shape=[1, 32, 32]"],
         "lit-gans: error: model.init_args.image_shape=(1, 32, 32) conflicts with the data's image_shape=(1, 28, 28)"),
        (["--data.init_args.data_dir=bad_labels"], "lit-gans: error: mnist: "),
        (["--data.init_args.data_dir=truncated"], "lit-gans: error: mnist: "),
    ],
    ids=["missing checkpoint", "text file as checkpoint", "tensorboard missing", "image_shape overridden",
         "corrupt MNIST label header", "truncated MNIST file"],
)
def test_bad_input_is_one_error_line_without_a_traceback(args, message, tmp_path, mnist_dir):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    for name in ("bad_labels", "truncated"):
        shutil.copytree(mnist_dir / "MNIST", tmp_path / name / "MNIST")
    labels = tmp_path / "bad_labels" / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x09\x07" + labels.read_bytes()[4:])  # the images' magic number
    images = tmp_path / "truncated" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100_000])
    result = run(tmp_path, mnist_dir, *args)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("lit-gans: error:")]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    named = {"bad_labels": ["bad magic number", labels], "truncated": ["truncated", images]}.get(args[0].split("=")[-1])
    if named:  # the MNIST cases say what is wrong with which file
        assert named[0] in errors[0] and str(named[1].relative_to(tmp_path)) in errors[0], errors[0]


def test_a_config_that_names_an_objective_resumes_with_it(tmp_path, monkeypatch, mnist_dir):
    from lit_gans.objectives import NonSaturatingLoss, RaLSGANLoss

    from lit_gans.cli import main

    small = ["--model.init_args.generator_width=8", "--model.init_args.discriminator_width=8"]
    ralsgan = command(mnist_dir, "--model.init_args.max_generator_steps=3", *small)[3:]
    ralsgan[ralsgan.index(str(CONFIG))] = str(REPO / "configs" / "ralsgan_mnist.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    first = main(ralsgan)
    assert isinstance(first.model.objective, RaLSGANLoss)
    folder = checkpoint_folder(tmp_path)
    # resumed with the DCGAN config, which names no objective: the checkpoint's RaLSGAN continues, and says so
    resumed = cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={folder}", "--model.init_args.max_generator_steps=5", *small)
    assert isinstance(resumed.model.objective, RaLSGANLoss) and resumed.model.generator_step == 5
    # unless the command line names another one, which changes the run: asked for explicitly
    other = cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={folder}", "--model.init_args.max_generator_steps=6",
                "--model.init_args.objective=lit_gans.objectives.NonSaturatingLoss", "--allow_resume_changes=true", *small)  # fmt: skip
    assert isinstance(other.model.objective, NonSaturatingLoss) and other.model.generator_step == 6


def test_a_run_with_regularizers_and_ada_resumes_with_them_and_their_state(tmp_path, monkeypatch, mnist_dir):
    from lit_gans.augment import AdaptiveAugment
    from lit_gans.regularizers import LeCam

    small = ["--model.init_args.generator_width=8", "--model.init_args.discriminator_width=8"]
    parts = tmp_path / "parts.yaml"
    parts.write_text(
        "model:\n  init_args:\n    regularizers:\n      - class_path: lit_gans.regularizers.LeCam\n"
        "        init_args: {weight: 0.3}\n    augment:\n      class_path: lit_gans.augment.AdaptiveAugment\n"
        "      init_args: {interval: 1, speed_images: 500}\n"
    )
    first = cli(tmp_path, monkeypatch, mnist_dir, "--config", str(parts), "--model.init_args.max_generator_steps=4", *small)
    p, averages = first.model.augment.p.clone(), first.model.regularizers[0].biased_real.clone()
    assert p > 0 or first.model.augment.rt != 0
    # resumed with the plain DCGAN config, which names neither: the checkpoint's parts continue, with their state
    resumed = cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={checkpoint_folder(tmp_path)}",
                  "--model.init_args.max_generator_steps=4", *small)  # fmt: skip
    model = resumed.model
    assert isinstance(model.augment, AdaptiveAugment) and model.augment.speed_images == 500
    assert isinstance(model.regularizers[0], LeCam) and model.regularizers[0].weight == 0.3
    assert torch.equal(model.augment.p, p) and torch.equal(model.regularizers[0].biased_real, averages)


def test_a_planted_checkpoint_beside_a_good_one_is_refused_and_never_run(checkpoints, tmp_path, monkeypatch, mnist_dir):
    marker = tmp_path / "marker"
    planted = plant(checkpoints / "planted.ckpt", marker)
    os.utime(planted, (time.time() + 60, time.time() + 60))  # the newest file of the folder
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k.get("weights_only")) or real_load(*a, **k))
    with pytest.warns(UserWarning, match=r"Skipping checkpoint .*planted\.ckpt: refused: it refers to exec, .*resuming from .*last\.ckpt"):
        model = cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={checkpoints}", "--model.init_args.max_generator_steps=7").model
    assert model.generator_step == 7 and not marker.exists()
    assert loads and all(weights_only is True for weights_only in loads), loads  # Lightning's own resume load too


def test_a_checkpoint_that_needs_an_unrestricted_load_is_one_error_line(tmp_path, mnist_dir):
    (tmp_path / "run").mkdir()
    plant(tmp_path / "run" / "last.ckpt", tmp_path / "marker")
    result = run(tmp_path, mnist_dir, "--ckpt_path=run/last.ckpt")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "marker").exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("lit-gans: error:")]
    assert errors == [
        "lit-gans: error: no valid checkpoint to resume from at run/last.ckpt: checkpoint run/last.ckpt: refused: it "
        "refers to exec, which only torch.load(weights_only=False) would call, and that can run arbitrary code "
        "(lit-gans checkpoints hold only tensors and plain values)"
    ], result.stderr
    unrestricted = run(tmp_path, mnist_dir, "--ckpt_path=run", "--weights_only=false")
    assert unrestricted.returncode == 2 and "lit-gans: error: --weights_only=false: lit-gans resumes only with" in unrestricted.stderr


def test_a_second_fit_into_a_run_folder_in_use_is_refused_with_the_first_ones_pid(tmp_path, mnist_dir):
    first = start(tmp_path, mnist_dir, "--model.init_args.max_generator_steps=5000")
    try:
        wait_for_last(tmp_path, first, min_step=20)
        folder = checkpoint_folder(tmp_path)
        # the README's resume command, run while the first fit still trains into the same folder
        second = run(tmp_path, mnist_dir, f"--ckpt_path={folder}", "--model.init_args.max_generator_steps=5000")
        assert first.poll() is None, first.stdout.read()
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2, second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("lit-gans: error:")]
    assert errors == [
        f"lit-gans: error: checkpoint folder {folder.relative_to(tmp_path)} is in use by another fit (pid {first.pid}): "
        "wait for it to end or stop it, or train into another folder"
    ], second.stderr
    assert "Traceback" not in second.stderr
    # the first one killed (SIGKILL leaves its lock file behind), the folder is free again
    resumed = run(tmp_path, mnist_dir, f"--ckpt_path={folder}", f"--model.init_args.max_generator_steps={step_of(folder / 'last.ckpt') + 2}")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # the lock file goes with the fit that held it


def test_another_config_of_the_same_class_resumes_the_run_as_it_was_trained_and_says_so(checkpoints, tmp_path, monkeypatch, mnist_dir, caplog):
    from lit_gans.cli import main
    from lit_gans.objectives import NonSaturatingLoss

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    # the conditional config's model (the hinge loss, a projection D) with the unconditional callbacks (its metrics
    # callbacks would refuse an unconditional model); the DCGAN run was trained with DCGAN's default objective
    config = (REPO / "configs" / "cgan_projection_mnist.yaml").read_text()
    config = config.replace("config: callbacks/mnist_conditional.yaml", f"config: {REPO / 'configs' / 'callbacks' / 'mnist.yaml'}")
    config = config.replace("trainer: trainer/default.yaml", f"trainer: {REPO / 'configs' / 'trainer' / 'default.yaml'}")
    assert str(REPO) in config
    (tmp_path / "cgan_projection_mnist.yaml").write_text(config)
    args = command(mnist_dir, f"--ckpt_path={checkpoints}", "--model.init_args.max_generator_steps=8")[3:]
    args[args.index(str(CONFIG))] = str(tmp_path / "cgan_projection_mnist.yaml")
    resumed = main(args)
    model = resumed.model
    assert type(model.objective) is NonSaturatingLoss and model.generator_step == 8
    assert model.conditioning is None and model.num_classes == 0 and not model.hparams.discriminator_spectral_norm
    for line in (
        "objective=lit_gans.objectives.NonSaturatingLoss() from the checkpoint (the config says "
        "lit_gans.objectives.HingeLoss(); pass --model.init_args.objective=... to change it)",
        "conditioning=None from the checkpoint (the config says 'projection'",
        "discriminator_spectral_norm=False from the checkpoint (the config says True",
    ):
        assert line in caplog.text


def test_a_command_line_that_changes_training_never_writes_into_the_old_run_unless_asked(trained, tmp_path, monkeypatch, mnist_dir, capsys):
    shutil.copytree(trained.parents[2], tmp_path / "lightning_logs", symlinks=True)  # the run as it lies in its working folder
    folder = tmp_path / trained.relative_to(trained.parents[3])
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    change = ("--model.init_args.n_critic=2", "--model.init_args.max_generator_steps=8")
    with pytest.raises(SystemExit) as exit_:
        cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={folder}", *change)
    assert exit_.value.code == 2
    assert (
        f"lit-gans: error: --ckpt_path={folder / 'last.ckpt'}: the command line changes how the run trains "
        "(n_critic=2 (the checkpoint's: 1)), and the fit would write into that run's folder: continue as a new run "
        "with --trainer.logger.init_args.version=<new id>, or pass --allow_resume_changes=true to change the old one"
    ) in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # as a new run, from the checkpoint: the old run's files stay as they were
    wandb.finish()  # in one process, a new WandbLogger would join the run still in progress (the fixture's)
    forked = cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={folder}", *change, "--trainer.logger.init_args.version=forked")
    assert forked.model.n_critic == 2 and forked.model.generator_step == 8
    assert step_of(tmp_path / "lightning_logs" / "lit-gans" / "forked" / "checkpoints" / "last.ckpt") == 8
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # or in the old run, when asked
    wandb.finish()
    changed = cli(tmp_path, monkeypatch, mnist_dir, f"--ckpt_path={folder}", *change, "--allow_resume_changes=true")
    assert changed.model.n_critic == 2 and step_of(folder / "last.ckpt") == 8


def test_a_conditional_run_resumed_with_its_config_reports_no_difference(tmp_path, monkeypatch, mnist_dir, caplog):
    from lit_gans.cli import main

    small = ["--model.init_args.generator_width=8", "--model.init_args.discriminator_width=8"]
    args = command(mnist_dir, *small)[3:]
    args[args.index(str(CONFIG))] = str(REPO / "configs" / "cgan_projection_mnist.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    main([*args, "--model.init_args.max_generator_steps=2"])
    caplog.clear()
    resumed = main([*args, "--model.init_args.max_generator_steps=3", f"--ckpt_path={checkpoint_folder(tmp_path)}"])
    assert resumed.model.num_classes == 10 and resumed.model.generator_step == 3
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lit-gans: ")]
    assert "lit-gans: --model.init_args.max_generator_steps=3 overrides the checkpoint's 2" in said
    assert [line for line in said if "from the checkpoint" in line] == []  # config and data agree with it

"""What a user's environment does to the commands (issue 18, item 14): too many images, a folder that cannot be
written, a path that is a folder, a full disk, an unsafe checkpoint, a shape mismatch on resume, Ctrl-C. Each ends
in one line ``lit-gans: error: <what and where>`` (exit status 2; Ctrl-C: 130) before anything partial is written,
never in a traceback."""

from __future__ import annotations

import builtins
import errno
import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from data_testing import disk_full_after
from gan_testing import RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer, seed_everything

import lit_gans.generate
from lit_gans import DCGAN
from lit_gans.cli import main
from lit_gans.files import TEMPORARY_FILE

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(generator_width=8, discriminator_width=8, latent_dim=16)  # 28x28 grey


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    seed_everything(0)
    model = DCGAN(max_generator_steps=2, **SMALL)
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(model, RandomImages(n=32, image_shape=(1, 28, 28)))
    trainer.save_checkpoint(path)
    return path


def user_error(capsys, args: list, status: int = 2) -> str:
    """The one line the command printed on stderr, after checking the exit status and that there is no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == status, err
    assert "\n" not in err and "Traceback" not in err, err
    return err


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if TEMPORARY_FILE.match(p.name)]


def refuse_writes_below(monkeypatch, folder: Path, code: int) -> None:
    """Make every write below ``folder`` fail with ``code``, as a read-only mount (EROFS) or a full disk (ENOSPC)
    does: opening for writing, creating folders, renaming (root ignores file permissions, so they are emulated)."""
    folder = str(folder)

    def below(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(folder)

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fspath(path))

    real_open, real_os_open, real_mkdir, real_replace = builtins.open, os.open, os.mkdir, os.replace

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and below(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if below(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if below(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_replace(src, dst, *args, **kwargs):
        if below(dst):
            refuse(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "replace", fake_replace)


def generate_args(ckpt, out, n=10, *extra):
    return ["generate", "--ckpt_path", ckpt, "--num_images", n, "--output_dir", out, "--device", "cpu",
            "--progress", "false", *extra]  # fmt: skip


# ---------------------------------------------------------------------------------------------- generate
def test_too_many_images_are_refused_before_the_output_folder_is_made(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    err = user_error(capsys, generate_args(ckpt, out, 10**12))
    assert err.startswith("lit-gans: error: num_images=1000000000000") and "memory" in err, err
    assert not out.exists()


def test_an_output_dir_below_a_file_is_refused(ckpt, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    err = user_error(capsys, generate_args(ckpt, tmp_path / "a_file" / "out"))
    assert err.startswith(f"lit-gans: error: output_dir={tmp_path / 'a_file' / 'out'}") and "a_file" in err, err


@pytest.mark.parametrize("exists", [True, False])
def test_a_read_only_output_dir_is_refused_before_generating(ckpt, tmp_path, capsys, monkeypatch, exists):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    out = read_only / "out"
    if exists:
        out.mkdir()
    refuse_writes_below(monkeypatch, read_only, errno.EROFS)
    sampled = []
    monkeypatch.setattr(lit_gans.generate, "_sample", lambda *a: sampled.append(1))
    err = user_error(capsys, generate_args(ckpt, out))
    assert err.startswith(f"lit-gans: error: output_dir={out}") and "Read-only file system" in err, err
    assert not sampled and everything_under(read_only) == (["out"] if exists else [])


def test_an_npz_path_that_is_a_folder_is_refused_before_generating(ckpt, tmp_path, capsys):
    (tmp_path / "out" / "images.npz").mkdir(parents=True)
    err = user_error(capsys, generate_args(ckpt, tmp_path / "out", 10, "--format", "npz"))
    assert "images.npz" in err and "folder" in err, err
    assert everything_under(tmp_path / "out") == ["images.npz"]


def make_unwritable(path, where, monkeypatch):
    """``path`` made unwritable as ``where`` says: it is a folder, its folder is read-only, or its folder is a file."""
    if where == "a folder":
        path.mkdir(parents=True)
    elif where == "read-only":
        path.parent.mkdir()
        refuse_writes_below(monkeypatch, path.parent, errno.EROFS)
    else:
        path.parent.write_text("a file")


@pytest.mark.parametrize("where", ["a folder", "read-only", "below a file"])
def test_a_bad_interpolation_gif_path_is_refused_before_any_image(ckpt, tmp_path, capsys, monkeypatch, where):
    out, gif = tmp_path / "out", tmp_path / "gifs" / "walk.gif"
    make_unwritable(gif, where, monkeypatch)
    err = user_error(capsys, generate_args(ckpt, out, 10, "--interpolation_gif", gif))
    assert err.startswith(f"lit-gans: error: interpolation_gif={gif}"), err
    assert not out.exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_a_full_disk_while_generating_says_what_was_written(ckpt, tmp_path, capsys, monkeypatch, code):
    out = tmp_path / "out"
    disk_full_after(monkeypatch, out, files=4, code=code)
    err = user_error(capsys, generate_args(ckpt, out, 10))
    assert err.startswith("lit-gans: error: cannot write") and os.strerror(code) in err, err
    assert "4 of 10 images" in err and str(out) in err, err
    assert everything_under(out) == [f"00000{i}.png" for i in range(4)] and no_temporaries(out)


def test_efbig_from_a_file_size_limit_in_a_real_process(ckpt, tmp_path):
    """``RLIMIT_FSIZE`` makes the kernel refuse the write (EFBIG; Python ignores SIGXFSZ): the npz of 200 images
    (157 kB) does not fit under 100 kB."""
    out = tmp_path / "out"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    proc = subprocess.run(
        [sys.executable, "-m", "lit_gans", *map(str, generate_args(ckpt, out, 200, "--format", "npz"))],
        capture_output=True, text=True, preexec_fn=limit, timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and err[-1].startswith(f"lit-gans: error: cannot write {out / 'images.npz'}"), proc.stderr
    assert "File too large" in err[-1] and "Traceback" not in proc.stderr
    assert everything_under(out) == []


def test_ctrl_c_in_generate_is_one_line_and_exit_130(ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real_png_bytes, calls = lit_gans.generate.png_bytes, []

    def interrupted_after_three(image):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_png_bytes(image)

    monkeypatch.setattr(lit_gans.generate, "png_bytes", interrupted_after_three)
    err = user_error(capsys, generate_args(ckpt, out, 10), status=130)
    assert err.startswith("lit-gans: interrupted") and "3 of 10 images" in err and str(out) in err, err
    assert everything_under(out) == ["000000.png", "000001.png", "000002.png"] and no_temporaries(out)


@pytest.mark.parametrize("command", ["generate", "evaluate"])
def test_a_checkpoint_that_needs_an_unrestricted_load_is_refused_in_one_line(tmp_path, capsys, command):
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"options": pickle.PickleError("any object")}}, path)
    args = generate_args(path, tmp_path / "out") if command == "generate" else [
        "evaluate", "--ckpt_path", path, "--config", REPO / "configs" / "dcgan_mnist.yaml"]  # fmt: skip
    err = user_error(capsys, args)
    assert err.startswith(f"lit-gans: error: ckpt_path={path} is refused") and "PickleError" in err, err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- evaluate
@pytest.fixture
def evaluation(mnist_dir, tmp_path, monkeypatch, ckpt) -> list:
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "callbacks": [
            {"class_path": "lit_gans.callbacks.DiversityMonitor", "init_args": {"num_samples": 32, "classifier": "mnist"}}]},
        "model": {"class_path": "lit_gans.DCGAN", "init_args": SMALL},
        "data": {"class_path": "lit_gans.datamodules.MNISTDataModule",
                 "init_args": {"data_dir": str(mnist_dir), "download": False, "batch_size": 16}},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return ["evaluate", "--ckpt_path", ckpt, "--config", tmp_path / "config.yaml"]


@pytest.mark.parametrize("where", ["a folder", "read-only", "below a file"])
def test_a_bad_output_json_is_refused_before_computing(evaluation, tmp_path, capsys, monkeypatch, where):
    target = tmp_path / "scores" / "metrics.json"
    make_unwritable(target, where, monkeypatch)
    computed = []
    monkeypatch.setattr("lit_gans.evaluate.run_metrics", lambda *a, **k: computed.append(1) or {})
    err = user_error(capsys, [*evaluation, "--output_json", target])
    assert err.startswith(f"lit-gans: error: output_json={target}"), err
    assert not computed


def test_metrics_are_printed_before_output_json_is_written(evaluation, tmp_path, capsys, monkeypatch):
    target = tmp_path / "scores" / "metrics.json"
    disk_full_after(monkeypatch, target.parent, files=0)
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in [*evaluation, "--output_json", target]])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and "diversity/modes_covered" in captured.out, captured
    err = captured.err.strip()
    assert "\n" not in err and err.startswith(f"lit-gans: error: cannot write {target}: No space left on device"), err
    assert not target.exists() and no_temporaries(tmp_path)


# ---------------------------------------------------------------------------------------------- fit
@pytest.fixture
def first_run(mnist_dir, tmp_path, monkeypatch):
    """A 2-step CLI fit at 28 px, and the arguments that resume it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    args = [
        "fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"), f"--data.init_args.data_dir={mnist_dir}",
        "--data.init_args.download=false", "--data.init_args.batch_size=16", "--trainer.enable_progress_bar=false",
        "--trainer.logger=false", *[f"--model.init_args.{k}={v}" for k, v in SMALL.items()],
    ]  # fmt: skip
    main([*args, "--model.init_args.max_generator_steps=2"])
    (last,) = tmp_path.rglob("last.ckpt")
    return args, last


def test_resuming_with_another_image_size_names_both_shapes(first_run, capsys):
    args, last = first_run
    err = user_error(capsys, [*args, "--model.init_args.max_generator_steps=4", "--data.init_args.image_size=32",
                              f"--ckpt_path={last}"])  # fmt: skip
    assert err.startswith("lit-gans: error: ") and "(1, 28, 28)" in err and "(1, 32, 32)" in err and str(last) in err, err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_a_full_disk_in_fit_is_one_line_and_the_previous_checkpoint_stays(first_run, capsys, monkeypatch, code):
    args, last = first_run
    before = last.read_bytes()
    disk_full_after(monkeypatch, last.parent, files=0, code=code)
    err = user_error(capsys, [*args, "--model.init_args.max_generator_steps=4", f"--ckpt_path={last}"])
    assert err.startswith("lit-gans: error: cannot write") and str(last.parent) in err and os.strerror(code) in err, err
    assert last.read_bytes() == before and no_temporaries(last.parent)
    assert int(torch.load(last, weights_only=True)["state_dict"]["generator_steps"]) == 2


def test_a_disk_full_from_the_start_of_fit_is_one_line(first_run, capsys, monkeypatch, tmp_path):
    """The first file a fit writes is the run's config, in its run folder (the package's atomic writer)."""
    args, last = first_run
    disk_full_after(monkeypatch, tmp_path, files=0)
    err = user_error(capsys, [*args, "--model.init_args.max_generator_steps=4", "--trainer.default_root_dir=again"])
    assert err.startswith("lit-gans: error: cannot write again/config.yaml: No space left on device"), err
    assert not (tmp_path / "again" / "config.yaml").exists() and no_temporaries(tmp_path / "again")

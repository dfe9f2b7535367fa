"""Streaming: a folder datamodule prepared once into LitData chunks (``lit-gans prepare``, ``prepare_streaming``),
trained from with StreamingImageDataModule on 2 DDP ranks, resumed mid-epoch, in memory that does not grow."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer
from streaming_testing import MemoryAt, SeenImages, StopAt, image_ids, read_seen, write_indexed_images
from data_testing import current_umask, write_cat_face
from gan_testing import tiny_trainer_kwargs

from lit_gans import DCGAN, GAN
from lit_gans.callbacks import FIDCallback
from lit_gans.cli import main
from lit_gans.datamodules import (
    CatFacesDataModule,
    ImageDataModule,
    ImageFolderDataModule,
    StreamingImageDataModule,
    prepare_streaming,
)
from lit_gans.datamodules import streaming
from lit_gans.datamodules.base import uint8_to_unit_range
from lit_gans.fit_cli import CLI_OPTIONS, GANCLI

#: 2,000 RGB images, in chunks of about 85 images
COUNT = 2000


def floats(dataset) -> torch.Tensor:
    """A split's images as the model receives them: float in [-1, 1]."""
    return dataset.float_images()


def labels_of(dataset) -> torch.Tensor:
    return dataset.labels


def prepare_indexed(root: Path, size: int, chunk_bytes: str) -> Path:
    """:data:`COUNT` indexed images of ``size`` px in 4 class folders, prepared."""
    write_indexed_images(root / "raw", COUNT, size, classes=4)
    dm = ImageFolderDataModule(root / "raw", image_size=size, labels=True, preprocess_workers=0)
    return Path(prepare_streaming(dm, root / "prepared", chunk_bytes=chunk_bytes).location)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    """2,000 images of 16 px (1.5 MB as uint8), prepared once: quick to train on."""
    return prepare_indexed(tmp_path_factory.mktemp("large"), 16, "64KB")


@pytest.fixture(scope="module")
def large_64px(tmp_path_factory) -> Path:
    """2,000 images of 64 px (24.6 MB as uint8), prepared once: large enough to see memory grow."""
    return prepare_indexed(tmp_path_factory.mktemp("large_64px"), 64, "1MB")


@pytest.fixture
def small(tmp_path) -> Path:
    """29 indexed images of 16 px in 3 class folders, and a file that is no image."""
    raw = write_indexed_images(tmp_path / "raw", 29, 16, classes=3)
    (raw / "c0" / "notes.png").write_text("not an image")
    return raw


def prepare_args(raw: Path, out: Path, *extra: str) -> list[str]:
    return [
        "prepare", "--data", "lit_gans.datamodules.ImageFolderDataModule", f"--data.data_dir={raw}",
        "--data.image_size=16", "--data.labels=true", "--data.val_split=0.2", "--data.preprocess_workers=0",
        f"--output_dir={out}", "--chunk_bytes=4KB", *extra,
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------- prepare
def test_prepare_cli_stores_the_in_memory_split_and_a_rerun_is_a_no_op(small, tmp_path, capsys):
    out = tmp_path / "prepared"
    main(prepare_args(small, out))
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said == (
        f"lit-gans: prepared 23 training images and 6 held out (3x16x16) in {out}: 29 images used, 1 skipped "
        "(not_an_image: 1)"
    )
    metadata = json.loads((out / streaming.METADATA_FILE).read_text())
    assert metadata["class_names"] == ["c0", "c1", "c2"] and metadata["summary"]["skipped"] == 1
    assert len(list((out / "train").glob("*.bin"))) > 1  # several chunks
    # readable by every account that may read it, as any folder made here (before: the folder was owner-only)
    umask = current_umask()
    assert {oct(p.stat().st_mode & 0o777) for p in (out, out / "train")} == {oct(0o777 & ~umask)}
    assert {oct(p.stat().st_mode & 0o777) for p in out.rglob("*") if p.is_file()} == {oct(0o666 & ~umask)}

    # the streamed splits are the in-memory module's, image for image, as the same floats
    memory = ImageFolderDataModule(small, image_size=16, labels=True, val_split=0.2, preprocess_workers=0,
                                   cache_dir=tmp_path / "cache")  # fmt: skip
    memory.setup("fit")
    streamed = StreamingImageDataModule(input_dir=out, batch_size=4)
    streamed.setup("fit")
    assert streamed.image_shape == (3, 16, 16) and streamed.num_classes == 3
    assert streamed.class_names == ["c0", "c1", "c2"]
    for mine, theirs in ((streamed.train_set, memory.train_set), (streamed.val_set, memory.val_set)):
        assert torch.equal(floats(mine), floats(theirs))
        assert torch.equal(labels_of(mine), labels_of(theirs))
        assert torch.equal(torch.stack([mine[i][0] for i in range(len(mine))]), theirs.images)  # stored as uint8
    assert torch.equal(streamed.class_counts(), memory.class_counts())

    stamp = (out / streaming.METADATA_FILE).stat().st_mtime_ns
    main(prepare_args(small, out))
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"lit-gans: {out} already holds these 23 training images and 6 held out (3x16x16); nothing to do"
    )
    assert (out / streaming.METADATA_FILE).stat().st_mtime_ns == stamp


def test_prepare_refuses_an_output_dir_that_holds_something_else(small, tmp_path, capsys):
    def error(out: Path, *extra: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(prepare_args(small, out, *extra))
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    other = tmp_path / "other"
    other.mkdir()
    (other / "photo.jpg").write_bytes(b"mine")
    assert error(other) == (
        f"lit-gans: error: output_dir={other} is not empty and holds no prepared dataset (no lit_gans_dataset.json): "
        "give an empty or new folder"
    )
    assert (other / "photo.jpg").read_bytes() == b"mine" and len(list(other.iterdir())) == 1

    out = tmp_path / "prepared"
    main(prepare_args(small, out))
    capsys.readouterr()
    assert error(out, "--data.image_size=8").startswith(
        f"lit-gans: error: output_dir={out} holds images prepared from other data (lit_gans.datamodules.image_folder."
        "ImageFolderDataModule of "
    )
    assert error(tmp_path / "nowhere", "--chunk_size=3").startswith("lit-gans: error: prepare: ")
    assert error("ftp://host/data") == (  # type: ignore[arg-type]
        "lit-gans: error: ftp://host/data/lit_gans_dataset.json: LitData stores datasets in local folders and s3://, "
        "gs:// and r2:// URLs"
    )
    with pytest.raises(SystemExit):
        main(["prepare", "--data", "lit_gans.datamodules.MNISTDataModule", f"--output_dir={tmp_path / 'mnist'}"])
    assert "MNISTDataModule is not a folder datamodule" in capsys.readouterr().err


def ctrl_c_in_a_terminal(script: str, started: Path, cwd: Path) -> tuple[int, str, str]:
    """Run ``script`` as a command in a session of its own and, once ``started`` exists, send its process group
    SIGINT, as a terminal's Ctrl-C does; its exit status, stdout and stderr. Also checks that no process of the
    group is left behind."""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), proc.communicate(timeout=10)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        time.sleep(0.5)
        with pytest.raises(ProcessLookupError):  # no worker left behind in the command's process group
            os.killpg(proc.pid, 0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, stdout, stderr


def test_ctrl_c_means_what_it_meant_before_once_prepare_is_done(small, tmp_path):
    """LitData's optimize installs a Ctrl-C handler that ends the process with exit status 0 and leaves it
    installed: afterwards, a fit's Ctrl-C would end the program unsaved, and no KeyboardInterrupt is raised."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    prepare_streaming(ImageFolderDataModule(small, image_size=16, labels=True, preprocess_workers=0), tmp_path / "out")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_prepare_writes_chunks_exits_130_and_leaves_nothing(small, tmp_path):
    """Ctrl-C in a terminal signals the command and LitData's writer process. Before: exit status 0 (a script's
    ``lit-gans prepare ... && lit-gans fit ...`` went on) and the staging and partial folders were left behind."""
    out, started = tmp_path / "prepared", tmp_path / "writing"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from lit_gans.cli import console_main
        from lit_gans.datamodules import streaming

        def slow_block(self, block):  # the writer process: say it started, then take long
            Path({str(started)!r}).touch()
            time.sleep(60)
            yield from ()

        streaming._StagedItems.__call__ = slow_block
        sys.argv = ["lit-gans", *{prepare_args(small, out)!r}]
        sys.exit(console_main())
    """)  # fmt: skip
    returncode, stdout, stderr = ctrl_c_in_a_terminal(script, started, tmp_path)
    assert returncode == 130, stdout + stderr
    assert stderr.strip().splitlines()[-1] == (
        f"lit-gans: interrupted: nothing was written to {out}; the same command starts again"
    ), stderr
    assert "Traceback" not in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "writing"]  # no output, staging or partial folder


def test_an_interrupted_prepare_leaves_nothing_taken_for_a_dataset(small, tmp_path, monkeypatch):
    out = tmp_path / "prepared"
    dm = ImageFolderDataModule(small, image_size=16, labels=True, val_split=0.2, preprocess_workers=0)
    write_chunks = streaming._write_chunks

    def killed_after_the_training_chunks(staged, order, output_dir, chunk_bytes):
        write_chunks(staged, order, output_dir, chunk_bytes)
        raise KeyboardInterrupt  # a kill between the training and the validation chunks

    monkeypatch.setattr(streaming, "_write_chunks", killed_after_the_training_chunks)
    with pytest.raises(KeyboardInterrupt):
        prepare_streaming(dm, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging or partial folder left
    with pytest.raises(FileNotFoundError, match="holds no prepared dataset"):
        StreamingImageDataModule(input_dir=out)
    monkeypatch.setattr(streaming, "_write_chunks", write_chunks)
    assert prepare_streaming(dm, out).wrote
    assert StreamingImageDataModule(input_dir=out).metadata["train_images"] == 23


# ---------------------------------------------------------------------------------------------------- training
def test_two_ranks_stream_disjoint_shards_and_resume_mid_epoch(large, tmp_path):
    """Run 1 stops after batch 7 of epoch 0 (a checkpoint, as a preemption leaves); run 2 resumes from it and
    trains the rest of epoch 0 and all of epoch 1. In each epoch each rank saw every image of its shard once, the
    shards are disjoint, and together they are the whole dataset."""
    seen, checkpoint = tmp_path / "seen", tmp_path / "interrupted.ckpt"
    seen.mkdir()

    def fit(max_epochs, callbacks, ckpt_path=None):
        model = DCGAN(image_shape=(3, 16, 16), latent_dim=8, generator_width=4, discriminator_width=4,
                      max_generator_steps=10_000)  # fmt: skip
        trainer = Trainer(**tiny_trainer_kwargs(
            max_epochs=max_epochs, devices=2, strategy="ddp_spawn_find_unused_parameters_true", callbacks=callbacks
        ))  # fmt: skip
        trainer.fit(model, StreamingImageDataModule(input_dir=large, batch_size=50, seed=3), ckpt_path=ckpt_path)

    fit(1, [SeenImages(str(seen)), StopAt(str(checkpoint), epoch=0, batch=7)])
    first = read_seen(seen)
    assert [len(first[rank][0]) for rank in (0, 1)] == [8 * 50, 8 * 50]
    fit(2, [SeenImages(str(seen))], ckpt_path=str(checkpoint))
    both = read_seen(seen)
    for epoch in (0, 1):
        shards = [both[rank][epoch] for rank in (0, 1)]
        for shard in shards:
            assert len(shard) == COUNT // 2 and len(set(shard)) == COUNT // 2, "an image seen twice, or one skipped"
        assert not set(shards[0]) & set(shards[1]), "the ranks trained on the same images"
        assert set(shards[0]) | set(shards[1]) == set(range(COUNT))
    assert both[0][0][: 8 * 50] == first[0][0]  # run 2 appended: the interrupted part is run 1's
    assert both[0][0] != both[0][1]  # each epoch is shuffled anew


def test_memory_does_not_grow_with_the_images_streamed(large_64px):
    memory = MemoryAt(200, COUNT)
    model = DCGAN(image_shape=(3, 64, 64), latent_dim=8, generator_width=4, discriminator_width=4,
                  max_generator_steps=10_000)  # fmt: skip
    trainer = Trainer(**tiny_trainer_kwargs(max_epochs=1, callbacks=[memory]))
    trainer.fit(model, StreamingImageDataModule(input_dir=large_64px, batch_size=20))
    dataset_bytes = COUNT * 3 * 64 * 64
    grown = memory.memory[COUNT] - memory.memory[200]
    # holding what it streamed would add 22 MB (uint8) or 88 MB (float) between the two
    assert grown < dataset_bytes / 4, f"memory grew by {grown / 2**20:.1f} MiB from 200 to {COUNT} images streamed"


def test_batches_convert_on_the_device_and_flip_when_asked(large):
    dm = StreamingImageDataModule(input_dir=large, batch_size=8, shuffle=False, horizontal_flip=True)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 16, 16)  # a quarter of float's bytes
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    flipped, same_labels = dm.on_after_batch_transfer([images, labels], 0)
    expected = uint8_to_unit_range(images)
    assert torch.equal(same_labels, labels)
    for image, before in zip(flipped, expected):
        assert torch.equal(image, before) or torch.equal(image, before.flip(-1))
    assert not torch.equal(flipped, expected)
    dm.train_set = None
    dm.setup("fit")
    assert torch.equal(expected, dm.train_set.float_images(slice(0, 8)))  # the stored order, unshuffled


# ---------------------------------------------------------------------------------------------------- the fit CLI
def test_a_conditional_model_takes_the_classes_of_the_prepared_data(large):
    cli = GANCLI(
        GAN, ImageDataModule, **CLI_OPTIONS, run=False,
        args=["--model=lit_gans.DCGAN", "--model.init_args.conditioning=projection", "--model.init_args.latent_dim=8",
              "--data=lit_gans.datamodules.StreamingImageDataModule", f"--data.init_args.input_dir={large}",
              "--trainer.logger=false"],
    )  # fmt: skip
    assert cli.model.num_classes == 4 and cli.model.image_shape == (3, 16, 16)
    assert cli.datamodule.class_names == ["c0", "c1", "c2", "c3"]


# ---------------------------------------------------------------------------------------------------- metrics
def test_fid_reads_its_real_images_from_the_stream_keyed_on_their_source(small, tmp_path):
    out = tmp_path / "prepared"
    main(prepare_args(small, out))
    memory = ImageFolderDataModule(small, image_size=16, labels=True, val_split=0.2, preprocess_workers=0,
                                   cache_dir=tmp_path / "cache")  # fmt: skip
    memory.setup("fit")
    streamed = StreamingImageDataModule(input_dir=out, batch_size=4)
    streamed.setup("fit")
    fid = FIDCallback("mnist", num_real=10, num_fake=4, cache_dir=tmp_path / "fid")
    fid.setup(None, None, "fit")
    real = fid._real_images(SimpleNamespace(datamodule=streamed))
    assert torch.equal(real, memory.train_set.float_images(slice(0, 10)))  # the first num_real, as in memory
    assert len(set(image_ids(real))) == 10

    key = fid.cache_path(SimpleNamespace(datamodule=streamed))
    # the folder it was prepared from, flipped or not, has the same training images: the same statistics (before:
    # the stream's own key, so FID's statistics and the data classifier were computed again)
    assert fid.cache_path(SimpleNamespace(datamodule=memory)) == key
    flipped = ImageFolderDataModule(small, image_size=16, labels=True, val_split=0.2, horizontal_flip=True)
    assert fid.cache_path(SimpleNamespace(datamodule=flipped)) == key
    copy = tmp_path / "copy"  # the same images elsewhere (as in object storage): the same statistics
    shutil.copytree(out, copy)
    assert fid.cache_path(SimpleNamespace(datamodule=StreamingImageDataModule(input_dir=copy))) == key
    other = tmp_path / "other"
    main(prepare_args(small, other, "--data.val_split=0.1"))  # other training images
    assert fid.cache_path(SimpleNamespace(datamodule=StreamingImageDataModule(input_dir=other))) != key


# ---------------------------------------------------------------------------------------------------- other data
def test_prepare_takes_a_shipped_config_and_keeps_its_preprocessing(tmp_path, capsys):
    """A cat-face config's data, prepared from the config as fit reads it: the faces cropped by their landmarks as in
    memory, and a face whose annotation is missing reported as skipped."""
    raw = tmp_path / "cats"
    for i in range(4):
        write_cat_face(raw / "CAT_00", f"00000001_00{i}.jpg", angle_deg=10 * i)
    (raw / "CAT_00" / "00000001_003.jpg.cat").unlink()
    out = tmp_path / "prepared"
    config = Path(__file__).resolve().parents[2] / "configs" / "dcgan_cats64.yaml"
    main(["prepare", "--config", str(config), f"--data.init_args.data_dir={raw}", "--data.init_args.image_size=32",
          "--data.init_args.min_size=32", "--data.init_args.preprocess_workers=0", f"--output_dir={out}"])  # fmt: skip
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"lit-gans: prepared 3 training images (3x32x32) in {out}: 3 images used, 1 skipped (missing_annotation: 1)"
    )
    memory = CatFacesDataModule(raw, image_size=32, min_size=32, preprocess_workers=0, cache_dir=tmp_path / "cache")
    memory.setup("fit")
    streamed = StreamingImageDataModule(input_dir=out)
    streamed.setup("fit")
    assert streamed.num_classes is None and streamed.class_names is None
    assert torch.equal(floats(streamed.train_set), floats(memory.train_set))


def test_prepare_help_shows_its_options_and_the_data_not_the_trainers(capsys):
    """Before: 605 lines, 500 of them the trainer's, model's and callbacks' options, which prepare ignores."""
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--help"])
    shown = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in ("--config", "--output_dir", "--chunk_bytes", "--staging_dir", "--data "):
        assert option in shown, option
    for option in ("--trainer", "--model", "--fid", "--seed_everything", "--last_checkpoint"):
        assert option not in shown, option
    assert len(shown.splitlines()) < 60


def test_the_prepare_command_says_what_it_did_once_without_litdatas_lines(small, tmp_path):
    """Before: the result line twice (the library's log line and the command's), after LitData's: an account
    advert, the hidden partial folder's path and each worker's state."""
    out = tmp_path / "prepared"
    done = subprocess.run([sys.executable, "-m", "lit_gans", *prepare_args(small, out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in (done.stdout + done.stderr).replace("\r", "\n").splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("ImageFolderDataModule 0-30 of 30:")]  # the progress bar
    assert said == [
        f"lit-gans: prepared 23 training images and 6 held out (3x16x16) in {out}: 29 images used, 1 skipped "
        "(not_an_image: 1)"
    ], lines
    assert done.stdout.strip() == said[0]  # the command's answer, on stdout


def test_ctrl_c_while_prepare_decodes_on_worker_processes_exits_130_and_leaves_no_process(small, tmp_path):
    """Ctrl-C in a terminal also signals the decoding pool's processes. Before: a traceback from the pool's
    thread, the preemption message of a fit from each worker, and at times a hang with the workers orphaned."""
    out, started = tmp_path / "prepared", tmp_path / "decoding"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from lit_gans.cli import console_main
        from lit_gans.datamodules import preprocessing

        decode = preprocessing._apply

        def slow(job):  # a worker process: say it started, then take long
            Path({str(started)!r}).touch()
            time.sleep(0.1)
            return decode(job)

        preprocessing._apply = slow
        args = [a for a in {prepare_args(small, out)!r} if not a.startswith("--data.preprocess_workers")]
        sys.argv = ["lit-gans", *args, "--data.preprocess_workers=2"]
        sys.exit(console_main())
    """)  # fmt: skip
    returncode, stdout, stderr = ctrl_c_in_a_terminal(script, started, tmp_path)
    assert returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "SIGTERM" not in stderr and "Exception" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"lit-gans: interrupted: nothing was written to {out}; the same command starts again"
    ), stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoding", "raw"]


def test_a_streaming_fit_does_not_warn_that_its_length_may_count_items_twice(small, tmp_path):
    """Lightning's warning about an IterableDataset with a length (before: in every streaming fit) does not apply:
    each rank and loader worker reads its own part (test_two_ranks_stream_disjoint_shards_and_resume_mid_epoch)."""
    out = tmp_path / "prepared"
    prepare_streaming(ImageFolderDataModule(small, image_size=16, labels=True, preprocess_workers=0), out)
    model = DCGAN(image_shape=(3, 16, 16), latent_dim=8, generator_width=4, discriminator_width=4, max_generator_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(**tiny_trainer_kwargs()).fit(model, StreamingImageDataModule(input_dir=out, batch_size=4))
    assert model.generator_step == 2
    assert not [w for w in caught if "IterableDataset" in str(w.message)], [str(w.message) for w in caught]

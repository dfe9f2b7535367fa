"""Data at scale: what the in-memory datamodule (uint8 images, the preprocessing cache shared through the page cache)
and the streaming one (LitData chunks, :class:`~lit_gans.datamodules.StreamingImageDataModule`) cost.

1. The data path alone, at 5,000 and 50,000 images of 128 px (RGB JPEGs generated on the fly into a temporary
   folder, in 10 class folders), on 1 and 2 processes (CPU DDP, gloo): images per second through the training
   loader and ``on_after_batch_transfer`` (the model does nothing with them), and per rank the peak resident memory
   (``VmHWM``) and the proportional set size at the end (PSS, ``/proc/self/smaps_rollup``: shared pages
   divided among the processes that share them). Each setting runs in a fresh process.
2. Steps per second of a small DCGAN at 64 px (5,000 images) trained from each (1 process): what streaming costs
   a training run (the issue asks for at most 10%).

    python benchmarks/data_scale.py                              # the full run (about 2.5 GB of images at 50k)
    python benchmarks/data_scale.py --images 200 --batches 5     # a quick check that everything runs

The preparation (decoding the JPEGs, the cache, the chunks) is not timed. Run on a quiet machine. Writes
benchmarks/results/data_scale.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_utils import machine, markdown_table, package_run, peak_rss_mb, save_results
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image

from lit_gans import DCGAN
from lit_gans.datamodules import ImageFolderDataModule, StreamingImageDataModule, prepare_streaming

MODES = ("in-memory", "streaming")


def write_images(folder: Path, count: int, size: int, classes: int = 10, seed: int = 0) -> Path:
    """``count`` smooth random RGB images of ``size`` px (low-frequency noise, as JPEG at quality 90, so that files
    and decoding cost about what photos do), in ``classes`` class folders."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        target = folder / f"class{i % classes}" / f"{i:06d}.jpg"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BICUBIC).save(target, quality=90)
    return folder


def datamodule(mode: str, root: Path, size: int, batch_size: int, **kwargs: Any):
    """The in-memory folder datamodule of ``root/images``, or the streaming one of ``root/prepared``."""
    if mode == "in-memory":
        return ImageFolderDataModule(root / "images", image_size=size, labels=True, cache_dir=root / "cache",
                                     batch_size=batch_size, **kwargs)  # fmt: skip
    return StreamingImageDataModule(input_dir=root / "prepared", batch_size=batch_size, **kwargs)


def prepare(root: Path, count: int, size: int) -> None:
    """Generate the images, the in-memory module's cache and the streaming chunks (each once)."""
    write_images(root / "images", count, size)
    folder = datamodule("in-memory", root, size, batch_size=1)
    folder.prepare_data()
    prepare_streaming(folder, root / "prepared")


def pss_mb() -> float:
    """This process' proportional set size (MB)."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ReadOnly(LightningModule):
    """Takes batches and does nothing with them: the data path alone (one parameter, which DDP needs)."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        assert batch[0].dtype == torch.float32  # converted, as a model receives it

    def configure_optimizers(self) -> None:
        return None


class Meter(Callback):
    """Per rank: times batches ``warmup`` .. the end and writes ``rank<r>.json`` with images, seconds, peak RSS
    and PSS."""

    def __init__(self, folder: str, warmup: int) -> None:
        self.folder, self.warmup, self.batches, self.images, self.start = folder, warmup, 0, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.batches == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        if self.start is not None:
            self.images += len(batch[0])

    def on_train_end(self, trainer, pl_module) -> None:
        result = {
            "images": self.images,
            "seconds": time.perf_counter() - self.start if self.start is not None else float("nan"),
            "peak_rss_mb": peak_rss_mb(),
            "pss_mb": pss_mb(),
        }
        Path(self.folder, f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


def measure_data_path(setting: dict[str, Any]) -> None:
    """One setting, in this (fresh) process: ``rank<r>.json`` in ``setting["out"]``."""
    dm = datamodule(setting["mode"], Path(setting["root"]), setting["size"], setting["batch_size"])
    processes = setting["processes"]
    trainer = Trainer(
        accelerator="cpu", devices=processes, strategy="ddp_spawn" if processes > 1 else "auto", max_epochs=1,
        limit_train_batches=setting["warmup"] + setting["batches"], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[Meter(setting["out"], setting["warmup"])],
    )  # fmt: skip
    trainer.fit(ReadOnly(), dm)


def data_path_row(root: Path, mode: str, count: int, size: int, processes: int, args: argparse.Namespace) -> dict:
    """Runs one setting in a fresh process; images/s over all ranks, memory per rank (the largest rank's)."""
    with tempfile.TemporaryDirectory() as out:
        setting = dict(mode=mode, root=str(root), size=size, batch_size=args.batch_size, processes=processes,
                       warmup=args.warmup, batches=args.batches, out=out)  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, __file__, "--measure", json.dumps(setting)], check=True, env=env)
        ranks = [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]
    seconds = max(r["seconds"] for r in ranks)
    return {
        "mode": mode,
        "images": count,
        "size": size,
        "processes": processes,
        "images_per_s": sum(r["images"] for r in ranks) / seconds,
        "peak_rss_mb_per_rank": max(r["peak_rss_mb"] for r in ranks),
        "pss_mb_per_rank": max(r["pss_mb"] for r in ranks),
        "dataset_uint8_mb": count * 3 * size * size / 2**20,
    }


def dcgan_rows(root: Path, count: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Steps per second of the same small DCGAN at 64 px trained from each datamodule (1 process), in alternating
    rounds (in-memory, streaming, in-memory, ...) so that a slow spell of the machine hits both; the best round of
    each counts."""
    rounds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.dcgan_rounds):
        for mode in MODES:
            model = DCGAN(image_shape=(3, 64, 64), generator_width=args.dcgan_width,
                          discriminator_width=args.dcgan_width, max_generator_steps=10**9)  # fmt: skip
            dm = datamodule(mode, root, 64, args.batch_size)
            images_per_s = package_run(model, dm, args.batch_size, args.dcgan_steps, args.warmup)
            rounds[mode].append(images_per_s / args.batch_size)
            print(mode, f"{rounds[mode][-1]:.3f} steps/s", flush=True)
    rows = [{"mode": mode, "images": count, "steps_per_s": max(r), "rounds": r} for mode, r in rounds.items()]
    rows[1]["cost_vs_in_memory"] = 1 - rows[1]["steps_per_s"] / rows[0]["steps_per_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000], help="dataset sizes (images)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--batches", type=int, default=200, help="timed batches per rank (the data path)")
    parser.add_argument("--dcgan-images", type=int, default=5000)
    parser.add_argument("--dcgan-width", type=int, default=32)
    parser.add_argument("--dcgan-steps", type=int, default=100, help="timed D steps of the DCGAN per round")
    parser.add_argument("--dcgan-rounds", type=int, default=3, help="alternating rounds of the two datamodules")
    parser.add_argument("--images", type=int, default=None, help="one small size for everything (a quick check)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the generated data here, for a rerun (default: a temporary folder)")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # one setting, in a fresh process
    args = parser.parse_args()
    if args.measure is not None:
        return measure_data_path(json.loads(args.measure))
    if args.images is not None:
        args.sizes, args.dcgan_images = [args.images], args.images
        args.dcgan_steps = min(args.dcgan_steps, max(1, args.images // args.batch_size - args.warmup))

    with ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        rows = []
        for count in args.sizes:
            root = work / f"data-{count}-{args.image_size}"
            prepare(root, count, args.image_size)
            for processes in args.processes:
                for mode in MODES:
                    rows.append(data_path_row(root, mode, count, args.image_size, processes, args))
                    print(rows[-1], flush=True)
        dcgan_root = work / f"data-{args.dcgan_images}-64"
        prepare(dcgan_root, args.dcgan_images, 64)
        dcgan = dcgan_rows(dcgan_root, args.dcgan_images, args)

    columns = ["mode", "images", "size", "processes", "images_per_s", "peak_rss_mb_per_rank", "pss_mb_per_rank",
               "dataset_uint8_mb"]  # fmt: skip
    cost = dcgan[1]["cost_vs_in_memory"]
    table = "\n\n".join([
        f"Data path alone (batch {args.batch_size}, {args.batches} timed batches per rank), {args.image_size} px:",
        markdown_table(rows, columns),
        f"Small DCGAN (width {args.dcgan_width}) at 64 px, {args.dcgan_images} images, 1 process, batch "
        f"{args.batch_size}: streaming costs {100 * cost:.1f}% of the steps per second",
        markdown_table(dcgan, ["mode", "images", "steps_per_s", "cost_vs_in_memory"]),
    ])  # fmt: skip
    print(table)
    path = save_results("data_scale", {"machine": machine(), "args": vars(args) | {"workdir": str(args.workdir)},
                                       "data_path": rows, "dcgan": dcgan}, table)  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""DCGAN at 64x64 (the cat-face setting of the references, README Sources 1) on whatever accelerator is here: real
images per second in fp32, bf16 autocast and bf16 + torch.compile, through ``Trainer.fit`` and through the plain
loop over the very same networks. The prepared script for a GPU machine; it runs on a CPU too (slowly: use few steps).

    python benchmarks/dcgan64.py                                   # cuda if present, else cpu
    python benchmarks/dcgan64.py --accelerator cpu --d-steps 3 --warmup 1 --batch-size 8 --repeats 1

The images are random tensors of the cats' shape (3, 64, 64): throughput does not depend on their content, and the
machine may hold no dataset. Peak memory is the GPU's allocated peak on cuda, the process's peak RSS on cpu.
Writes benchmarks/results/dcgan64_<accelerator>.{md,json}. Run by hand.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
from bench_utils import machine, markdown_table, package_run, peak_rss_mb, plain_loop, save_results
from lightning.pytorch import seed_everything

from lit_gans import DCGAN
from lit_gans.datamodules import ImageDataModule

SHAPE = (3, 64, 64)
#: (label, DCGAN options, Trainer precision)
SETTINGS = [
    ("fp32", {}, "32-true"),
    ("bf16", {"channels_last": True}, "bf16-mixed"),
    ("bf16 + compile", {"channels_last": True, "compile": True}, "bf16-mixed"),
]


class RandomCats(ImageDataModule):
    """``n`` random images of the cat datamodules' shape, in [-1, 1]."""

    image_shape = SHAPE

    def __init__(self, n: int, batch_size: int) -> None:
        super().__init__(batch_size=batch_size)
        self.n = n

    def setup(self, stage: Any = None) -> None:
        if self.train_set is None:
            images = torch.rand(self.n, *SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
            self._set_tensors(images, torch.zeros(self.n, dtype=torch.long))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--d-steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20, help="untimed D steps first (compilation happens here)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    dm = RandomCats(n=max(4 * args.batch_size, 512), batch_size=args.batch_size)
    dm.setup()
    images = dm.train_set.tensors[0]
    rows = []
    for label, options, precision in SETTINGS:
        plain, package = [], []
        if args.accelerator == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for repeat in range(args.repeats):
            seed_everything(repeat, verbose=False)
            model = DCGAN(image_shape=SHAPE, **options)
            bf16 = precision.startswith("bf16")
            plain.append(plain_loop(model, images, args.batch_size, args.d_steps, args.warmup, bf16, args.accelerator))
            package.append(package_run(DCGAN(image_shape=SHAPE, **options), dm, args.batch_size, args.d_steps,
                                       args.warmup, precision, accelerator=args.accelerator))
            print(f"{label} repeat {repeat}: plain {plain[-1]:.0f}, package {package[-1]:.0f} img/s", flush=True)
        rows.append({"setting": label, "plain img/s": statistics.median(plain), "package img/s": statistics.median(package),
                     "package / plain (median)": statistics.median(p / q for p, q in zip(package, plain)),
                     "peak memory MB": (torch.cuda.max_memory_allocated() / 2**20 if args.accelerator == "cuda"
                                        else peak_rss_mb())})
    base = rows[0]["package img/s"]
    for row in rows:
        row["x package fp32"] = row["package img/s"] / base
    device = torch.cuda.get_device_name() if args.accelerator == "cuda" else "cpu"
    text = "\n".join([
        f"## DCGAN 64x64 throughput on {device} (batch {args.batch_size}, real images per second)", "",
        markdown_table(rows, ["setting", "plain img/s", "package img/s", "package / plain (median)", "x package fp32",
                             "peak memory MB"]),
        "", f"Machine: {machine()}", "",
        f"Command: `python benchmarks/dcgan64.py --accelerator {args.accelerator} --batch-size {args.batch_size} "
        f"--d-steps {args.d_steps} --repeats {args.repeats}`",
    ])
    print(text)
    print("written", save_results(f"dcgan64_{args.accelerator}", {"machine": machine(), "device": device,
                                                                  "args": vars(args), "rows": rows}, text))


if __name__ == "__main__":
    main()

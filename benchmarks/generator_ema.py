"""What the weight-averaged generator buys: FID (the package's MNIST extractor) of the raw generator and of its
exponential moving average at several generator steps, one training run per decay (the average does not change
training, so the raw columns repeat).

    python benchmarks/generator_ema.py                          # DCGAN, decays 0.999 (start 500) and 0.99 (start 250)
    python benchmarks/generator_ema.py --model lsgan --decays 0.99 --starts 100 --steps 250 500 1000

Writes benchmarks/results/generator_ema.{md,json}. Run by hand.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench_utils import REPO, VARIANTS, machine, markdown_table, mnist_data_dir, save_results
from lightning.pytorch import Callback, Trainer, seed_everything

from lit_gans.callbacks import FIDCallback
from lit_gans.datamodules import MNISTDataModule
from lit_gans.networks.layers import has_batchnorm


class RawAndAveragedFID(Callback):
    """At each of ``steps`` generator steps: FID of the raw generator and of the average, on the same latents."""

    def __init__(self, steps: list[int], num_fake: int, cache_dir: str) -> None:
        self.steps = sorted(steps)
        self.fid = FIDCallback("mnist", num_real=10_000, num_fake=num_fake, cache_dir=cache_dir)
        self.rows: list[dict[str, Any]] = []

    def setup(self, trainer, pl_module, stage) -> None:
        self.fid.setup(trainer, pl_module, stage)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.steps or pl_module.generator_step < self.steps[0]:
            return
        averaged = float(self.fid.evaluate(trainer, pl_module)["fid"])  # sample() uses the average
        copied = self.with_copied_statistics(trainer, pl_module)
        ema, pl_module.generator_ema = pl_module.generator_ema, None
        try:
            raw = float(self.fid.evaluate(trainer, pl_module)["fid"])
        finally:
            pl_module.generator_ema = ema
        self.rows.append({"generator steps": self.steps.pop(0), "fid raw G": raw, "fid averaged G": averaged,
                          "ratio": averaged / raw, "fid averaged G, copied BN statistics": copied})
        print(self.rows[-1], flush=True)
        trainer.should_stop = not self.steps


    def with_copied_statistics(self, trainer, pl_module) -> float:
        """FID of the average with the raw generator's BatchNorm statistics, as StyleGAN and StudioGAN keep them,
        instead of the package's re-estimated ones (``nan`` without BatchNorm)."""
        net = pl_module.generator_ema.module
        if not has_batchnorm(net):
            return float("nan")
        estimated = [b.clone() for b in net.buffers()]
        for mine, raw in zip(net.buffers(), pl_module.generator.buffers()):
            mine.copy_(raw)
        pl_module._ema_statistics_stale = False  # use them as they are
        try:
            return float(self.fid.evaluate(trainer, pl_module)["fid"])
        finally:
            for mine, value in zip(net.buffers(), estimated):
                mine.copy_(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--model", default="dcgan", choices=list(VARIANTS))
    parser.add_argument("--decays", nargs="+", type=float, default=[0.999, 0.99])
    parser.add_argument("--starts", nargs="+", type=int, default=[500, 250], help="generator_ema_start per decay")
    parser.add_argument("--steps", nargs="+", type=int, default=[500, 1000, 2000, 3000])
    parser.add_argument("--num-fake", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    if len(args.starts) != len(args.decays):
        parser.error("--starts needs one value per decay")
    data_dir, cache = mnist_data_dir(args.shared, Path(tempfile.mkdtemp())), tempfile.mkdtemp()
    rows = []
    for decay, start in zip(args.decays, args.starts):
        seed_everything(0, verbose=False)
        model = VARIANTS[args.model](generator_ema_decay=decay, generator_ema_start=start)
        evaluator = RawAndAveragedFID(args.steps, args.num_fake, cache)
        Trainer(max_epochs=-1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, callbacks=[evaluator]).fit(
            model, MNISTDataModule(data_dir, download=False, batch_size=args.batch_size))
        rows += [{"decay": decay, "start": start, **row} for row in evaluator.rows]
    table = markdown_table(rows, ["decay", "start", "generator steps", "fid raw G", "fid averaged G", "ratio",
                                  "fid averaged G, copied BN statistics"])
    text = "\n".join([
        f"## Weight-averaged generator ({args.model}, MNIST, batch {args.batch_size}; FID with the package's MNIST "
        f"extractor, 10k real / {args.num_fake} fake, the same latents for both generators)",
        "", table, "", f"Machine: {machine()}", "",
        f"Command: `python benchmarks/generator_ema.py --model {args.model} --decays {' '.join(map(str, args.decays))} "
        f"--starts {' '.join(map(str, args.starts))} --steps {' '.join(map(str, args.steps))}`",
    ])
    print(text)
    save_results("generator_ema", {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, text)


if __name__ == "__main__":
    main()

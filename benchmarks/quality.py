"""Quality per minute: FID (with the package's MNIST feature extractor) and mode coverage against wall-clock
training time, for DCGAN, WGAN-GP and LSGAN, on the package's default path and its fast path.

    python benchmarks/quality.py                                   # 1, 2, 5, 10 minutes per run
    python benchmarks/quality.py --minutes 1 2 3 --models dcgan    # quicker
    python benchmarks/quality.py --models dcgan rasgan lsgan ralsgan --minutes 1 2 4 --name quality_relativistic
    python benchmarks/quality.py --models dcgan cgan_concat cgan_projection acgan dcgan_resnet --paths default \
        --name quality_conditional                                # conditional accuracy too (shipped classifier)

The clock counts training only (evaluations pause it). Writes benchmarks/results/<name>.{md,json} and
<name>.png (name: quality) (with matplotlib installed; `--replot` redraws it from the JSON). Run by hand.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_utils import (
    FAST_PRECISION,
    REPO,
    RESULTS,
    VARIANTS,
    fast_model,
    machine,
    markdown_table,
    mnist_data_dir,
    save_results,
)
from lightning.pytorch import Callback, Trainer, seed_everything

from lit_gans.callbacks import FIDCallback
from lit_gans.callbacks.diversity import class_histogram, mode_statistics
from lit_gans.callbacks.features import MNISTClassifier
from lit_gans.datamodules import MNISTDataModule

PATHS = {"default": "32-true", "fast": FAST_PRECISION}


class WallClockEval(Callback):
    """Evaluates FID and mode coverage when the training clock passes each checkpoint, then stops."""

    def __init__(self, minutes: list[float], num_fake: int, cache_dir: str) -> None:
        self.checkpoints = sorted(minutes)
        self.fid = FIDCallback("mnist", num_real=10_000, num_fake=num_fake, cache_dir=cache_dir)
        self.classifier = MNISTClassifier.pretrained()
        self.records: list[dict[str, Any]] = []
        self.paused = 0.0

    def setup(self, trainer, pl_module, stage) -> None:
        self.fid.setup(trainer, pl_module, stage)

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()
        labels = trainer.datamodule.train_set.tensors[1]
        self.real_counts = torch.bincount(labels, minlength=10).float()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        minutes = (time.perf_counter() - self.start - self.paused) / 60
        if not self.checkpoints or minutes < self.checkpoints[0]:
            return
        pause = time.perf_counter()
        fid = float(self.fid.evaluate(trainer, pl_module)["fid"])
        z = pl_module.sample_latent(2000, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            counts = class_histogram(self.classifier.logits(pl_module.sample(z=z)), 10)
        covered, kl = mode_statistics(counts, self.real_counts)
        self.records.append({"minutes": self.checkpoints.pop(0), "generator steps": pl_module.generator_step, "fid": fid,
                             "modes covered": int(covered), "kl classes": float(kl),
                             "conditional accuracy": self.conditional_accuracy(pl_module)})
        print(self.records[-1], flush=True)
        self.paused += time.perf_counter() - pause
        if not self.checkpoints:
            trainer.should_stop = True


    def conditional_accuracy(self, pl_module) -> Any:
        """The share of 2,000 fakes (200 per digit) the shipped classifier reads as the digit asked for."""
        if not getattr(pl_module, "num_classes", 0):
            return None
        labels = torch.arange(10).repeat_interleave(200)
        z = pl_module.sample_latent(len(labels), generator=torch.Generator().manual_seed(11))
        with torch.no_grad():
            predicted = self.classifier.logits(pl_module.sample(z=z, labels=labels)).argmax(1).cpu()
        return float((predicted == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--models", nargs="+", default=["dcgan", "wgan_gp", "lsgan"], choices=list(VARIANTS))
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--minutes", nargs="+", type=float, default=[1, 2, 5, 10])
    parser.add_argument("--num-fake", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--name", default="quality", help="results file name (results/<name>.md, .json, .png)")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from results/<name>.json")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads((RESULTS / f"{args.name}.json").read_text())["rows"], args.name)
        return

    data_dir = mnist_data_dir(args.shared, Path(tempfile.mkdtemp()))
    cache = tempfile.mkdtemp()
    rows = []
    for name in args.models:
        for path in args.paths:
            seed_everything(0, verbose=False)
            precision = PATHS[path]
            model = fast_model(name) if path == "fast" else VARIANTS[name]()
            clock = WallClockEval(list(args.minutes), args.num_fake, cache)
            Trainer(max_epochs=-1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, precision=precision,
                    callbacks=[clock]).fit(model, MNISTDataModule(data_dir, download=False, batch_size=args.batch_size))
            rows += [{"model": name, "path": path, **r} for r in clock.records]
    columns = ["model", "path", "minutes", "generator steps", "fid", "modes covered", "kl classes"]
    if any(r["conditional accuracy"] is not None for r in rows):
        columns.append("conditional accuracy")
    table = markdown_table(rows, columns)
    text = "\n".join([
        "## Quality per minute (MNIST, FID with the package's MNIST extractor, 10k real / %d fake)" % args.num_fake,
        "", table, "", f"Machine: {machine()}", "",
        f"Command: `python benchmarks/quality.py --models {' '.join(args.models)} --paths {' '.join(args.paths)} --minutes "
        + " ".join(f"{m:g}" for m in args.minutes) + f" --name {args.name}`",
    ])
    print(text)
    save_results(args.name, {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, text)
    plot(rows, args.name)


def plot(rows: list[dict[str, Any]], output: str = "quality") -> None:
    """FID against training minutes: one colour per model, solid for the default path, dashed for the fast one."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    models = list(dict.fromkeys(r["model"] for r in rows))
    for colour, name in enumerate(models):
        for path in PATHS:
            pts = [(r["minutes"], r["fid"]) for r in rows if r["model"] == name and r["path"] == path]
            if pts:
                ax.plot(*zip(*pts), marker="o", color=f"C{colour}", linestyle="-" if path == "default" else "--",
                        label=f"{name} ({path})")
    ax.set(xlabel="training minutes (2 CPU cores)", ylabel="FID (MNIST features)", yscale="log", title="Quality per minute")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{output}.png", dpi=120)
    print("written", RESULTS / f"{output}.png")


if __name__ == "__main__":
    main()

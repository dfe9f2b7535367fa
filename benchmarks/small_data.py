"""Small data: does augmentation or regularization help when the GAN has few images? At equal wall-clock, on real
MNIST subsets of 100, 500, 1,000 and 5,000 training digits (equal per class, from the 5,000 real training digits of
../shared/data/mnist), the DCGAN (channels-last, the reused fake batch; bf16 only on a CPU with native bf16; D
with BatchNorm unless ``--discriminator-norm none``):

* ``plain``; ``diffaugment``: DiffAugment ``color,translation,cutout``; ``ada``: ``AdaptiveAugment()`` at its
  defaults; ``ada_lecam``: ADA + ``LeCam(0.3)``; ``r3gan``: R3GAN's networks with RSGANLoss and R1 + R2
  (``configs/r3gan_mnist.yaml``'s gamma and optimizers, width 64).

Measured at each checkpoint of training time: FID with the package's MNIST extractor against 5,000 real test
digits the run never trained on, the classes covered by 2,000 samples (shipped classifier), ADA's p, and a
memorization figure: the share of 1,000 samples whose nearest training image (in the extractor's features) is
closer than their nearest held-out real image, the held-out set as large as the training set (0.5 means the
samples are as close to unseen digits as to the training digits; near 1, the generator reproduces its training set),
and whether D overfits: ``E[sign(D(x))]`` on the training digits and on as many held-out digits (ADA's ``r_t`` without
the augmentation; a gap means D tells the digits it trained on from unseen ones, the paper's Figure 1). ADA's p and
``r_t`` every 250 generator steps go to the JSON (``ada trace``).

    python benchmarks/small_data.py                                    # every size and variant, 1, 2, 4 minutes
    python benchmarks/small_data.py --sizes 500 --minutes 2 5 10       # one size, longer
    python benchmarks/small_data.py --sizes 5000 --steps 2000 4000     # equal generator steps, not equal time
    python benchmarks/small_data.py --sizes 100 --discriminator-norm none   # D without BatchNorm, as ADA's own
    python benchmarks/small_data.py --replot                           # redraw the PNG from the JSON

The clock counts training only (evaluations pause it). ``--steps`` measures at generator steps instead: what the
variants would give where the augmentation's cost is negligible beside the networks' (a GPU, larger networks).
Run on a quiet machine: other processes on the cores slow every step. Writes benchmarks/results/small_data.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from bench_utils import REPO, RESULTS, machine, markdown_table, save_results
from lightning.pytorch import Callback, Trainer, seed_everything
from torchmetrics.image.fid import FrechetInceptionDistance

from lit_gans import DCGAN, GAN
from lit_gans.augment import AdaptiveAugment, DiffAugment
from lit_gans.callbacks.diversity import class_histogram, mode_statistics
from lit_gans.callbacks.features import MNISTClassifier
from lit_gans.datamodules import ImageDataModule
from lit_gans.hardware import cpu_has_native_bf16
from lit_gans.objectives import RSGANLoss
from lit_gans.regularizers import R1, R2, LeCam

FAST = {"channels_last": True, "reuse_fake_for_generator": True}
# each takes the DCGAN's keyword arguments that --discriminator-norm sets (R3GAN's networks have no normalization)
VARIANTS: dict[str, Callable[..., GAN]] = {
    "plain": lambda **net: DCGAN(**FAST, **net),
    "diffaugment": lambda **net: DCGAN(augment=DiffAugment("color,translation,cutout"), **FAST, **net),
    "ada": lambda **net: DCGAN(augment=AdaptiveAugment(), **FAST, **net),
    "ada_lecam": lambda **net: DCGAN(augment=AdaptiveAugment(), regularizers=[LeCam(0.3)], **FAST, **net),
    "r3gan": lambda **net: DCGAN(
        architecture="r3gan", objective=RSGANLoss(), regularizers=[R1(0.4), R2(0.4)], latent_dim=64,
        generator_optimizer=lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.0, 0.9)),
        discriminator_optimizer=lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.0, 0.9)), **FAST,
    ),
}


def load_digits(shared: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 5,000 real training digits with their labels, and the 10,000 test digits, as floats in [-1, 1]."""
    import gzip

    train = np.load(shared / "mnist_train_5k.npz")
    test = np.frombuffer(gzip.open(shared / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)

    def to_unit(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).float().div(127.5).sub(1).unsqueeze(1)

    return to_unit(train["images"]), torch.from_numpy(train["labels"].astype(np.int64)), to_unit(test)


def equal_per_class(labels: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    per_class = size // 10
    picks = [torch.nonzero(labels == c).flatten() for c in range(10)]
    return torch.cat([p[torch.randperm(len(p), generator=g)[:per_class]] for p in picks])


class Digits(ImageDataModule):
    """A fixed set of digits held in memory (the package's seeded, resumable loader)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        super().__init__(batch_size=batch_size)
        self.images, self.labels, self.image_shape = images, labels, tuple(images.shape[1:])

    def setup(self, stage: Any = None) -> None:
        self._set_tensors(self.images, self.labels)


@torch.no_grad()
def discriminator_signs(model: GAN, train: torch.Tensor, held_out: torch.Tensor) -> tuple[float, float]:
    """``E[sign(D(x))]`` on the training and the held-out digits, D as it trains (BatchNorm on batches of 64) but
    without augmentation, and leaving no trace: BatchNorm's statistics and the augmentation's random numbers are
    as they were."""
    d = model.discriminator
    state, hooks = {k: v.clone() for k, v in d.state_dict().items()}, dict(d._forward_pre_hooks)
    d._forward_pre_hooks.clear()
    try:
        signs = [torch.cat([torch.sign(model.critic(b)[0].float()) for b in x.split(64)]).mean().item()
                 for x in (train, held_out)]  # fmt: skip
    finally:
        d._forward_pre_hooks.update(hooks)
        d.load_state_dict(state)
    return signs[0], signs[1]


class Evaluate(Callback):
    """At each checkpoint of training time (or of generator steps, ``by="steps"``): FID against held-out digits,
    classes covered, ADA's p, memorization, D's signs."""

    def __init__(
        self, checkpoints: list[float], train: torch.Tensor, held_out: torch.Tensor, test: torch.Tensor, by: str = "minutes"
    ) -> None:
        self.checkpoints, self.by, self.records, self.paused = sorted(checkpoints), by, [], 0.0
        self.ada_trace: list[tuple[int, float, float]] = []  # (generator step, p, r_t) every 250 steps
        self.train, self.held_out = train, held_out
        self.classifier = MNISTClassifier.pretrained().eval()
        with torch.no_grad():
            self.train_features = self.features(train)
            self.held_out_features = self.features(held_out)
        self.fid = FrechetInceptionDistance(feature=self.classifier, reset_real_features=False, normalize=True)
        for chunk in test.split(500):
            self.fid.update(chunk, real=True)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.classifier(chunk) for chunk in images.split(500)])

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        augment = getattr(pl_module, "augment", None)
        if isinstance(augment, AdaptiveAugment) and pl_module.generator_step % 250 == 0:
            self.ada_trace.append((pl_module.generator_step, round(float(augment.p), 4), round(float(augment.rt), 3)))
        minutes = (time.perf_counter() - self.start - self.paused) / 60
        if not self.checkpoints or (minutes if self.by == "minutes" else pl_module.generator_step) < self.checkpoints[0]:
            return
        checkpoint = self.checkpoints.pop(0)
        pause = time.perf_counter()
        fakes = pl_module.sample(z=pl_module.sample_latent(2000, generator=torch.Generator().manual_seed(7))).cpu()
        self.fid.reset()
        for chunk in fakes.split(500):
            self.fid.update(chunk, real=False)
        with torch.no_grad():
            covered, _ = mode_statistics(class_histogram(self.classifier.logits(fakes), 10), torch.full((10,), 0.1))
            sample = self.features(fakes[:1000])
        nearest_train = torch.cdist(sample, self.train_features).min(1).values
        nearest_held_out = torch.cdist(sample, self.held_out_features).min(1).values
        sign_train, sign_held_out = discriminator_signs(pl_module, self.train, self.held_out)
        self.records.append({
            "minutes": checkpoint if self.by == "minutes" else round(minutes, 2), "generator steps": pl_module.generator_step,
            "fid": float(self.fid.compute()), "classes covered": int(covered),
            "ada p": float(augment.p) if isinstance(augment, AdaptiveAugment) else None,
            "memorization": float((nearest_train < nearest_held_out).float().mean()),
            "D sign train": sign_train, "D sign held-out": sign_held_out,
            **({"ada trace (step, p, r_t)": self.ada_trace} if self.ada_trace else {}),
        })  # fmt: skip
        self.ada_trace = []
        print(self.records[-1], flush=True)
        self.paused += time.perf_counter() - pause
        if not self.checkpoints:
            trainer.should_stop = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 500, 1000, 5000])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--minutes", nargs="+", type=float, default=[1, 2, 4], help="measure at these training minutes")
    when.add_argument("--steps", nargs="+", type=int, help="measure at these generator steps instead")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="the training seed (the digits drawn stay the same)")
    parser.add_argument("--discriminator-norm", choices=["batch", "none"], default="batch",
                        help="D's normalization in every DCGAN variant (none: no batch statistics, as ADA's own D)")
    parser.add_argument("--name", default="small_data")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from results/<name>.json")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads((RESULTS / f"{args.name}.json").read_text())
        plot(saved["rows"], args.name, "generator steps" if saved["args"].get("steps", "None") != "None" else "minutes")
        return
    images, labels, test = load_digits(args.shared)
    precision = "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    rows, by = [], "steps" if args.steps else "minutes"
    for size in args.sizes:
        train = equal_per_class(labels, size)
        held_out = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(1))[:size]]
        for name in args.variants:
            seed_everything(args.seed, verbose=False)
            clock = Evaluate(list(args.steps or args.minutes), images[train], held_out, test[5000:], by)
            net = {"discriminator_norm": args.discriminator_norm} if name != "r3gan" else {}
            Trainer(max_epochs=-1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, precision=precision,
                    callbacks=[clock]).fit(VARIANTS[name](**net), Digits(images[train], labels[train], min(args.batch_size, size)))  # fmt: skip
            rows += [{"digits": size, "variant": name, **r} for r in clock.records]
    table = markdown_table(rows, ["digits", "variant", "minutes", "generator steps", "fid", "classes covered", "ada p",
                                  "memorization", "D sign train", "D sign held-out"])  # fmt: skip
    text = "\n".join([
        "## Small data (MNIST subsets, FID with the package's MNIST extractor vs 5,000 held-out test digits, 2,000 fakes)",
        "", table, "", f"Machine: {machine()}, precision {precision}", "",
        f"Command: `python benchmarks/small_data.py --sizes {' '.join(map(str, args.sizes))} --variants "
        f"{' '.join(args.variants)} " + (f"--steps {' '.join(map(str, args.steps))}" if args.steps else
                                           f"--minutes {' '.join(f'{m:g}' for m in args.minutes)}")
        + (f" --seed {args.seed}" if args.seed else "")
        + (f" --discriminator-norm {args.discriminator_norm}" if args.discriminator_norm != "batch" else "")
        + (f" --name {args.name}`" if args.name != "small_data" else "`"),
    ])  # fmt: skip
    print(text)
    save_results(args.name, {"machine": machine(), "precision": precision, "args": {k: str(v) for k, v in vars(args).items()},
                             "rows": rows}, text)  # fmt: skip
    plot(rows, args.name, "generator steps" if by == "steps" else "minutes")


def plot(rows: list[dict[str, Any]], output: str = "small_data", x: str = "minutes") -> None:
    """FID against training minutes (or ``x="generator steps"``), one panel per subset size, one colour per variant."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
        return
    sizes = sorted({r["digits"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3.5), squeeze=False)
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for ax, size in zip(axes[0], sizes):
        for colour, name in enumerate(variants):
            pts = [(r[x], r["fid"]) for r in rows if r["digits"] == size and r["variant"] == name]
            if pts:
                ax.plot(*zip(*pts), marker="o", color=f"C{colour}", label=name)
        ax.set(title=f"{size} digits", xlabel="training minutes" if x == "minutes" else x, ylabel="FID (MNIST features)", yscale="log")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{output}.png", dpi=120)
    print("written", RESULTS / f"{output}.png")


if __name__ == "__main__":
    main()

"""What Lightning itself costs, measured with models that do (almost) nothing: its loop per batch, and its
manual-optimization wrappers (``manual_backward`` + ``LightningOptimizer.step`` with their hooks) per optimizer
step. Together they are the floor under the package's overhead against a plain loop; it matters only for networks
whose step takes a few milliseconds (the MLP GAN).

    python benchmarks/lightning_cost.py

Writes benchmarks/results/lightning_cost.{md,json}. Run by hand.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_utils import REPO, machine, markdown_table, mnist_data_dir, package_run, save_results
from lightning.pytorch import LightningModule
from torch import nn

from lit_gans.datamodules import MNISTDataModule


class EmptyStep(LightningModule):
    """Manual optimization with nothing to do: what Lightning's loop itself costs per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx) -> None:
        pass

    def configure_optimizers(self):
        return None


class TinySteps(EmptyStep):
    """Two 2x2 layers, each updated once per batch through ``manual_backward`` and ``LightningOptimizer.step``, as the
    engine updates D and G."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])

    def training_step(self, batch, batch_idx) -> None:
        x = torch.ones(1, 2)
        for layer, opt in zip(self.layers, self.optimizers()):
            opt.zero_grad()
            self.manual_backward(layer(x).sum())
            opt.step()

    def configure_optimizers(self):
        return [torch.optim.SGD(layer.parameters(), lr=0.1) for layer in self.layers]


def raw_steps_us(steps: int) -> float:
    """Microseconds per iteration of :class:`TinySteps`' work without Lightning."""
    layers = [nn.Linear(2, 2), nn.Linear(2, 2)]
    opts = [torch.optim.SGD(layer.parameters(), lr=0.1) for layer in layers]
    x = torch.ones(1, 2)
    start = time.perf_counter()
    for _ in range(steps):
        for layer, opt in zip(layers, opts):
            opt.zero_grad()
            layer(x).sum().backward()
            opt.step()
    return 1e6 * (time.perf_counter() - start) / steps


def us_per_batch(model: LightningModule, dm, steps: int, warmup: int) -> float:
    return 1e6 * dm.batch_size / package_run(model, dm, dm.batch_size, steps, warmup)


def lightning_cost(dm, steps: int = 1000, warmup: int = 20, repeats: int = 3) -> dict[str, float]:
    """Median over ``repeats`` of Lightning's loop cost per batch and its wrapper cost per optimizer step (us)."""
    loop, wrappers = [], []
    for _ in range(repeats):
        empty = us_per_batch(EmptyStep(), dm, steps, warmup)
        tiny = us_per_batch(TinySteps(), dm, steps, warmup)
        loop.append(empty)
        wrappers.append((tiny - empty - raw_steps_us(steps)) / 2)
    return {"loop us per batch": statistics.median(loop), "wrappers us per optimizer step": statistics.median(wrappers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dm = MNISTDataModule(mnist_data_dir(args.shared, Path(tempfile.mkdtemp())), download=False, batch_size=args.batch_size)
    dm.setup()
    cost = lightning_cost(dm, args.steps, repeats=args.repeats)
    text = "\n".join([
        "## What Lightning itself costs (manual optimization, MNIST loader, batch %d)" % args.batch_size, "",
        markdown_table([cost], list(cost)), "",
        "A GAN iteration pays the loop once per D step and the wrappers once per optimizer step (D, and G every "
        "n_critic-th batch).", "", f"Machine: {machine()}", "",
        f"Command: `python benchmarks/lightning_cost.py --steps {args.steps} --repeats {args.repeats}`",
    ])
    print(text)
    print("written", save_results("lightning_cost", {"machine": machine(), "args": vars(args), **cost}, text))


if __name__ == "__main__":
    main()

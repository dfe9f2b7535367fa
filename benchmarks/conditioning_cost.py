"""What class conditioning costs per training step: the same DCGAN networks on MNIST, unconditional and with each
conditioning, timed through ``Trainer.fit`` in interleaved repeats (so drifts of the machine hit every variant
alike). The issue's bound: at most 10% more time per step than the unconditional network.

    python benchmarks/conditioning_cost.py                    # 5 repeats of 150 D steps, batch 64
    python benchmarks/conditioning_cost.py --width 64 --repeats 3

Prints a markdown table and writes benchmarks/results/conditioning_cost.{md,json}. Run by hand.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench_utils import REPO, machine, markdown_table, mnist_data_dir, package_run, save_results
from lightning.pytorch import seed_everything

from lit_gans import DCGAN
from lit_gans.datamodules import MNISTDataModule

CONDITIONINGS = [None, "concat", "projection", "auxiliary"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--width", type=int, default=64, help="generator_width and discriminator_width")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--d-steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--architecture", default="dcgan", choices=["dcgan", "resnet"])
    args = parser.parse_args()
    data_dir = mnist_data_dir(args.shared, Path(tempfile.mkdtemp()))
    rates: dict[str, list[float]] = {str(c): [] for c in CONDITIONINGS}
    for _ in range(args.repeats):
        for conditioning in CONDITIONINGS:
            seed_everything(0, verbose=False)
            labels = {"num_classes": 10, "conditioning": conditioning} if conditioning else {}
            model = DCGAN(generator_width=args.width, discriminator_width=args.width, architecture=args.architecture,
                          **labels)  # fmt: skip
            dm = MNISTDataModule(data_dir, download=False, batch_size=args.batch_size)
            rates[str(conditioning)].append(package_run(model, dm, args.batch_size, args.d_steps, args.warmup))
    base = statistics.median(rates["None"])
    rows = []
    for conditioning in CONDITIONINGS:
        median = statistics.median(rates[str(conditioning)])
        rows.append({"conditioning": conditioning or "none (unconditional)", "images/s (median)": median,
                     "time per step vs unconditional": f"{base / median:.3f}",
                     "min..max images/s": f"{min(rates[str(conditioning)]):.0f}..{max(rates[str(conditioning)]):.0f}"})
    table = markdown_table(rows, ["conditioning", "images/s (median)", "time per step vs unconditional", "min..max images/s"])
    text = "\n".join([
        f"## Cost of conditioning per step ({args.architecture} networks, width {args.width}, MNIST 28x28, batch "
        f"{args.batch_size}, {args.repeats} interleaved repeats of {args.d_steps} D steps)",
        "", table, "", f"Machine: {machine()}", "",
        f"Command: `python benchmarks/conditioning_cost.py --width {args.width} --repeats {args.repeats} --architecture "
        f"{args.architecture}`",
    ])
    print(text)
    save_results("conditioning_cost", {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                       "rows": rows, "rates": rates}, text)  # fmt: skip


if __name__ == "__main__":
    main()

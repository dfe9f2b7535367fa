"""Throughput of every variant through ``Trainer.fit`` against a plain PyTorch loop over the very same networks,
batch size, optimizers and k; the fast path; callback and data-loading overheads; memory.

    python benchmarks/throughput.py                       # all variants, 3 repeats
    python benchmarks/throughput.py --variants dcgan --repeats 5 --d-steps 100

Prints markdown tables and writes benchmarks/results/throughput.{md,json}. Run by hand (never a timed test).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_utils import (
    FAST_PATH,
    FAST_PRECISION,
    REPO,
    VARIANTS,
    current_rss_mb,
    fast_model,
    machine,
    markdown_table,
    mnist_data_dir,
    package_run,
    peak_rss_mb,
    plain_loop,
    save_results,
)
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.profilers import SimpleProfiler
from lightning_cost import lightning_cost

from lit_gans.callbacks import DiversityMonitor, FIDCallback, GradientNormMonitor, SampleGrid
from lit_gans.datamodules import MNISTDataModule
from lit_gans.datamodules.base import float_images


def ratio_stats(values: list[float], baseline: list[float], prefix: str) -> dict[str, float]:
    """Min, median and max over repeats of ``values / baseline`` (runs of the same repeat), and best against best
    (other processes only ever slow a run down, as ``timeit`` notes; one undisturbed run on one side skews it, so
    read it beside the median)."""
    ratios = [v / b for v, b in zip(values, baseline)]
    return {f"{prefix} min": min(ratios), f"{prefix} median": statistics.median(ratios), f"{prefix} max": max(ratios),
            f"{prefix} best/best": max(values) / max(baseline)}


def throughput(args, dm, images) -> list[dict[str, Any]]:
    rows = []
    for name in args.variants:
        plain, package, fast = [], [], []
        # time at least --min-seconds per measurement: a 3 ms step over 60 steps is too short a window to trust
        rate = plain_loop(VARIANTS[name](), images, args.batch_size, args.d_steps, args.warmup)
        steps = max(args.d_steps, math.ceil(args.min_seconds * rate / args.batch_size))
        for repeat in range(args.repeats):
            seed_everything(repeat, verbose=False)
            model = VARIANTS[name]()
            runs = [lambda: plain.append(plain_loop(model, images, args.batch_size, steps, args.warmup)),
                    lambda: package.append(package_run(copy.deepcopy(model), dm, args.batch_size, steps, args.warmup))]
            for run in runs if repeat % 2 == 0 else runs[::-1]:  # alternate the order: the machine's drift cancels
                run()
            if args.fast:
                fast.append(package_run(fast_model(name), dm, args.batch_size, steps, args.warmup, FAST_PRECISION))
            print(f"{name} repeat {repeat}: plain {plain[-1]:.0f}, package {package[-1]:.0f}" + (f", fast {fast[-1]:.0f}" if fast else "") + " img/s", flush=True)
        row = {"variant": name, "plain img/s": max(plain), "package img/s": max(package),
               **ratio_stats(package, plain, "package / plain")}
        if fast:
            row.update({"fast img/s": max(fast), **ratio_stats(fast, plain, "fast / plain")})
        rows.append(row)
    return rows


#: The fast-path options added one at a time on DCGAN: (label, model options, precision).
ABLATION = [
    ("fp32 (default path)", {}, "32-true"),
    ("+ bf16 autocast", {}, FAST_PRECISION),
    ("+ channels-last", {"channels_last": True}, FAST_PRECISION),
    ("+ reuse the fake batch for G (the fast path)", FAST_PATH, FAST_PRECISION),
    ("+ compile", {**FAST_PATH, "compile": True}, FAST_PRECISION),
]


def ablation(args, dm, images) -> list[dict[str, Any]]:
    """Each fast-path option's measured effect: DCGAN with the options added one at a time, against the plain fp32
    loop of the same repeat; and the joint discriminator forward on WGAN-GP (DCGAN's BatchNorm critic forbids it)."""
    plain: list[float] = []
    speeds: dict[str, list[float]] = {label: [] for label, _, _ in ABLATION}
    joint = {(path, flag): [] for path in ("fp32", "fast path") for flag in (False, True)}
    for repeat in range(args.repeats):
        seed_everything(repeat, verbose=False)
        plain.append(plain_loop(VARIANTS["dcgan"](), images, args.batch_size, args.d_steps, args.warmup))
        for label, options, precision in ABLATION:
            warmup = args.warmup + (args.compile_warmup if options.get("compile") else 0)
            speeds[label].append(package_run(VARIANTS["dcgan"](**options), dm, args.batch_size, args.d_steps, warmup, precision))
        for (path, flag), values in joint.items():
            options, precision = ({}, "32-true") if path == "fp32" else (FAST_PATH, FAST_PRECISION)
            model = VARIANTS["wgan_gp"](**{**options, "joint_discriminator_forward": flag})
            values.append(package_run(model, dm, args.batch_size, args.d_steps, args.warmup, precision))
        print(f"ablation repeat {repeat}: plain {plain[-1]:.0f}, " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in speeds.items())
              + " img/s; WGAN-GP " + ", ".join(f"{path} joint={flag} {v[-1]:.0f}" for (path, flag), v in joint.items()), flush=True)
    rows = [{"option": label, "img/s": max(speeds[label]), **ratio_stats(speeds[label], plain, "x plain fp32")}
            for label, _, _ in ABLATION]
    for path in ("fp32", "fast path"):
        rows.append({"option": f"joint D forward (WGAN-GP, {path})", "img/s": max(joint[path, True]),
                     **ratio_stats(joint[path, True], joint[path, False], "x two forwards")})
    return rows


def callback_overheads(args, dm) -> list[dict[str, Any]]:
    """Cost of one evaluation of each monitoring callback at its default settings, and its share of training time
    at its default cadence (evaluations per generator step x cost / time per generator step)."""
    seed_everything(0, verbose=False)
    model = VARIANTS["dcgan"]()
    step_time = args.batch_size / package_run(copy.deepcopy(model), dm, args.batch_size, args.d_steps, args.warmup)
    callbacks = [
        (FIDCallback("mnist", num_real=10_000, num_fake=5_000, cache_dir=tempfile.mkdtemp()), 1000),
        (DiversityMonitor(classifier="mnist"), 500),
        (SampleGrid(), 500),
    ]

    monitor = GradientNormMonitor(every_n_generator_steps=1)  # timed on every call; reported at its default 25

    class Probe(Callback):
        def __init__(self):
            self.costs = {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx != 1:
                return
            # both networks still hold the gradients of this batch's D and G steps
            start = time.perf_counter()
            for opt in pl_module.optimizers():
                monitor.on_before_optimizer_step(trainer, pl_module, opt.optimizer)
            self.costs["GradientNormMonitor"] = time.perf_counter() - start
            for cb, _ in callbacks:
                cb.setup(trainer, pl_module, "fit")
                cb.run(trainer, pl_module)  # first call includes one-off work (real statistics)
                start = time.perf_counter()
                cb.run(trainer, pl_module)
                self.costs[type(cb).__name__] = time.perf_counter() - start
            trainer.should_stop = True

    probe = Probe()
    Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            default_root_dir=tempfile.mkdtemp(),  # SampleGrid writes its PNGs there, not into the working tree
            enable_model_summary=False, callbacks=[probe]).fit(copy.deepcopy(model), dm)
    rows = []
    for cb, every in [*callbacks, (monitor, 25)]:
        name = type(cb).__name__
        share = probe.costs[name] / (every * step_time)
        rows.append({"callback": name, "every n generator steps": every, "seconds per evaluation": probe.costs[name],
                     "share of training time": share})
    rows.append({"callback": "all four", "share of training time": sum(r["share of training time"] for r in rows)})
    return rows


def data_and_memory(args, dm) -> dict[str, Any]:
    """Share of fit time spent fetching batches (Lightning's SimpleProfiler), and memory over a longer run."""
    seed_everything(0, verbose=False)
    profiler = SimpleProfiler(dirpath=tempfile.mkdtemp(), filename="profile")
    model = VARIANTS["dcgan"]()
    rss_before = current_rss_mb()
    package_run(model, dm, args.batch_size, args.memory_steps, args.warmup, profiler=profiler)
    durations = profiler.recorded_durations
    fetch = sum(sum(v) for k, v in durations.items() if "train_dataloader_next" in k)
    total = sum(sum(v) for k, v in durations.items() if k == "run_training_epoch") or sum(
        sum(v) for k, v in durations.items() if "run_training_batch" in k
    )
    rss_mid = current_rss_mb()
    package_run(VARIANTS["dcgan"](), dm, args.batch_size, args.memory_steps, args.warmup)
    rss_after = current_rss_mb()
    return {
        "data loading share": fetch / total if total else float("nan"),
        "rss before MB": rss_before,
        f"rss after {args.memory_steps} D steps MB": rss_mid,
        f"rss after 2 x {args.memory_steps} D steps MB": rss_after,
        "peak rss MB": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--d-steps", type=int, default=60, help="D steps timed per measurement (at least)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="more D steps for fast variants, to time this long")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile-warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-steps", type=int, default=300)
    parser.add_argument("--no-fast", dest="fast", action="store_false")
    parser.add_argument("--skip-overheads", action="store_true")
    args = parser.parse_args()

    dm = MNISTDataModule(mnist_data_dir(args.shared, Path(tempfile.mkdtemp())), download=False, batch_size=args.batch_size)
    dm.setup()
    images = float_images(dm.train_set)  # held as uint8; the plain loops index floats in [-1, 1]
    rows = throughput(args, dm, images)
    stats = ("min", "median", "max", "best/best")
    columns = ["variant", "plain img/s", "package img/s", *(f"package / plain {k}" for k in stats)]
    if args.fast:
        columns += ["fast img/s", *(f"fast / plain {k}" for k in stats)]
    report = ["## Throughput (real images per second, best of %d repeats; MNIST 28x28, batch %d)" % (args.repeats, args.batch_size),
              "", markdown_table(rows, columns)]
    payload: dict[str, Any] = {"machine": machine(), "args": vars(args), "throughput": rows}
    cost = lightning_cost(dm, steps=20 * args.d_steps, warmup=args.warmup, repeats=1)
    payload["lightning cost"] = cost
    report += ["", "Lightning's own cost (`benchmarks/lightning_cost.py`): its loop {:.0f} us per batch, its "
               "manual-optimization wrappers {:.0f} us per optimizer step; a plain step takes batch size / plain img/s."
               .format(*cost.values())]
    if args.fast:
        options = ablation(args, dm, images)
        payload["fast path options"] = options
        report += ["", "## Fast-path options, one at a time (DCGAN; joint forward on WGAN-GP)", "",
                   markdown_table(options, ["option", "img/s", *(f"x plain fp32 {k}" for k in stats),
                                            *(f"x two forwards {k}" for k in stats)])]
    if not args.skip_overheads:
        overheads = callback_overheads(args, dm)
        memory = data_and_memory(args, dm)
        payload.update(callbacks=overheads, data_and_memory=memory)
        report += ["", "## Monitoring callbacks at their default settings (DCGAN)", "",
                   markdown_table(overheads, ["callback", "every n generator steps", "seconds per evaluation", "share of training time"]),
                   "", "## Data loading and memory (DCGAN)", "", markdown_table([memory], list(memory))]
    report += ["", f"Machine: {machine()}", "", "Command: `python benchmarks/throughput.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k in ("repeats", "d_steps", "min_seconds")) + "`"]
    text = "\n".join(report)
    print(text)
    print("written", save_results("throughput", payload, text))


if __name__ == "__main__":
    main()

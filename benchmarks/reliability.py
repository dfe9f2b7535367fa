"""Kill a shipped-config run at random moments and resume it: how many runs reach their budget, and whether their
final weights equal an uninterrupted run's.

Each trial starts ``lit-gans fit --config CONFIG`` (the real MNIST test split as data, W&B off), kills it with
SIGKILL (or SIGTERM, or either at random) after a random delay, then resumes it with the README's command
(``--ckpt_path <checkpoint folder>``; from scratch when nothing was saved yet) until it exits 0. It records
whether the kill left a temporary file of an interrupted save, how many resumes it took, and compares the final
``last.ckpt`` (weights, buffers and both optimizers) with an uninterrupted run's, bit for bit.

    python benchmarks/reliability.py --kills 20                         # DCGAN on MNIST, 300 generator steps
    python benchmarks/reliability.py --config configs/wgan_gp_mnist.yaml --steps 100 --signal mixed

Writes benchmarks/results/reliability.{md,json}. Run by hand (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_utils import REPO, machine, markdown_table, mnist_data_dir, save_results

from lit_gans.checkpoints import TEMPORARY_FILE
from lit_gans.cli import PREEMPTED_EXIT_STATUS


def command(args: argparse.Namespace, data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "lit_gans", "fit", "--config", str(args.config),
        f"--data.init_args.data_dir={data_dir}", "--data.init_args.download=false",
        f"--data.init_args.batch_size={args.batch_size}", f"--model.init_args.max_generator_steps={args.steps}",
        f"--last_checkpoint.every_n_generator_steps={args.every}", "--trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip


def environment() -> dict[str, str]:
    return dict(os.environ, WANDB_MODE="disabled", PYTHONWARNINGS="ignore")


def checkpoint_folders(cwd: Path) -> list[Path]:
    return sorted((cwd / "lightning_logs" / "lit-gans").glob("*/checkpoints"))


def final_state(cwd: Path) -> dict[str, Any]:
    (folder,) = checkpoint_folders(cwd)
    checkpoint = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    return {"state_dict": checkpoint["state_dict"], "optimizer_states": checkpoint["optimizer_states"]}


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


def run_to_the_end(args: argparse.Namespace, data_dir: Path, cwd: Path) -> tuple[int, float]:
    """Run (or resume) until the fit exits 0; returns (resumes needed, seconds)."""
    start, resumes = time.monotonic(), 0
    while True:
        folders = checkpoint_folders(cwd)
        extra = [f"--ckpt_path={folders[0]}"] if folders and list(folders[0].glob("*.ckpt")) else []
        result = subprocess.run(command(args, data_dir, *extra), cwd=cwd, env=environment(), capture_output=True, text=True)
        if result.returncode == 0:
            return resumes, time.monotonic() - start
        if resumes >= 3:
            raise RuntimeError(f"resume failed {resumes} times in {cwd}:\n{result.stderr[-3000:]}")
        resumes += 1


def trial(args: argparse.Namespace, data_dir: Path, cwd: Path, delay: float, sig: signal.Signals) -> dict[str, Any]:
    proc = subprocess.Popen(command(args, data_dir), cwd=cwd, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    finished_first = proc.poll() is not None
    proc.send_signal(sig)
    _, stderr = proc.communicate()
    folders = checkpoint_folders(cwd)
    temporaries = [p for f in folders for p in f.iterdir() if TEMPORARY_FILE.match(p.name)]
    saved = None
    if folders and (folders[0] / "last.ckpt").exists():
        saved = int(torch.load(folders[0] / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]["generator_steps"])
    resumes, seconds = run_to_the_end(args, data_dir, cwd)
    final = final_state(cwd)
    left = [p for f in checkpoint_folders(cwd) for p in f.iterdir() if TEMPORARY_FILE.match(p.name)]
    return {
        "signal": sig.name,
        "delay s": round(delay, 2),
        "exit status": proc.returncode,
        "finished before the kill": finished_first,
        "kill during a save": bool(temporaries),
        "step of last.ckpt at the kill": saved,
        "resumes": resumes + 1,
        "final step": int(final["state_dict"]["generator_steps"]),
        "temporary files left": len(left),
        "_final": final,
        "_stderr": stderr[-500:] if sig == signal.SIGTERM and proc.returncode != PREEMPTED_EXIT_STATUS else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "dcgan_mnist.yaml")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300, help="max_generator_steps of every run")
    parser.add_argument("--every", type=int, default=10, help="LastCheckpoint's every_n_generator_steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--signal", choices=["KILL", "TERM", "mixed"], default="KILL")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="lit-gans-reliability-"))
    data_dir = mnist_data_dir(args.shared, root / "data")
    reference_dir = root / "uninterrupted"
    reference_dir.mkdir()
    _, seconds = run_to_the_end(args, data_dir, reference_dir)
    reference = final_state(reference_dir)
    print(f"uninterrupted run: {seconds:.1f} s to {args.steps} generator steps", flush=True)

    rng = random.Random(args.seed)
    rows = []
    for i in range(args.kills):
        sig = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}.get(args.signal) or rng.choice([signal.SIGKILL, signal.SIGTERM])
        cwd = root / f"trial{i}"
        cwd.mkdir()
        row = trial(args, data_dir, cwd, rng.uniform(1.0, seconds), sig)
        row["weights equal"] = equal(row.pop("_final"), reference)
        if row.pop("_stderr"):
            row["exit status"] = f"{row['exit status']} (expected {PREEMPTED_EXIT_STATUS})"
        rows.append({"trial": i, **row})
        print(rows[-1], flush=True)
        shutil.rmtree(cwd)
    reached = sum(r["final step"] == args.steps for r in rows)
    identical = sum(r["weights equal"] for r in rows)
    during_save = sum(r["kill during a save"] for r in rows)
    columns = ["trial", "signal", "delay s", "exit status", "kill during a save", "step of last.ckpt at the kill",
               "resumes", "final step", "weights equal", "temporary files left"]
    text = "\n".join([
        f"## Reliability: {args.kills} interrupted runs of {args.config.name} ({args.steps} generator steps, "
        f"last.ckpt every {args.every}, signal {args.signal})",
        "",
        f"- reached the budget: {reached} of {args.kills}; final weights and optimizers bitwise equal to the "
        f"uninterrupted run's: {identical} of {args.kills}; killed while a checkpoint was being written: {during_save}",
        "",
        markdown_table(rows, columns),
        "",
        f"Machine: {machine()}",
        "",
        f"Command: `python benchmarks/reliability.py --config {args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config} "
        f"--kills {args.kills} --steps {args.steps} --every {args.every} --signal {args.signal} --seed {args.seed}`",
    ])
    print(text)
    save_results("reliability", {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, text)
    shutil.rmtree(root)


if __name__ == "__main__":
    main()

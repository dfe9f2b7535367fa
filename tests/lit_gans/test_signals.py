"""SIGTERM through the ``lit-gans`` command, as SLURM and Kubernetes send it: exit status 75 ("preempted, resume
me") with one line, at any moment of the command, for a second SIGTERM too, and on every rank of a DDP run."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lit_gans.checkpoints import checkpoint_problem
from lit_gans.preemption import PREEMPTED_EXIT_STATUS

REPO = Path(__file__).resolve().parents[2]
#: the shipped config, shrunk: narrow networks, last.ckpt every 5 generator steps and no metric callbacks
TINY_TRAINER = (
    "fid: null\ndiversity: null\ngradient_norms: null\nsamples: null\nbest_checkpoint: null\n"
    "last_checkpoint:\n  init_args: {every_n_generator_steps: 5}\n"
)


def fit_command(mnist_dir: Path, cwd: Path, *extra: str, console_script: bool = False) -> list[str]:
    (cwd / "tiny_trainer.yaml").write_text(TINY_TRAINER)
    launcher = [str(Path(sys.executable).with_name("lit-gans"))] if console_script else [sys.executable, "-m", "lit_gans"]
    return [
        *launcher, "fit", "--config", str(REPO / "configs" / "dcgan_mnist.yaml"), "--config", "tiny_trainer.yaml",
        f"--data.init_args.data_dir={mnist_dir}", "--data.init_args.download=false", "--data.init_args.batch_size=16",
        "--model.init_args.generator_width=8", "--model.init_args.discriminator_width=8",
        "--model.init_args.max_generator_steps=100000", "--trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip


def start(command: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", **env)
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def last_checkpoint(cwd: Path) -> Path | None:
    for last in (cwd / "lightning_logs" / "lit-gans").glob("*/checkpoints/last.ckpt"):
        if checkpoint_problem(last) is None:
            return last
    return None


def wait_for_training(cwd: Path, procs: list[subprocess.Popen], timeout: float = 180) -> None:
    """Until the fit has written its first scheduled last.ckpt: the training loop runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if last_checkpoint(cwd) is not None:
            return
        for proc in procs:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.1)
    raise TimeoutError("the fit wrote no checkpoint")


def step_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["generator_steps"])


def sigterm_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "stopped by SIGTERM" in line]


@pytest.mark.parametrize("console_script", [False, True], ids=["python_-m", "console_script"])
@pytest.mark.parametrize("delays", [(0.5,), (0.5, 0.2)], ids=["one", "two_in_a_row"])
def test_sigterm_while_the_command_starts_exits_75_with_one_line(mnist_dir, tmp_path, console_script, delays):
    # before: -15 without a word, 4 of 4 in the first seconds (torch alone takes seconds to import)
    proc = start(fit_command(mnist_dir, tmp_path, console_script=console_script), tmp_path)
    for delay in delays:
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == PREEMPTED_EXIT_STATUS == 75, output
    assert "Traceback" not in output
    (line,) = sigterm_lines(output)
    assert line == "lit-gans: stopped by SIGTERM outside training, nothing to save; run the same command again (exit status 75)"


def test_a_second_sigterm_while_the_fit_stops_changes_nothing(mnist_dir, tmp_path):
    # before: the second SIGTERM, 0.1-0.5 s after the first, ended the exit with -15 after "(exit status 75)"
    proc = start(fit_command(mnist_dir, tmp_path), tmp_path)
    wait_for_training(tmp_path, [proc])
    for _ in range(2):
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == PREEMPTED_EXIT_STATUS, output
    assert "Traceback" not in output
    stopped = step_of(last_checkpoint(tmp_path))
    (line,) = sigterm_lines(output)
    assert line.startswith(f"lit-gans: stopped by SIGTERM at generator step {stopped} of max_generator_steps=100000")
    assert "`weights_only` was not set" not in output  # Lightning's log line at the preemption save (issue 18 #18)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_sigterm_to_every_process_of_a_ddp_fit_saves_once_and_exits_75(mnist_dir, tmp_path):
    """The CLI on 2 gloo processes (rank 0 starts rank 1), and SIGTERM to both, as SLURM sends it to a job step.
    Before: 4 of 4 hung after "[rank: 0] Received SIGTERM", last.ckpt behind. Lightning's handler broadcasts inside
    the signal handler, wherever each rank is, and rank 0 forwards the signal: rank 1 broadcast twice."""
    command = fit_command(mnist_dir, tmp_path, "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu")
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", MASTER_PORT=str(free_port()))
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        wait_for_training(tmp_path, [proc])
        (rank1,) = children(proc.pid)
        os.killpg(proc.pid, signal.SIGTERM)
        stopped = time.monotonic()
        output, _ = proc.communicate(timeout=60)
        while Path(f"/proc/{rank1}").exists() and time.monotonic() - stopped < 60:
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a hung run
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.monotonic() - stopped < 30, "the ranks took too long to stop"
    assert proc.returncode == PREEMPTED_EXIT_STATUS, output
    assert not Path(f"/proc/{rank1}").exists()
    assert output.count("SIGTERM received, saved") == 1  # one save, by rank 0
    saved = step_of(last_checkpoint(tmp_path))
    assert f"stopped by SIGTERM at generator step {saved} of" in output  # last.ckpt is where the ranks stopped
    assert output.count("stopped by SIGTERM") == 1  # said once, not once per rank
    assert "Traceback" not in output


def test_sigterm_to_every_rank_of_a_ddp_fit_saves_once_and_exits_75_on_each(mnist_dir, tmp_path):
    """Two gloo ranks started as SLURM or torchrun start them, each its own process, and SIGTERM to both, as a
    cluster sends it. Before: 4 of 4 hung after "[rank: 0] Received SIGTERM" (Lightning's handler broadcasts inside
    the signal handler, wherever each rank is), last.ckpt behind."""
    command = fit_command(mnist_dir, tmp_path, "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu")
    ddp = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2", NODE_RANK="0")
    ranks = [start(command, tmp_path, LOCAL_RANK=str(rank), RANK=str(rank), **ddp) for rank in (0, 1)]
    try:
        wait_for_training(tmp_path, ranks)
        for rank in ranks:
            rank.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        outputs = [rank.communicate(timeout=60)[0] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    assert time.monotonic() - stopped < 30, "the ranks took too long to stop"
    assert [rank.returncode for rank in ranks] == [PREEMPTED_EXIT_STATUS] * 2, outputs
    last = last_checkpoint(tmp_path)
    saved = step_of(last)
    assert sum(output.count("SIGTERM received, saved") for output in outputs) == 1  # one save, by rank 0
    assert f"stopped by SIGTERM at generator step {saved} of" in outputs[0]  # last.ckpt is where the ranks stopped
    assert "stopped by SIGTERM" not in outputs[1]  # said once, by rank 0
    assert "Traceback" not in outputs[0] + outputs[1]


def test_ctrl_c_while_training_saves_at_that_step_says_how_to_resume_and_exits_130(mnist_dir, tmp_path):
    """Issue 21 #3. Before: Lightning's "Detected KeyboardInterrupt", exit status 1, last.ckpt only where the
    schedule had put it (every 5 generator steps here), and no resume command."""
    proc = start(fit_command(mnist_dir, tmp_path), tmp_path)
    wait_for_training(tmp_path, [proc])
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "Detected KeyboardInterrupt" not in output
    assert "lit-gans: Ctrl-C: saving a checkpoint at the end of this batch" in output
    last = last_checkpoint(tmp_path)
    saved = step_of(last)
    written = re.search(r"lit-gans: Ctrl-C received, saved (\S+) at generator step (\d+)", output)
    assert written is not None and (tmp_path / written[1]).resolve() == last.resolve() and int(written[2]) == saved
    assert f"lit-gans: fit was interrupted at generator step {saved} of 100000" in output  # saved where it stopped
    folder = re.search(r"resume with --ckpt_path (\S+) \(its newest checkpoint: training resumes at generator step (\d+)\)", output)
    assert folder is not None, output
    assert (tmp_path / folder[1]).resolve() == last.parent.resolve() and int(folder[2]) == saved

    # the command it printed continues the run: two generator steps more
    resumed = subprocess.run(
        fit_command(mnist_dir, tmp_path, "--ckpt_path", folder[1], f"--model.init_args.max_generator_steps={saved + 2}"),
        cwd=tmp_path, env=dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1"), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"fit ended at generator step {saved + 2} of {saved + 2}" in resumed.stdout + resumed.stderr
    assert step_of(last) == saved + 2

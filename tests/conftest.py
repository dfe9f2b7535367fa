"""Shared fixtures: the real MNIST files from ../shared/data/mnist laid out as torchvision expects them."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("LIT_GANS_SHARED_DATA", REPO.parent / "shared" / "data")) / "mnist"


def _lay_out_raw(root: Path, folder: str) -> Path:
    """torchvision's raw layout under ``root/folder/raw``; the real 10k test split also serves as "train"."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for kind in ("images-idx3", "labels-idx1"):
        src = SHARED_MNIST / f"t10k-{kind}-ubyte.gz"
        if not src.exists():
            raise FileNotFoundError(f"the test suite needs the real MNIST file {src} (see shared/data/README.md)")
        with gzip.open(src, "rb") as f:
            data = f.read()
        for split in ("train", "t10k"):
            (raw / f"{split}-{kind}-ubyte").write_bytes(data)
    return root


@pytest.fixture(autouse=True)
def ctrl_c_is_left_as_found():
    """A test that leaves another Ctrl-C handler installed fails itself, not the Ctrl-C tests that come after."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, before)
    assert after == before, f"the test left {after!r} as the SIGINT handler"


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``data_dir`` holding real MNIST (and the same IDX files as Fashion-MNIST) in torchvision's layout."""
    root = tmp_path_factory.mktemp("mnist")
    _lay_out_raw(root, "MNIST")
    _lay_out_raw(root, "FashionMNIST")
    return root


@pytest.fixture(scope="session")
def mnist_gz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only ``.gz`` archives, as a user who copied the downloads would have them (the real test split also
    stands in for the training split's archives, which are not available offline)."""
    root = tmp_path_factory.mktemp("mnist_gz")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(SHARED_MNIST / f"t10k-{kind}-ubyte.gz", raw / f"t10k-{kind}-ubyte.gz")
        shutil.copy(SHARED_MNIST / f"t10k-{kind}-ubyte.gz", raw / f"train-{kind}-ubyte.gz")
    return root


@pytest.fixture(scope="session")
def inception_home(tmp_path_factory) -> Path:
    """A ``TORCH_HOME`` holding torch-fidelity's Inception weights file with *random* weights of the right
    architecture: the real file cannot be downloaded here, but the loading and feature path can be exercised."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    from lit_gans.callbacks.features import INCEPTION_FILE

    home = tmp_path_factory.mktemp("torch_home")
    target = home / "hub" / "checkpoints" / INCEPTION_FILE
    target.parent.mkdir(parents=True)
    original = fe.load_state_dict_from_url
    fe.load_state_dict_from_url = lambda *a, **k: None
    real_load = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = lambda self, state, *a, **k: None
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same weights whatever ran before (the IS test needs confident logits)
            net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        fe.load_state_dict_from_url, torch.nn.Module.load_state_dict = original, real_load
    torch.save(net.state_dict(), target)
    return home


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No W&B account, no leaked environment or process-global torch settings between tests."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    threads, environ = torch.get_num_threads(), dict(os.environ)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)
    # in-process DDP runs (the CLI configs use a DDP strategy) leave MASTER_PORT etc. and a process group behind,
    # which a later ddp_spawn run would try to reuse
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(environ)
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:  # a CLI run's W&B run would be reused by the next logger
        wandb.finish()

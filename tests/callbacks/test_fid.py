"""FIDCallback: sane values on real MNIST, cached real statistics, offline errors, checkpoints and best-FID."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch
from gan_testing import ProjectionFeatures, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import TensorDataset

from lit_gans import VanillaGAN
from lit_gans.callbacks import FIDCallback
from lit_gans.callbacks.features import INCEPTION_FILE
from lit_gans.datamodules import MNISTDataModule


class ReplayGAN(torch.nn.Module):
    """Stands in for a GAN whose samples are given images: latent i -> image i."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images, self.device, self.generator_step = images, torch.device("cpu"), 0

    def sample_latent(self, n, generator=None):
        return torch.arange(n, dtype=torch.float32)[:, None]

    def sample(self, z):
        return self.images[z[:, 0].long()]


def trainer_with(real: torch.Tensor):
    dm = SimpleNamespace(train_set=TensorDataset(real, torch.zeros(len(real))), data_dir="x", image_shape=real.shape[1:])
    return SimpleNamespace(
        datamodule=dm, global_rank=0, world_size=1, is_global_zero=True,
        strategy=SimpleNamespace(reduce=lambda t, reduce_op: t),
    )


def fid_between(real, fake, tmp_path, **kwargs) -> float:
    cb = FIDCallback("mnist", num_real=len(real), num_fake=len(fake), cache_dir=tmp_path / "fid", **kwargs)
    cb.setup(None, None, "fit")
    return float(cb.evaluate(trainer_with(real), ReplayGAN(fake))["fid"])


@pytest.fixture(scope="module")
def digits(mnist_dir):
    dm = MNISTDataModule(mnist_dir, download=False)
    dm.setup()
    return dm.train_set.tensors[0]


def test_fid_is_near_zero_for_two_halves_and_large_for_noise(digits, tmp_path):
    a, b = digits[0::2], digits[1::2]  # interleaved: the test split's two halves come from different writers
    same = fid_between(a, b, tmp_path)
    noise = fid_between(a, torch.rand_like(b) * 2 - 1, tmp_path)
    assert same < 0.01 * noise, (same, noise)


def test_fid_orders_mild_and_strong_corruption(digits, tmp_path):
    real, other = digits[:4000], digits[4000:8000]
    g = torch.Generator().manual_seed(0)
    mild = (other + 0.2 * torch.randn(other.shape, generator=g)).clamp(-1, 1)
    strong = (other + 0.8 * torch.randn(other.shape, generator=g)).clamp(-1, 1)
    clean, f_mild, f_strong = (fid_between(real, x, tmp_path) for x in (other, mild, strong))
    assert clean < f_mild < f_strong, (clean, f_mild, f_strong)


def test_real_statistics_are_computed_once_and_cached_on_disk(digits, tmp_path):
    real, fake = digits[:600], digits[600:1000]
    calls = []
    cb = FIDCallback("mnist", num_real=600, num_fake=400, cache_dir=tmp_path / "fid")
    cb.setup(None, None, "fit")
    original = cb._real_images
    cb._real_images = lambda trainer: calls.append(1) or original(trainer)
    trainer = trainer_with(real)
    first = cb.evaluate(trainer, ReplayGAN(fake))["fid"]
    second = cb.evaluate(trainer, ReplayGAN(fake))["fid"]
    assert calls == [1] and torch.isclose(first, second)  # real side added once, fake side reset between
    assert int(cb.fid.real_features_num_samples) == 600
    assert len(list((tmp_path / "fid").glob("real-mnist-600-*.pt"))) == 1
    fresh = FIDCallback("mnist", num_real=600, num_fake=400, cache_dir=tmp_path / "fid")
    fresh.setup(None, None, "fit")
    fresh._real_images = lambda trainer: pytest.fail("the cached real statistics were not used")
    assert torch.isclose(fresh.evaluate(trainer, ReplayGAN(fake))["fid"], first)


def test_kid_and_inception_score_with_the_mnist_classifier(digits, tmp_path):
    cb = FIDCallback("mnist", num_real=500, num_fake=500, kid=True, inception_score=True, cache_dir=tmp_path / "fid")
    cb.setup(None, None, "fit")
    results = cb.evaluate(trainer_with(digits[:500]), ReplayGAN(digits[500:1000]))
    assert set(results) == {"fid", "kid", "inception_score"}
    assert 5 < results["inception_score"] <= 10  # ten confident classes, evenly spread


def test_missing_inception_weights_fail_fast_offline_with_the_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cb = FIDCallback("inception", download=False)
    with pytest.raises(FileNotFoundError, match=rf"{INCEPTION_FILE}.*{tmp_path / 'torch' / 'hub' / 'checkpoints'}"):
        cb.setup(None, None, "fit")
    import lit_gans.callbacks.features as features

    monkeypatch.setattr(features, "INCEPTION_URL", "http://127.0.0.1:9/" + INCEPTION_FILE)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="download failed"):
        FIDCallback("inception").setup(None, None, "fit")
    assert time.monotonic() - start < 30
    with pytest.raises(FileNotFoundError, match="weights_path='/nowhere/w.pth'"):
        FIDCallback("inception", weights_path="/nowhere/w.pth").setup(None, None, "fit")


def test_during_training_best_fid_checkpoint_and_no_extractor_in_checkpoints(tmp_path):
    fid = FIDCallback(ProjectionFeatures(), num_real=32, num_fake=32, every_n_generator_steps=2)
    # checked after every batch, so the checkpoint is written right after an evaluation that improved
    best = ModelCheckpoint(dirpath=tmp_path, monitor="fid", mode="min", save_top_k=1, every_n_train_steps=1)
    model = VanillaGAN(image_shape=(1, 8, 8), latent_dim=4, hidden_dims=(16,), max_generator_steps=8)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[fid, best], enable_checkpointing=True))
    trainer.fit(model, RandomImages(n=64, image_shape=(1, 8, 8)))
    assert fid.best_step in (2, 4, 6, 8) and best.best_model_score == pytest.approx(fid.best_fid)
    checkpoint = torch.load(best.best_model_path, weights_only=False)
    assert not [k for k in checkpoint["state_dict"] if "weight" in k and not k.startswith(("generator.", "discriminator."))]
    state = next(v for k, v in checkpoint["callbacks"].items() if k.startswith("FIDCallback"))
    assert state["best_fid"] == pytest.approx(best.best_model_score.item())


def test_extractor_runs_without_autocast_under_bf16(tmp_path):
    seen = []

    class Spy(ProjectionFeatures):
        def forward(self, images):
            seen.append((images.dtype, torch.is_autocast_enabled("cpu")))
            return super().forward(images)

    fid = FIDCallback(Spy(), num_real=16, num_fake=16, every_n_generator_steps=1)
    model = VanillaGAN(image_shape=(1, 8, 8), latent_dim=4, hidden_dims=(16,), max_generator_steps=1)
    Trainer(**tiny_trainer_kwargs(callbacks=[fid], precision="bf16-mixed")).fit(model, RandomImages(n=32))
    assert seen and all(dtype == torch.float32 and not autocast for dtype, autocast in seen)


def test_inception_path_with_a_weights_file_in_torch_home(inception_home, monkeypatch, digits, tmp_path):
    # random weights of the right architecture (the real file is not available offline): checks loading from
    # $TORCH_HOME/hub/checkpoints, 1-channel input, the 299 px resize and the 2048-d features end to end
    monkeypatch.setenv("TORCH_HOME", str(inception_home))
    cb = FIDCallback("inception", num_real=20, num_fake=20, batch_size=10, cache_dir=tmp_path / "fid", download=False)
    cb.setup(None, None, "fit")
    results = cb.evaluate(trainer_with(digits[:20]), ReplayGAN(digits[20:40]))
    assert torch.isfinite(results["fid"]) and cb.fid.real_features_sum.shape == (2048,)
    assert list((tmp_path / "fid").glob("real-inception-20-*.pt"))


def knn_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019 by brute force: sorted distance tables, one sample at a time."""
    def radii(x):
        return torch.tensor([torch.cdist(x[i : i + 1], x)[0].sort().values[k].item() for i in range(len(x))])

    real_r, fake_r = radii(real), radii(fake)
    precision = sum(bool((torch.cdist(f[None], real)[0] <= real_r).any()) for f in fake) / len(fake)
    recall = sum(bool((torch.cdist(r[None], fake)[0] <= fake_r).any()) for r in real) / len(real)
    return precision, recall


def test_precision_recall_equal_a_brute_force_computation(tmp_path):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(60, 1, 8, 8, generator=g) * 2 - 1
    fake = (torch.rand(50, 1, 8, 8, generator=g) * 2 - 1) * 0.7 + 0.2  # overlapping, shifted and narrower
    features = ProjectionFeatures()
    cb = FIDCallback(features, num_real=60, num_fake=50, precision_recall=True, cache_dir=None, batch_size=16)
    cb.setup(None, None, "fit")
    results = cb.evaluate(trainer_with(real), ReplayGAN(fake))
    expected = knn_precision_recall(features(real).double(), features(fake).double(), k=3)
    assert (float(results["precision"]), float(results["recall"])) == pytest.approx(expected, abs=1e-6)  # float32 logs
    again = cb.evaluate(trainer_with(real), ReplayGAN(fake))  # the fake side is reset, the real side kept
    assert float(again["recall"]) == float(results["recall"]) and len(cb.prc_metric.real_features) == 4


def test_precision_recall_tell_mode_collapse_from_noise(digits, mnist_dir, tmp_path):
    labels = MNISTDataModule(mnist_dir, download=False)
    labels.setup()
    y = labels.train_set.tensors[1]
    real, other, other_y = digits[:1000], digits[1000:2000], y[1000:2000]
    ones = other[other_y == 1][:100]

    def measure(fake):
        cb = FIDCallback("mnist", num_real=1000, num_fake=len(fake), precision_recall=True, cache_dir=tmp_path / "fid")
        cb.setup(None, None, "fit")
        out = cb.evaluate(trainer_with(real), ReplayGAN(fake))
        return float(out["precision"]), float(out["recall"])

    good, collapsed, noise = measure(other[:500]), measure(ones), measure(torch.rand(300, 1, 28, 28) * 2 - 1)
    assert good[0] > 0.6 and good[1] > 0.6, good
    assert collapsed[0] > 0.6 and collapsed[1] < 0.3, collapsed  # faithful but one mode: recall says so
    assert noise[0] < 0.1, noise

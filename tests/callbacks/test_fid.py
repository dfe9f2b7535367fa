"""FIDCallback: sane values on real MNIST, cached real statistics, offline errors, checkpoints and best-FID."""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace

import pytest
import torch
from gan_testing import ProjectionFeatures, RandomImages, ReplayGAN, tiny_trainer_kwargs
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import TensorDataset

from lit_gans import VanillaGAN
from lit_gans.callbacks import FIDCallback
from lit_gans.callbacks.features import INCEPTION_FILE, VGG16_FILE, VGG16_URL
from lit_gans.datamodules import MNISTDataModule
from lit_gans.datamodules.base import float_images


def trainer_with(real: torch.Tensor):
    digest = hashlib.sha256(real.numpy().tobytes()).hexdigest()  # the images are the data's whole identity
    train_set = TensorDataset(real, torch.zeros(len(real)))
    dm = SimpleNamespace(train_set=train_set, data_identity=lambda: {"images": digest})
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
    return float_images(dm.train_set)


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


# ---------------------------------------------------------------------------------------------- Inception Score
def reference_inception_score(weights, images: torch.Tensor, layer: str) -> float:
    """torchmetrics' InceptionScore on torch-fidelity's Inception ``layer`` read from ``weights``, fed the digits'
    original uint8 pixels (MNIST maps them to [-1, 1] exactly), with the permutation of seed 0."""
    from torchmetrics.image.fid import NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore

    net = NoTrainInceptionV3("inception-v3-compat", [layer], feature_extractor_weights_path=str(weights))
    metric = InceptionScore(feature=net)
    metric.update(((images + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1))
    torch.manual_seed(0)
    return float(metric.compute()[0])


def test_inception_score_uses_the_inception_class_logits(calibrated_inception_home, monkeypatch, digits, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(calibrated_inception_home))
    real, fake = digits[:4], digits[4:24]  # 20 fakes: 2 per split of the score's 10
    cb = FIDCallback("inception", num_real=4, num_fake=20, batch_size=10, inception_score=True,
                     cache_dir=tmp_path / "fid", download=False)  # fmt: skip
    cb.setup(None, None, "fit")
    torch.manual_seed(0)  # the score's split permutation (nothing else in evaluate draws from the global RNG)
    logged = float(cb.evaluate(trainer_with(real), ReplayGAN(fake))["inception_score"])
    weights = calibrated_inception_home / "hub" / "checkpoints" / INCEPTION_FILE
    on_logits, on_features = (reference_inception_score(weights, fake, layer) for layer in ("logits_unbiased", "2048"))
    assert logged == pytest.approx(on_logits, rel=1e-4)
    assert abs(on_logits - on_features) > 0.05 * on_logits, (on_logits, on_features)  # the test tells them apart


class WithLogits(ProjectionFeatures):
    """A user extractor with class scores: 5 logits from its 16 features."""

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images)[:, :5] * 3


def test_inception_score_of_a_user_extractor_uses_its_logits(tmp_path):
    from torchmetrics.image.inception import InceptionScore

    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(8, 1, 8, 8, generator=g) * 2 - 1, torch.rand(40, 1, 8, 8, generator=g) * 2 - 1
    extractor = WithLogits()
    cb = FIDCallback(extractor, num_real=8, num_fake=40, inception_score=True, cache_dir=None, batch_size=16)
    cb.setup(None, None, "fit")
    torch.manual_seed(0)
    logged = float(cb.evaluate(trainer_with(real), ReplayGAN(fake))["inception_score"])
    reference = InceptionScore(feature=torch.nn.Module())  # the score's formula, on logits computed here
    reference.features.append(fake.flatten(1) @ extractor.weight[:, :5] * 3)
    torch.manual_seed(0)
    assert logged == pytest.approx(float(reference.compute()[0]), rel=1e-5)


def test_inception_score_refuses_a_user_extractor_without_logits():
    with pytest.raises(ValueError, match=r"inception_score=True.*ProjectionFeatures has no `logits`"):
        FIDCallback(ProjectionFeatures(), inception_score=True)
    FIDCallback(ProjectionFeatures())  # fine without the score


# ---------------------------------------------------------------------------------------------- KID subset size
def reference_kid(real: torch.Tensor, fake: torch.Tensor, subset_size: int) -> float:
    """torchmetrics' KID on ProjectionFeatures, with the subsets of seed 0."""
    from torchmetrics.image.kid import KernelInceptionDistance

    kid = KernelInceptionDistance(feature=ProjectionFeatures(), subset_size=subset_size)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    torch.manual_seed(0)
    return float(kid.compute()[0])


@pytest.mark.parametrize("available", [10, 7])  # num_real images, or fewer in the training data
def test_kid_with_fewer_real_than_fake_images(available, tmp_path):
    # num_real < num_fake: the subset must fit the real images too (as with num_real < 1000 <= num_fake)
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(available, 1, 8, 8, generator=g) * 2 - 1, torch.rand(20, 1, 8, 8, generator=g) * 2 - 1
    cb = FIDCallback(ProjectionFeatures(), num_real=10, num_fake=20, kid=True, cache_dir=None)
    cb.setup(None, None, "fit")
    torch.manual_seed(0)  # KID's subsets (nothing else in evaluate draws from the global RNG)
    logged = float(cb.evaluate(trainer_with(real), ReplayGAN(fake))["kid"])
    assert cb.kid_metric.subset_size == available
    assert logged == pytest.approx(reference_kid(real, fake, available), rel=1e-4, abs=1e-7)


def test_kid_subset_size_argument(tmp_path):
    g = torch.Generator().manual_seed(1)
    real, fake = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1, torch.rand(20, 1, 8, 8, generator=g) * 2 - 1
    cb = FIDCallback(ProjectionFeatures(), num_real=10, num_fake=20, kid=True, kid_subset_size=4, cache_dir=None)
    cb.setup(None, None, "fit")
    torch.manual_seed(0)
    logged = float(cb.evaluate(trainer_with(real), ReplayGAN(fake))["kid"])
    assert logged == pytest.approx(reference_kid(real, fake, 4), rel=1e-4, abs=1e-7)
    with pytest.raises(ValueError, match=r"kid_subset_size=11 must not exceed num_real=10"):
        FIDCallback(ProjectionFeatures(), num_real=10, num_fake=20, kid=True, kid_subset_size=11)
    short = FIDCallback(ProjectionFeatures(), num_real=10, num_fake=20, kid=True, kid_subset_size=8, cache_dir=None)
    short.setup(None, None, "fit")
    with pytest.raises(ValueError, match=r"kid_subset_size=8 exceeds the 6 real images"):
        short.evaluate(trainer_with(real[:6]), ReplayGAN(fake))


# ---------------------------------------------------------------------------------------------- precision/recall
def test_precision_recall_say_which_features_they_use(caplog):
    import logging

    with caplog.at_level(logging.INFO):
        FIDCallback(ProjectionFeatures(), precision_recall=True, cache_dir=None).setup(None, None, "fit")
    assert "precision and recall use the ProjectionFeatures extractor's features, not VGG-16" in caplog.text


def test_precision_recall_on_vgg16_features(vgg16_home, monkeypatch, digits, caplog):
    import logging

    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    monkeypatch.setenv("TORCH_HOME", str(vgg16_home))
    noise = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real, fake = digits[:6], torch.cat([digits[6:9], noise])  # half faithful, half not
    cb = FIDCallback(ProjectionFeatures(pixels=784), num_real=6, num_fake=6, precision_recall=True, cache_dir=None,
                     precision_recall_features="vgg16", download=False)  # fmt: skip
    with caplog.at_level(logging.INFO):
        cb.setup(None, None, "fit")
    assert "precision and recall use torch-fidelity's VGG-16 fc2_relu features" in caplog.text
    results = cb.evaluate(trainer_with(real), ReplayGAN(fake))
    # torch-fidelity's own VGG-16 extractor on the same file, fed the digits' original uint8 pixels
    vgg = FeatureExtractorVGG16("vgg16", ["fc2_relu"], feature_extractor_weights_path=str(
        vgg16_home / "hub" / "checkpoints" / VGG16_FILE))  # fmt: skip
    features = vgg(((torch.cat([real, fake]) + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1))[0].double()
    expected = knn_precision_recall(features[:6], features[6:], k=3)
    assert (float(results["precision"]), float(results["recall"])) == pytest.approx(expected, abs=1e-6)
    assert cb.prc_metric.real_features[0].shape[1] == 4096
    assert cb.fid.real_features_sum.shape == (16,)  # FID keeps its own extractor


def test_missing_vgg16_weights_fail_offline_with_the_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cb = FIDCallback(ProjectionFeatures(), precision_recall=True, precision_recall_features="vgg16", download=False)
    place = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(FileNotFoundError, match=rf"{VGG16_FILE} \(from {VGG16_URL}\) at {place}"):
        cb.setup(None, None, "fit")
    with pytest.raises(FileNotFoundError, match="vgg16_weights_path='/nowhere/vgg.pth'"):
        FIDCallback(ProjectionFeatures(), precision_recall=True, precision_recall_features="vgg16",
                    vgg16_weights_path="/nowhere/vgg.pth").setup(None, None, "fit")  # fmt: skip
    with pytest.raises(ValueError, match="precision_recall_features='vgg'"):
        FIDCallback(ProjectionFeatures(), precision_recall_features="vgg")


class Declared(torch.nn.Sequential):
    num_features = 12


def test_a_user_extractor_without_num_features_is_probed_on_the_data_s_images(tmp_path):
    # "any module mapping images in [-1, 1] to (N, d)": d comes from a probe on an image of the data's shape (8x8
    # grey here), not from torchmetrics' 3x299x299 one, which a Linear on 64 pixels cannot take
    values = {}
    for name, extractor in (("plain", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 12))),
                            ("declared", Declared(torch.nn.Flatten(), torch.nn.Linear(64, 12)))):  # fmt: skip
        torch.manual_seed(0)
        extractor[1].reset_parameters()
        fid = FIDCallback(extractor, num_real=32, num_fake=32, every_n_generator_steps=1, kid=True,
                          precision_recall=True, cache_dir=None)  # fmt: skip
        model = VanillaGAN(image_shape=(1, 8, 8), latent_dim=4, hidden_dims=(16,), max_generator_steps=1)
        trainer = Trainer(**tiny_trainer_kwargs(callbacks=[fid], default_root_dir=tmp_path))
        trainer.fit(model, RandomImages(n=32, image_shape=(1, 8, 8)))
        assert fid.fid.real_features_sum.shape == (12,)
        values[name] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert {"fid", "kid", "precision", "recall"} <= set(values["plain"])
    assert values["plain"] == values["declared"]


def test_a_user_extractor_that_fails_on_the_data_s_images_is_one_line():
    from lit_gans.cli import _user_error

    fid = FIDCallback(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 12)), cache_dir=None)
    model = VanillaGAN(image_shape=(1, 8, 8), latent_dim=4, hidden_dims=(16,), max_generator_steps=1)
    with pytest.raises(ValueError) as err:
        Trainer(**tiny_trainer_kwargs(callbacks=[fid])).fit(model, RandomImages(n=32, image_shape=(1, 8, 8)))
    message = str(err.value)
    assert "\n" not in message and _user_error(err.value) is err.value
    assert message.startswith("FIDCallback: the feature extractor Sequential fails on images of the data's shape (1, 8, 8)")
    assert "images in [-1, 1] to (N, d) features" in message

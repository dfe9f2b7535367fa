"""Monitoring a class-conditional model: every metric and picture uses fixed latents and fixed labels, never the
training noise stream, so a run with monitoring trains exactly like one without, repeated evaluations agree, and
``lit-gans evaluate`` reproduces what was logged (issue 18, item 1). The Classification Accuracy Score tests on
real images the generator never trained on (item 4)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from gan_testing import TINY, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer

from lit_gans import DCGAN, VanillaGAN
import lit_gans.callbacks.classifier as classifier_module
from lit_gans.callbacks import (
    ClassificationAccuracyScore,
    ConditionalAccuracy,
    DiversityMonitor,
    FIDCallback,
    GradientNormMonitor,
    SampleGrid,
    samples,
)
from lit_gans.cli import _user_error, main
from lit_gans.datamodules import MNISTDataModule
from lit_gans.datamodules.base import float_images
from lit_gans.evaluate import evaluate

SHARED_MNIST = Path(os.environ.get("LIT_GANS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / "mnist"

K = 3
SHAPE = (1, 28, 28)


class LinearClassifier(torch.nn.Module):
    """A fixed random linear classifier of 28x28 images into K classes (cheap; no training)."""

    test_accuracy = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(28 * 28, K, generator=torch.Generator().manual_seed(1)))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1).float() @ self.weight


def monitors() -> list:
    """Every monitoring callback, run at every generator step."""
    return [
        DiversityMonitor(num_samples=16, classifier="mnist", every_n_generator_steps=1),
        SampleGrid(every_n_generator_steps=1, num_images=8, nrow=4),
        FIDCallback("mnist", num_real=24, num_fake=24, batch_size=8, every_n_generator_steps=1, precision_recall=True),
        ConditionalAccuracy(LinearClassifier(), num_per_class=4, every_n_generator_steps=1),
        GradientNormMonitor(every_n_generator_steps=1),
    ]  # fmt: skip


MODELS = {
    "dcgan": lambda: DCGAN(num_classes=K, max_generator_steps=3, noise_seed=7, **{**TINY, "image_shape": SHAPE}),
    # D's dropout draws from the global RNG: monitoring must not draw from it either
    "mlp_with_dropout": lambda: VanillaGAN(
        image_shape=SHAPE, latent_dim=4, hidden_dims=(16,), discriminator_dropout=0.5, num_classes=K,
        conditioning="concat", max_generator_steps=3, noise_seed=7,
    ),
}


def train(callbacks: list, root, model: str = "dcgan"):
    torch.manual_seed(0)
    model = MODELS[model]()
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=callbacks, default_root_dir=root))
    trainer.fit(model, RandomImages(n=32, image_shape=SHAPE, num_classes=K))
    return model


@pytest.mark.parametrize("model", list(MODELS))
def test_monitoring_callbacks_leave_the_trained_weights_bitwise_unchanged(model, tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    plain = train([], tmp_path / "plain", model).state_dict()
    monitored = train(monitors(), tmp_path / "monitored", model).state_dict()
    assert list((tmp_path / "monitored" / "images").iterdir())  # the pictures were drawn
    assert plain.keys() == monitored.keys()
    changed = [name for name in plain if not torch.equal(plain[name], monitored[name])]
    assert not changed, f"monitoring changed {changed}"


def test_diversity_of_a_conditional_model_is_the_same_at_every_call(tmp_path):
    model = train([], tmp_path)
    monitor = DiversityMonitor(num_samples=16)
    trainer = model.trainer
    monitor.setup(trainer, model, "fit")
    first = monitor.evaluate(trainer, model)["diversity/ms_ssim_fake"]
    second = monitor.evaluate(trainer, model)["diversity/ms_ssim_fake"]
    assert torch.equal(first, second)


def test_the_pictures_of_a_conditional_model_are_the_same_at_every_call(tmp_path, monkeypatch):
    model = train([], tmp_path)
    drawn: dict[str, list] = {}
    monkeypatch.setattr(samples, "log_image", lambda trainer, module, key, grid, caption=None:
                        drawn.setdefault(key, []).append(grid))  # fmt: skip
    grid = SampleGrid(num_images=8, nrow=4)
    for _ in range(2):
        grid.run(model.trainer, model)
        grid._last_step = None
    assert set(drawn) == {"samples/grid", "samples/interpolation"}
    for key, (first, second) in drawn.items():
        assert torch.equal(first, second), key


def test_evaluate_reproduces_the_logged_diversity_of_a_conditional_model(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    diversity = dict(num_samples=32, classifier="mnist", every_n_generator_steps=2)
    config = {
        "seed_everything": 3,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
            "enable_model_summary": False, "max_epochs": -1,
            "callbacks": [
                {"class_path": "lit_gans.callbacks.DiversityMonitor", "init_args": diversity},
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": str(tmp_path / "ckpt"), "every_n_train_steps": 1}},
            ],
        },
        # an MLP generator: right after initialisation its samples already differ with their labels
        "model": {"class_path": "lit_gans.VanillaGAN", "init_args": {
            "latent_dim": 16, "hidden_dims": [32], "conditioning": "concat", "max_generator_steps": 2}},
        "data": {"class_path": "lit_gans.datamodules.MNISTDataModule",
                 "init_args": {"data_dir": str(mnist_dir), "download": False, "batch_size": 16}},
    }  # fmt: skip
    path = tmp_path / "cgan.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = main(["fit", "--config", str(path)])
    assert cli.model.num_classes == 10 and cli.model.generator_step == 2
    logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    ckpt = cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path
    results = evaluate(ckpt, str(path))
    for key in ("diversity/ms_ssim_fake", "diversity/modes_covered", "diversity/kl_classes"):
        print(f"conditional: logged {key} {logged[key]:.6f}, evaluated {results[key]:.6f}")
        assert results[key] == pytest.approx(logged[key], rel=1e-5), key
    assert evaluate(ckpt, str(path)) == results  # and again


# ---------------------------------------------------------------------------------------------- CAS's test images
def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (MNIST's format): magic ``0x08 << 8 | ndim``, the dimensions, the bytes."""
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist_5k_dir(mnist_dir, tmp_path_factory) -> Path:
    """Real MNIST as a user has it, training and test splits distinct: the 5,000 real training-split digits as the
    training files, the real 10k test split as the test files."""
    root = tmp_path_factory.mktemp("mnist_5k")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    with np.load(SHARED_MNIST / "mnist_train_5k.npz") as train:
        write_idx(raw / "train-images-idx3-ubyte", train["images"])
        write_idx(raw / "train-labels-idx1-ubyte", train["labels"])
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes((mnist_dir / "MNIST" / "raw" / name).read_bytes())
    return root


def rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def test_cas_tests_on_the_real_test_split_never_on_the_training_images(mnist_5k_dir, tmp_path, monkeypatch):
    scored = []
    accuracy = classifier_module.classifier_accuracy
    monkeypatch.setattr(classifier_module, "classifier_accuracy",
                        lambda c, images, labels, **k: scored.append((images, labels)) or accuracy(c, images, labels, **k))  # fmt: skip
    dm = MNISTDataModule(mnist_5k_dir, download=False, batch_size=16)  # val_split=0, the default
    model = DCGAN(num_classes=10, latent_dim=8, generator_width=4, discriminator_width=4, max_generator_steps=1)
    cas = ClassificationAccuracyScore(num_per_class=2, epochs=1)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[cas], default_root_dir=tmp_path))
    trainer.fit(model, dm)
    assert {"cas/accuracy", "cas/real_data_accuracy"} <= set(trainer.callback_metrics)
    assert len(scored) == 2  # the classifier on samples (CAS) and the one on as many real images (its ceiling)
    test_images, test_labels = classifier_module.labelled_tensors(dm.test_split())
    assert len(test_images) == 10_000
    for images, labels in scored:
        assert torch.equal(images, test_images) and torch.equal(labels, test_labels)
    assert not rows(test_images) & rows(float_images(dm.train_set))  # not one image the generator trained on


def test_cas_without_a_test_split_tests_on_the_validation_split_or_is_refused(tmp_path):
    model = DCGAN(num_classes=K, max_generator_steps=1, **TINY)
    data = RandomImages(n=48, num_classes=K)
    with pytest.raises(ValueError) as err:
        Trainer(**tiny_trainer_kwargs(callbacks=[ClassificationAccuracyScore(num_per_class=2, epochs=1)])).fit(model, data)
    message = str(err.value)
    assert "\n" not in message and _user_error(err.value) is err.value  # `lit-gans: error: <message>`
    assert message.startswith("ClassificationAccuracyScore tests on real images the generator never trained on")
    assert "RandomImages has no test split and no validation split: set the data's val_split" in message
    assert model.generator_step == 0  # refused before training, not after it

    held_out = RandomImages(n=48, num_classes=K)
    held_out.val_split = 16
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[ClassificationAccuracyScore(num_per_class=2, epochs=1)]))
    trainer.fit(DCGAN(num_classes=K, max_generator_steps=1, **TINY), held_out)
    assert len(held_out.val_set) == 16 and 0 <= float(trainer.callback_metrics["cas/accuracy"]) <= 1


def test_cas_options_it_does_not_take_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^ClassificationAccuracyScore: options \['held_out'\] are not understood"):
        ClassificationAccuracyScore(options={"held_out": 0.1})

"""Metrics of class-conditional generators, each against its definition on real MNIST: conditional accuracy (a hand
count of the classifier's verdicts), the data classifier and its cache, classifier-feature FID, intra-class FID (the
mean of torchmetrics' per-class FIDs) and the Classification Accuracy Score; then all of them in a real run."""

from __future__ import annotations

import copy
import logging
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from gan_testing import ProjectionFeatures, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer
from torchmetrics.image.fid import FrechetInceptionDistance

import lit_gans.callbacks.classifier as classifier_module
import lit_gans.callbacks.fid as fid_module
from lit_gans import DCGAN, VanillaGAN
from lit_gans.callbacks import (
    ClassificationAccuracyScore,
    ConditionalAccuracy,
    FIDCallback,
    MNISTClassifier,
    classification_accuracy_score,
    data_classifier,
)
from lit_gans.callbacks.classifier import (
    classifier_accuracy,
    fit_classifier,
    generate_labelled,
    held_out_split,
    is_mnist_digits,
    labelled_tensors,
)
from lit_gans.callbacks.conditional import metric_keys
from lit_gans.datamodules import MNISTDataModule
from lit_gans.datamodules.base import float_images

#: a data classifier that trains in about a second on two cores
SMALL = dict(max_images=2000, epochs=4, batch_size=32)


class ReplayConditional(torch.nn.Module):
    """Stands in for a conditional GAN (the model API: ``num_classes``, ``sample(z=, labels=)``, ``sample_latent``,
    ``generator_step``, ``device``) whose samples are real digits: latent i gives image ``i mod n`` of the requested
    class, or of the whole set when ``follow_labels=False`` (a generator that ignores its labels)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, follow_labels: bool = True) -> None:
        super().__init__()
        self.images, self.follow_labels = images, follow_labels
        self.num_classes = int(labels.max()) + 1
        self.pools = [images[labels == c] for c in range(self.num_classes)]
        self.device, self.generator_step = torch.device("cpu"), 0

    def sample_latent(self, n, generator=None):
        return torch.randint(0, 2**20, (n, 1), generator=generator).float()

    def sample(self, n=None, z=None, labels=None, ema=None):
        index = z[:, 0].long()
        if not self.follow_labels:
            return self.images[index % len(self.images)]
        labels = torch.as_tensor(labels).long().expand(len(index))
        return torch.stack([self.pools[int(c)][int(i) % len(self.pools[int(c)])] for i, c in zip(index, labels)])


@pytest.fixture(autouse=True)
def _one_thread():
    """The classifiers train 20x slower with two threads on two cores that other processes also use (conftest's
    _isolate restores the thread count)."""
    torch.set_num_threads(1)


def fake_trainer(dm):
    return SimpleNamespace(
        datamodule=dm, global_rank=0, world_size=1, is_global_zero=True, callback_metrics={}, loggers=[], global_step=0,
        strategy=SimpleNamespace(reduce=lambda t, reduce_op: t, barrier=lambda *a: None, broadcast=lambda o, src=0: o),
    )


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    dm = MNISTDataModule(mnist_dir, download=False)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def with_val(mnist_dir):
    """Training on MNIST's test split (``train=False``): no other test split, so the validation split is held out."""
    dm = MNISTDataModule(mnist_dir, train=False, download=False, val_split=0.2)
    dm.setup()
    return dm


def replay(dm, follow_labels=True):
    return ReplayConditional(*labelled_tensors(dm.train_set), follow_labels=follow_labels)


# ---------------------------------------------------------------------------------------------- conditional accuracy
def test_conditional_accuracy_is_the_hand_count_of_the_classifier_verdicts(mnist):
    digits = MNISTClassifier.pretrained()
    for follow in (True, False):
        model = replay(mnist, follow)
        cb = ConditionalAccuracy(classifier="auto", num_per_class=30, seed=7)
        cb.setup(fake_trainer(mnist), model, "fit")
        assert cb.classifier_name == "mnist"  # MNIST digits: the shipped classifier
        metrics = cb.evaluate(fake_trainer(mnist), model)
        labels = torch.arange(10).repeat_interleave(30)
        samples = model.sample(z=model.sample_latent(300, generator=torch.Generator().manual_seed(7)), labels=labels)
        hits = digits.logits(samples).argmax(1) == labels
        assert metrics["conditional/accuracy"].item() == pytest.approx(hits.float().mean().item(), abs=1e-6)
        for c in range(10):
            expected = hits[labels == c].float().mean().item()
            assert metrics[f"conditional/accuracy_{c}"].item() == pytest.approx(expected, abs=1e-6)
        assert metrics["conditional/classifier_real_accuracy"].item() == pytest.approx(digits.test_accuracy)
        if follow:  # real digits of the requested class: about the classifier's own accuracy
            assert metrics["conditional/accuracy"] > 0.9
        else:  # labels ignored: chance
            assert metrics["conditional/accuracy"] < 0.25


def test_a_trained_classifier_a_metric_name_and_many_classes(mnist, tmp_path):
    model = replay(mnist)
    cb = ConditionalAccuracy(
        classifier="train", metric_name="legibility", num_per_class=20, max_logged_classes=5, cache_dir=tmp_path,
        classifier_options=SMALL,
    )
    trainer = fake_trainer(mnist)
    cb.setup(trainer, model, "fit")
    cb.run(trainer, model)
    metrics = trainer.callback_metrics
    names = ("accuracy", "classifier_real_accuracy", "accuracy_worst", "accuracy_best")
    assert set(metrics) == {f"legibility/{k}" for k in names}
    cached = data_classifier(mnist, tmp_path, **SMALL)  # the same classifier, from the cache
    assert metrics["legibility/classifier_real_accuracy"].item() == pytest.approx(cached.held_out_accuracy)
    assert cached.held_out_accuracy > 0.85
    assert metrics["legibility/accuracy_worst"] <= metrics["legibility/accuracy"] <= metrics["legibility/accuracy_best"]
    assert metrics["legibility/accuracy"] > 0.8


def test_class_names_become_distinct_logger_keys():
    assert metric_keys(["a b", "a/b", "字", "", "a_b", "x.y-z"]) == ["a_b", "a_b_1", "字", "3", "a_b_4", "x.y-z"]


def test_unconditional_models_and_bad_arguments_are_refused(mnist):
    plain, trainer = DCGAN(generator_width=4, discriminator_width=4), fake_trainer(mnist)
    for cb, who in (
        (ConditionalAccuracy(), "ConditionalAccuracy"),
        (ClassificationAccuracyScore(), "ClassificationAccuracyScore"),
        (FIDCallback("mnist", intra_class=True), r"FIDCallback\(intra_class=True\)"),
    ):
        with pytest.raises(ValueError, match=rf"^{who} needs a class-conditional model, and DCGAN has num_classes=0$"):
            cb.setup(trainer, plain, "fit")
    for kwargs, match in (
        (dict(classifier="inception"), "classifier='inception' is not supported"),
        (dict(classifier=torch.nn.Linear(2, 2)), "has no `logits"),
        (dict(metric_name="a/b"), "metric_name='a/b'"),
        (dict(num_per_class=0), "num_per_class=0"),
    ):
        with pytest.raises(ValueError, match=match):
            ConditionalAccuracy(**kwargs)
    with pytest.raises(ValueError, match="feature_extractor='clip' is not supported"):
        FIDCallback("clip")
    with pytest.raises(ValueError, match="set intra_class=True"):
        FIDCallback("mnist", num_fake_per_class=10)
    with pytest.raises(ValueError, match="needs the trainer's datamodule"):
        FIDCallback("classifier").setup(None, None, "fit")


# ---------------------------------------------------------------------------------------------- the data classifier
def test_the_data_classifier_is_cached_by_data_identity_and_options(mnist, mnist_dir, tmp_path, monkeypatch):
    trained = []
    original = classifier_module.train_classifier
    monkeypatch.setattr(classifier_module, "train_classifier", lambda *a, **k: trained.append(1) or original(*a, **k))
    first = data_classifier(mnist, tmp_path, **SMALL)
    assert trained == [1] and [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.glob("classifier-*.pt")]
    assert len(list(tmp_path.iterdir())) == 1  # the weights, no temporary file left
    # the held-out accuracy is that of the fixed held-out part of the training images
    images, labels = (t[: SMALL["max_images"]] for t in labelled_tensors(mnist.train_set))
    held = held_out_split(len(images), 0.1, 0)[1]
    assert first.held_out_accuracy == pytest.approx(classifier_accuracy(first, images[held], labels[held]))

    second = data_classifier(mnist, tmp_path, **SMALL)
    assert trained == [1]  # a hit: loaded, not retrained
    assert second.held_out_accuracy == first.held_out_accuracy
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))

    other = MNISTDataModule(mnist_dir, download=False, val_split=0.1)  # another data identity: other training images
    data_classifier(other, tmp_path, **SMALL)
    assert trained == [1, 1]
    data_classifier(mnist, tmp_path, **{**SMALL, "epochs": 1})  # another recipe
    assert trained == [1, 1, 1] and len(list(tmp_path.glob("classifier-*.pt"))) == 3


def test_the_shipped_classifier_is_only_for_mnist_digits(mnist_dir):
    assert is_mnist_digits(MNISTDataModule(mnist_dir)) and is_mnist_digits(MNISTDataModule(mnist_dir, image_size=32))
    assert not is_mnist_digits(MNISTDataModule(mnist_dir, dataset="fashion_mnist"))
    assert not is_mnist_digits(SimpleNamespace(num_classes=10, image_shape=(3, 32, 32)))
    with pytest.raises(ValueError, match="needs labelled data with at least 2 classes"):
        data_classifier(SimpleNamespace(num_classes=None))


def test_auto_scores_ten_classes_of_grey_28px_images_that_are_not_digits_with_their_own_classifier(mnist, tmp_path):
    # ten class folders of 1x28x28 images (here the digits inverted: clothing, letters, anything): not MNIST
    from PIL import Image

    from lit_gans.datamodules import ImageFolderDataModule

    images, labels = labelled_tensors(mnist.train_set)
    for c in range(10):
        (tmp_path / "folders" / f"kind{c}").mkdir(parents=True)
        for i, image in enumerate(images[labels == c][:8]):
            pixels = ((1 - image[0]) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "folders" / f"kind{c}" / f"{i}.png")
    data = ImageFolderDataModule(tmp_path / "folders", labels=True, channels=1, image_size=28, batch_size=8,
                                 cache_dir=tmp_path / "cache")  # fmt: skip
    assert (data.num_classes, data.image_shape) == (10, (1, 28, 28))
    accuracy = ConditionalAccuracy(classifier="auto", num_per_class=2, every_n_generator_steps=1,
                                   cache_dir=tmp_path / "classifier", classifier_options=dict(epochs=1))  # fmt: skip
    model = DCGAN(num_classes=10, latent_dim=8, generator_width=4, discriminator_width=4, max_generator_steps=1)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[accuracy], default_root_dir=tmp_path))
    trainer.fit(model, data)
    assert accuracy.classifier_name == "train"  # a classifier of these folders, not the digit classifier
    logged = float(trainer.callback_metrics["conditional/classifier_real_accuracy"])
    assert logged == pytest.approx(accuracy.classifier.held_out_accuracy)
    assert not is_mnist_digits(data) and not is_mnist_digits(SimpleNamespace(num_classes=10, image_shape=(1, 28, 28)))


# ---------------------------------------------------------------------------------------------- FID variants
def test_intra_class_fid_is_the_mean_of_torchmetrics_per_class_fids(mnist, tmp_path, monkeypatch):
    digits = MNISTClassifier.pretrained()
    options = dict(num_real=200, num_fake=200, intra_class=True, num_fake_per_class=40, num_real_per_class=60,
                   cache_dir=tmp_path, seed=5)  # fmt: skip
    values = {}
    for follow in (True, False):
        model = replay(mnist, follow)
        cb = FIDCallback("mnist", **options)
        cb.setup(fake_trainer(mnist), model, "fit")
        results = cb.evaluate(fake_trainer(mnist), model)
        assert set(results) == {"fid", "fid_intra_class"}
        values[follow] = results["fid_intra_class"].item()
        # by definition: FID(real images of class c, fakes generated for class c), averaged over c
        images, labels = labelled_tensors(mnist.train_set)
        z = model.sample_latent(400, generator=torch.Generator().manual_seed(5 + 1))
        expected = []
        for c in range(10):
            fid = FrechetInceptionDistance(feature=digits, normalize=True)
            fid.update(images[labels == c][:60], real=True)
            fid.update(model.sample(z=z[40 * c : 40 * (c + 1)], labels=c), real=False)
            expected.append(fid.compute().item())
        assert values[follow] == pytest.approx(sum(expected) / 10, rel=1e-4)
    assert values[False] > 5 * values[True]  # ignoring labels: every class's fakes are all digits
    assert len(list(tmp_path.glob("real-mnist-intra10x60-*.pt"))) == 1
    # the per-class real statistics come from the cache the next time
    monkeypatch.setattr(fid_module, "labelled_tensors", lambda *a: pytest.fail("the cache was not used"))
    cb = FIDCallback("mnist", **options)
    cb.setup(fake_trainer(mnist), replay(mnist), "fit")
    again = cb.evaluate(fake_trainer(mnist), replay(mnist))["fid_intra_class"].item()
    assert again == pytest.approx(values[True], rel=1e-6)


def test_classifier_feature_fid_names_its_feature_space(mnist, tmp_path, caplog):
    model, trainer = replay(mnist), fake_trainer(mnist)
    cb = FIDCallback("classifier", num_real=300, num_fake=300, cache_dir=tmp_path / "fid",
                     classifier_cache_dir=tmp_path / "classifier", classifier_options=SMALL)  # fmt: skip
    with caplog.at_level(logging.INFO):
        cb.setup(trainer, model, "fit")
    assert "feature space of a classifier" in caplog.text and "logged as fid_classifier" in caplog.text
    assert cb.fid_key == "fid_classifier"
    cb.run(trainer, model)
    assert set(trainer.callback_metrics) == {"fid_classifier", "best_fid_classifier"}
    assert list((tmp_path / "fid").glob("real-classifier-300-*.pt"))
    # by definition: torchmetrics' FID on the data classifier's penultimate features
    features = data_classifier(mnist, tmp_path / "classifier", **SMALL)
    fid = FrechetInceptionDistance(feature=features, normalize=True)
    fid.update(float_images(mnist.train_set, slice(None, 300)), real=True)
    z = model.sample_latent(300, generator=torch.Generator().manual_seed(cb.seed))
    fid.update(model.sample(z=z, labels=cb.fake_labels(model, 10)), real=False)
    assert trainer.callback_metrics["fid_classifier"].item() == pytest.approx(fid.compute().item(), rel=1e-4)


# ---------------------------------------------------------------------------------------------- CAS
def test_classification_accuracy_score_against_its_definition(with_val):
    recipe = dict(num_per_class=100, epochs=8, seed=3)
    good = classification_accuracy_score(replay(with_val), with_val, **recipe)
    assert set(good) == {"cas", "real_data_accuracy"}
    assert good["real_data_accuracy"] > 0.85
    assert abs(good["cas"] - good["real_data_accuracy"]) < 0.08  # samples as good as real digits
    # by definition: a classifier trained on the labelled samples only, scored on the real test images (val_set)
    fake, labels = generate_labelled(replay(with_val), 10, 100, seed=3)
    on_fakes = fit_classifier(fake, labels, 10, epochs=8, seed=3)
    assert good["cas"] == pytest.approx(classifier_accuracy(on_fakes, *labelled_tensors(with_val.val_set)), abs=1e-6)
    ignoring = classification_accuracy_score(
        replay(with_val, follow_labels=False), with_val, real_data_accuracy=good["real_data_accuracy"], **recipe
    )
    assert ignoring["cas"] < 0.2 and ignoring["real_data_accuracy"] == good["real_data_accuracy"]


# ---------------------------------------------------------------------------------------------- a real run
def test_a_conditional_dcgan_run_logs_every_conditional_metric(mnist_dir, tmp_path):
    dm = MNISTDataModule(mnist_dir, download=False, batch_size=16)
    model = DCGAN(num_classes=10, generator_width=4, discriminator_width=4, latent_dim=8)
    callbacks = [
        ConditionalAccuracy(num_per_class=4, every_n_generator_steps=2),
        FIDCallback("classifier", num_real=50, num_fake=20, intra_class=True, num_fake_per_class=2,
                    num_real_per_class=5, every_n_generator_steps=2, cache_dir=tmp_path / "fid",
                    classifier_cache_dir=tmp_path / "classifier", classifier_options=dict(max_images=500, epochs=1)),
        ClassificationAccuracyScore(num_per_class=5, epochs=1),
    ]  # fmt: skip
    trainer = Trainer(**tiny_trainer_kwargs(max_steps=4, default_root_dir=tmp_path), callbacks=callbacks)
    trainer.fit(model, dm)
    assert model.generator_step == 2
    keys = {"conditional/accuracy", "conditional/accuracy_0", "conditional/accuracy_9", "conditional/classifier_real_accuracy",
            "fid_classifier", "best_fid_classifier", "fid_classifier_intra_class", "cas/accuracy",
            "cas/real_data_accuracy"}  # fmt: skip
    assert keys <= set(trainer.callback_metrics), sorted(trainer.callback_metrics)
    assert all(torch.isfinite(trainer.callback_metrics[k]) for k in keys)


def test_under_ddp_the_conditional_metrics_equal_the_single_process_ones(tmp_path):
    # learning rate 0 and no BatchNorm: the generator is the same in both runs, so are its samples
    sgd = partial(torch.optim.SGD, lr=0.0)
    model = VanillaGAN(image_shape=(1, 8, 8), latent_dim=4, hidden_dims=(16,), max_generator_steps=2, num_classes=4,
                       generator_optimizer=sgd, discriminator_optimizer=sgd)  # fmt: skip
    classifier_dir = tmp_path / "classifier"  # the DDP run trains it (rank 0, the other waits), the single loads it

    def fit(model, **kwargs):
        callbacks = [
            ConditionalAccuracy(classifier="train", num_per_class=8, every_n_generator_steps=2,
                                cache_dir=classifier_dir, classifier_options=dict(epochs=1, batch_size=8)),
            FIDCallback(ProjectionFeatures(), num_real=64, num_fake=32, intra_class=True, num_fake_per_class=8,
                        num_real_per_class=16, every_n_generator_steps=2, batch_size=4),
            ClassificationAccuracyScore(num_per_class=8, epochs=1, options=dict(batch_size=8)),
        ]  # fmt: skip
        trainer = Trainer(**tiny_trainer_kwargs(callbacks=callbacks, default_root_dir=str(tmp_path), **kwargs))
        data = RandomImages(n=80, image_shape=(1, 8, 8), batch_size=4, num_classes=4)
        data.val_split = 16  # CAS's real test images, held out of training
        trainer.fit(model, data)
        return trainer.callback_metrics

    ddp = fit(copy.deepcopy(model), devices=2, strategy="ddp_spawn_find_unused_parameters_true")
    assert len(list(classifier_dir.glob("classifier-*.pt"))) == 1
    single = fit(model)
    for key in ("conditional/accuracy", "conditional/accuracy_0", "conditional/accuracy_3", "conditional/classifier_real_accuracy"):
        assert float(ddp[key]) == pytest.approx(float(single[key]), abs=1e-6), key
    assert float(ddp["fid_intra_class"]) == pytest.approx(float(single["fid_intra_class"]), rel=1e-4)
    for key in ("cas/accuracy", "cas/real_data_accuracy"):  # computed by rank 0 alone, broadcast
        assert 0 <= float(ddp[key]) <= 1 and float(ddp[key]) == pytest.approx(float(single[key]), abs=0.1), key

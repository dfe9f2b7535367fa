"""DiversityMonitor: MS-SSIM separates a collapsed generator from real data; modes and KL on digits."""

from __future__ import annotations

import pytest
import torch
from gan_testing import RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer

from lit_gans import DCGAN
from lit_gans.callbacks import DiversityMonitor
from lit_gans.callbacks.diversity import mode_statistics, ms_ssim_settings, pairwise_ms_ssim
from lit_gans.callbacks.classifier import labelled_tensors
from lit_gans.callbacks.features import MNISTClassifier
from lit_gans.datamodules import MNISTDataModule
from lit_gans.datamodules.base import float_images


@pytest.mark.parametrize("size", [28, 32, 64, 128])
def test_ms_ssim_works_at_every_resolution(size):
    betas, kernel = ms_ssim_settings(size)
    assert abs(sum(betas) - 1) < 1e-9 and kernel % 2 == 1 and kernel >= 5
    x = torch.rand(8, 3, size, size) * 2 - 1
    assert 0 <= pairwise_ms_ssim(x) < 0.5
    assert pairwise_ms_ssim(x[:1].repeat(8, 1, 1, 1)) == pytest.approx(1.0)


def test_collapsed_generator_is_separated_from_real_digits(mnist_dir):
    dm = MNISTDataModule(mnist_dir, download=False)
    dm.setup()
    digits = float_images(dm.train_set, slice(None, 400))
    real = pairwise_ms_ssim(digits)
    collapsed = pairwise_ms_ssim(digits[:1].repeat(400, 1, 1, 1))
    nearly = pairwise_ms_ssim(digits[:3].repeat(134, 1, 1, 1)[:400])  # three modes only
    assert real < 0.3 and collapsed == pytest.approx(1.0) and real < nearly < collapsed


def test_mode_statistics_count_covered_classes_and_kl():
    real = torch.full((10,), 100.0)
    covered, kl = mode_statistics(real.clone(), real)
    assert covered == 10 and kl.abs() < 1e-6
    one_mode = torch.zeros(10)
    one_mode[3] = 1000
    covered, kl = mode_statistics(one_mode, real)
    assert covered == 1 and kl > 1.5  # log(10) would be the limit without smoothing


def test_classifier_counts_modes_of_real_digits(mnist_dir):
    dm = MNISTDataModule(mnist_dir, download=False)
    dm.setup()
    images, labels = labelled_tensors(dm.train_set)
    logits = MNISTClassifier.pretrained().logits(images[:2000])
    assert (logits.argmax(1) == labels[:2000]).float().mean() > 0.95
    counts = torch.bincount(logits.argmax(1), minlength=10).float()
    covered, kl = mode_statistics(counts, torch.bincount(labels[:2000], minlength=10).float())
    assert covered == 10 and kl < 0.01


class Collapsed(DCGAN):
    """A generator that ignores z: every sample is the same image."""

    def sample(self, n=None, z=None):
        return super().sample(z=torch.zeros_like(z))


def test_collapse_flag_and_stop_on_collapse():
    model = Collapsed(image_shape=(1, 32, 32), latent_dim=4, generator_width=4, discriminator_width=4)
    monitor = DiversityMonitor(num_samples=64, every_n_generator_steps=1, stop_on_collapse=True)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[monitor]))  # no budget: only the collapse stops it
    with pytest.warns(UserWarning, match="Possible mode collapse at generator step 1"):
        trainer.fit(model, RandomImages(n=64, image_shape=(1, 32, 32)))
    assert model.generator_step == 1 and monitor.collapsed_at == 1
    metrics = trainer.callback_metrics
    assert metrics["diversity/collapse"] == 1 and metrics["diversity/ms_ssim_fake"] > 0.99
    assert metrics["diversity/ms_ssim_real"] < 0.1

"""The callbacks under 2-process CPU DDP (ddp_spawn, gloo): FID equals the single-process value on the same
samples, diversity, gradient norms and samples run on every rank, nothing deadlocks."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from gan_testing import ProjectionFeatures, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer

from lit_gans import VanillaGAN
from lit_gans.callbacks import DiversityMonitor, FIDCallback, GradientNormMonitor, SampleGrid


def frozen_gan() -> VanillaGAN:
    # learning rate 0 and no BatchNorm: the generator is the same in both runs, so are its samples
    sgd = partial(torch.optim.SGD, lr=0.0)
    return VanillaGAN(image_shape=(1, 8, 8), latent_dim=4, hidden_dims=(16,), max_generator_steps=2,
                      generator_optimizer=sgd, discriminator_optimizer=sgd)


def callbacks():
    return [
        FIDCallback(ProjectionFeatures(), num_real=64, num_fake=64, every_n_generator_steps=2, batch_size=16,
                    precision_recall=True, precision_recall_neighborhood=40),  # > 32 samples on one rank
        DiversityMonitor(num_samples=16, every_n_generator_steps=2),
        GradientNormMonitor(every_n_generator_steps=1),
        SampleGrid(every_n_generator_steps=2),
    ]


def fit(model, tmp_path, **kwargs):
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=callbacks(), default_root_dir=str(tmp_path), **kwargs))
    trainer.fit(model, RandomImages(n=64, image_shape=(1, 8, 8), batch_size=4))
    return trainer.callback_metrics


def test_fid_under_ddp_equals_single_process(tmp_path):
    model = frozen_gan()
    single = fit(copy.deepcopy(model), tmp_path / "single")
    ddp = fit(model, tmp_path / "ddp", devices=2, strategy="ddp_spawn_find_unused_parameters_true")
    assert float(ddp["fid"]) == pytest.approx(float(single["fid"]), rel=1e-4)
    # k = 40 needs more samples than one rank's 32: the values exist only if both ranks' features were gathered
    for key in ("precision", "recall"):
        assert float(ddp[key]) == float(single[key]), key
    for key in ("diversity/ms_ssim_fake", "diversity/ms_ssim_real", "grad_norm/generator", "grad_norm/discriminator"):
        assert key in ddp and torch.isfinite(ddp[key]), key
    assert list((tmp_path / "ddp" / "images" / "samples_grid").glob("*.png"))  # written once, by rank 0

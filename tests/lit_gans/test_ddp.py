"""Every variant trains under 2-process CPU DDP (ddp_spawn, gloo) and ends with identical weights on both ranks."""

from __future__ import annotations

import pytest
from gan_testing import RandomImages, RankSyncCheck, tiny_trainer_kwargs
from lightning.pytorch import Trainer

from lit_gans import DCGAN, DCGANSELU, LSGAN, WGAN, WGANGP, InfoGAN, VanillaGAN
from lit_gans.augment import AdaptiveAugment
from lit_gans.objectives import RaLSGANLoss, RaSGANLoss, RSGANLoss
from lit_gans.regularizers import R1, R2, LeCam

CONV = dict(image_shape=(1, 8, 8), generator_width=4, discriminator_width=4, max_generator_steps=2)
VARIANTS = {
    "vanilla": lambda: VanillaGAN(image_shape=(1, 8, 8), latent_dim=8, hidden_dims=(16,), max_generator_steps=2),
    "dcgan": lambda: DCGAN(latent_dim=8, n_critic=2, **CONV),
    "dcgan_selu": lambda: DCGANSELU(latent_dim=8, **CONV),
    "wgan": lambda: WGAN(latent_dim=8, n_critic=2, **CONV),
    "wgan_gp": lambda: WGANGP(latent_dim=8, n_critic=2, **CONV),
    "lsgan": lambda: LSGAN(latent_dim=8, **CONV),
    "infogan": lambda: InfoGAN(noise_dim=4, categorical_dim=3, continuous_dim=1, q_hidden_dim=8, **CONV),
    # the fast path's G graph spans the D update: DDP must still reduce each backward's gradients
    "wgan_gp_reused_fake": lambda: WGANGP(latent_dim=8, reuse_fake_for_generator=True, **CONV),
    # the averaged generator is outside every optimizer: DDP must neither need nor desynchronize it
    "dcgan_generator_ema": lambda: DCGAN(latent_dim=8, generator_ema_decay=0.5, **CONV),
    # power-iteration vectors are buffers updated in every forward
    "wgan_gp_spectral_norm": lambda: WGANGP(latent_dim=8, discriminator_spectral_norm=True, **CONV),
    "dcgan_diff_augment": lambda: DCGAN(latent_dim=8, diff_augment="color,translation,cutout", **CONV),
    "dcgan_r1_penalty": lambda: DCGAN(latent_dim=8, discriminator_norm="none", r1_penalty_weight=10.0, **CONV),
    # stateful parts: ADA's p from r_t summed over the ranks, LeCam's averages from means over them, a lazy R1
    "dcgan_ada_lecam_lazy_r1": lambda: DCGAN(
        latent_dim=8, discriminator_norm="none", augment=AdaptiveAugment(interval=1, speed_images=100),
        regularizers=[LeCam(0.3), R1(1.0, interval=2)], **CONV,
    ),
    "r3gan_rsgan_r1_r2": lambda: DCGAN(
        latent_dim=8, architecture="r3gan", objective=RSGANLoss(), regularizers=[R1(0.1), R2(0.1)],
        image_shape=(1, 8, 8), generator_width=16, discriminator_width=16, max_generator_steps=3,
    ),
    # the G update also runs D on the real batch
    "dcgan_rasgan": lambda: DCGAN(latent_dim=8, objective=RaSGANLoss(), n_critic=2, **CONV),
    "dcgan_ralsgan_reused_fake": lambda: DCGAN(latent_dim=8, objective=RaLSGANLoss(), reuse_fake_for_generator=True, **CONV),
    # class-conditional: labels reach both networks; each rank generates for its own labels
    "dcgan_projection": lambda: DCGAN(latent_dim=8, num_classes=4, **CONV),
    "dcgan_acgan_reused_fake": lambda: DCGAN(latent_dim=8, num_classes=4, conditioning="auxiliary",
                                             reuse_fake_for_generator=True, **CONV),  # fmt: skip
    "wgan_gp_resnet_projection": lambda: WGANGP(latent_dim=8, num_classes=4, architecture="resnet", **CONV),
}


def fit_ddp(model, tmp_path, strategy="ddp_spawn_find_unused_parameters_true"):
    trainer = Trainer(
        **tiny_trainer_kwargs(accelerator="cpu", devices=2, strategy=strategy, callbacks=[RankSyncCheck(str(tmp_path))])
    )
    trainer.fit(model, RandomImages(n=64, image_shape=(1, 8, 8), batch_size=4, num_classes=model.num_classes or None))
    assert sorted(p.name for p in tmp_path.glob("rank*.ok")) == ["rank0.ok", "rank1.ok"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_trains_under_ddp_with_ranks_in_sync(variant, tmp_path):
    fit_ddp(VARIANTS[variant](), tmp_path)


def test_plain_ddp_strategy_is_made_to_work(tmp_path):
    # without find_unused_parameters this fails with "parameters that were not used in producing the loss"
    # (Lightning-AI/pytorch-lightning#20328); the engine turns the option on at setup
    fit_ddp(DCGAN(latent_dim=8, **CONV), tmp_path, strategy="ddp_spawn")

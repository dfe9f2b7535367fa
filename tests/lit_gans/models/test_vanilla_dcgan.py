"""VanillaGAN and DCGAN: the references' defaults, and a few real training steps on real MNIST."""

import pytest
import torch
from gan_testing import tiny_trainer_kwargs
from lightning.pytorch import Trainer
from torch import nn

from lit_gans import DCGAN, VanillaGAN
from lit_gans.datamodules import MNISTDataModule
from lit_gans.objectives import NonSaturatingLoss


def test_vanilla_defaults_are_the_reference_mlp():
    m = VanillaGAN()
    g = [(l.in_features, l.out_features) for l in m.generator.modules() if isinstance(l, nn.Linear)]
    d = [(l.in_features, l.out_features) for l in m.discriminator.modules() if isinstance(l, nn.Linear)]
    assert g == [(100, 128), (128, 784)] and d == [(784, 128), (128, 1)]
    assert m.n_critic == 1 and isinstance(m.objective, NonSaturatingLoss)


def test_dcgan_defaults_follow_radford():
    m = DCGAN(image_shape=(3, 64, 64))
    g_opt, d_opt = m.configure_optimizers()
    assert all(isinstance(o, torch.optim.Adam) and o.defaults["lr"] == 2e-4 and o.defaults["betas"][0] == 0.5 for o in (g_opt, d_opt))
    assert m.n_critic == 1 and isinstance(m.objective, NonSaturatingLoss)
    assert m.sample(2).shape == (2, 3, 64, 64)


def test_dcgan_reference_ttur_learning_rates():
    m = DCGAN(
        discriminator_optimizer=lambda p: torch.optim.Adam(p, lr=5e-5, betas=(0.5, 0.999)),
        generator_optimizer=lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999)),
    )
    g_opt, d_opt = m.configure_optimizers()
    assert (g_opt.defaults["lr"], d_opt.defaults["lr"]) == (2e-4, 5e-5)


@pytest.mark.parametrize(
    "model",
    [
        lambda: VanillaGAN(max_generator_steps=20),
        lambda: DCGAN(generator_width=8, discriminator_width=8, n_critic=2, max_generator_steps=10),
    ],
    ids=["vanilla", "dcgan"],
)
def test_fits_real_mnist_through_trainer_fit(mnist_dir, model):
    # the user script path of the README
    gan = model()
    dm = MNISTDataModule(mnist_dir, download=False, batch_size=32)
    before = [p.detach().clone() for p in gan.generator.parameters()]
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(gan, dm)
    assert gan.generator_step == gan.max_generator_steps
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.generator.parameters()))
    metrics = trainer.callback_metrics
    assert all(torch.isfinite(metrics[k]) for k in ("train/d_loss", "train/g_loss"))
    assert 0 <= metrics["train/d_real"] <= 1 and 0 <= metrics["train/d_fake"] <= 1


def test_selu_preset_refuses_other_norms_or_activations():
    from lit_gans import DCGANSELU

    with pytest.raises(ValueError, match="generator_norm is fixed by DCGANSELU"):
        DCGANSELU(generator_norm="batch", generator_width=4, discriminator_width=4)
    model = DCGANSELU(generator_width=4, discriminator_width=4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, torch.nn.SELU) for m in model.generator.modules())
    assert "generator_norm" not in model.hparams  # so load_from_checkpoint does not pass it back

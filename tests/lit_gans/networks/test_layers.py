"""Shared layers: spectral normalization of a discriminator."""

import torch
from gan_testing import RandomImages, TINY, tiny_trainer_kwargs
from lightning.pytorch import Trainer, seed_everything

from lit_gans import DCGAN, WGANGP
from lit_gans.networks import DCGANDiscriminator, spectral_norm_
from lit_gans.objectives import HingeLoss


def weighted_layers(net):
    return [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]


def largest_singular_value(layer) -> float:
    return float(torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2))


def test_every_discriminator_layer_ends_with_spectral_norm_one():
    d = spectral_norm_(DCGANDiscriminator((1, 16, 16), width=8, norm="none"))
    with torch.no_grad():
        for layer in weighted_layers(d):  # far from norm 1 to begin with
            layer.weight_orig.mul_(7.0)
        for _ in range(100):  # one power iteration per training forward
            d(torch.randn(4, 1, 16, 16))
    d.eval()
    d(torch.randn(1, 1, 16, 16))  # recomputes each weight from the final vectors, without another iteration
    for layer in weighted_layers(d):
        assert abs(largest_singular_value(layer) - 1) < 2e-2


def test_engine_option_normalizes_d_only_and_trains_with_the_hinge_loss(tmp_path):
    seed_everything(0)
    model = DCGAN(discriminator_spectral_norm=True, discriminator_norm="none", objective=HingeLoss(), max_generator_steps=4, **TINY)
    assert all(hasattr(m, "weight_orig") for m in weighted_layers(model.discriminator))
    assert not any(hasattr(m, "weight_orig") for m in weighted_layers(model.generator))
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(model, RandomImages(n=32))
    assert model.generator_step == 4
    trainer.save_checkpoint(tmp_path / "sn.ckpt")
    loaded = DCGAN.load_from_checkpoint(tmp_path / "sn.ckpt", objective=HingeLoss())
    for name, value in model.state_dict().items():  # power-iteration vectors included
        assert torch.equal(loaded.state_dict()[name], value), name


def test_gradient_penalty_works_through_spectral_norm():
    seed_everything(0)
    model = WGANGP(discriminator_spectral_norm=True, max_generator_steps=2, **TINY)
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=32))
    assert model.generator_step == 2 and int(model.nonfinite_steps) == 0

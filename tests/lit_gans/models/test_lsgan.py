"""LSGAN: each preset's losses equal the paper's formula on the model's own outputs."""

import pytest
import torch

from lit_gans import LSGAN
from lit_gans.objectives import LeastSquaresLoss
from lit_gans.step import TrainingStep


@pytest.mark.parametrize("preset", ["binary", "pearson", "reference"])
def test_losses_equal_the_formula_for_each_preset(preset):
    a, b, c = LSGAN.PRESETS[preset]
    torch.manual_seed(0)
    m = LSGAN(a, b, c, image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4)
    real, fake = torch.randn(5, 1, 8, 8), torch.tanh(torch.randn(5, 1, 8, 8))
    d_loss, _ = m.discriminator_loss(TrainingStep(real, None, None, fake))
    dr, df = m.discriminator(real), m.discriminator(fake)
    assert d_loss.item() == pytest.approx((0.5 * ((dr - b) ** 2).mean() + 0.5 * ((df - a) ** 2).mean()).item(), rel=1e-5)
    g_loss, _ = m.generator_loss(TrainingStep(real, None, None, fake))
    assert g_loss.item() == pytest.approx((0.5 * ((m.discriminator(fake) - c) ** 2).mean()).item(), rel=1e-5)


def test_defaults():
    m = LSGAN()
    assert isinstance(m.objective, LeastSquaresLoss) and (m.a, m.b, m.c) == (0.0, 1.0, 1.0)
    assert m.n_critic == 1
    g_opt, d_opt = m.configure_optimizers()
    assert all(o.defaults["lr"] == 2e-4 and o.defaults["betas"] == (0.5, 0.999) for o in (g_opt, d_opt))
    assert LSGAN.PRESETS == {"binary": (0.0, 1.0, 1.0), "pearson": (-1.0, 1.0, 0.0), "reference": (0.0, 1.0, 0.5)}

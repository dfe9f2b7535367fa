"""The GAN variants: each a choice of networks, objective, regularization, optimizers and n_critic."""

from lit_gans.models.dcgan import DCGAN
from lit_gans.models.vanilla import VanillaGAN

__all__ = ["DCGAN", "VanillaGAN"]

"""The GAN variants: each a choice of networks, objective, regularization, optimizers and n_critic."""

from lit_gans.models.dcgan import DCGAN, DCGANSELU
from lit_gans.models.infogan import InfoGAN
from lit_gans.models.lsgan import LSGAN
from lit_gans.models.vanilla import VanillaGAN
from lit_gans.models.wgan import WGAN, WGANGP

__all__ = ["DCGAN", "DCGANSELU", "InfoGAN", "LSGAN", "VanillaGAN", "WGAN", "WGANGP"]

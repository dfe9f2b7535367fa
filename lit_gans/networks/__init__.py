"""Plain ``nn.Module`` generators and discriminators, parameterized by resolution, channels, width and norm."""

from lit_gans.networks.dcgan import DCGANDiscriminator, DCGANGenerator, resolution_stages
from lit_gans.networks.layers import spectral_norm_
from lit_gans.networks.mlp import MLPDiscriminator, MLPGenerator
from lit_gans.networks.r3gan import R3GANDiscriminator, R3GANGenerator
from lit_gans.networks.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "R3GANDiscriminator",
    "R3GANGenerator",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "resolution_stages",
    "spectral_norm_",
]

"""lit-gans: the classic GAN families as PyTorch Lightning modules.

"The references" in the docstrings are the write-ups the package reproduces, numbered in README.md's
"Sources" section (1 the cat GANs, 2 the Keras MNIST DCGAN, 3 the TensorFlow MLP GAN, 4 the GAN-to-WGAN-GP
overview with calligraphy, 5 the DCGAN faces explainer), which also lists the papers.

After training: ``lit_gans.generate.generate`` and ``lit_gans.evaluate.evaluate`` are the ``lit-gans generate``
and ``lit-gans evaluate`` commands; ``lit_gans.load_model(path)`` rebuilds any model from its checkpoint.

Example::

    from lightning.pytorch import Trainer
    from lit_gans import DCGAN
    from lit_gans.datamodules import MNISTDataModule

    Trainer(max_epochs=-1).fit(DCGAN(max_generator_steps=2000), MNISTDataModule("data"))
"""

from lit_gans.gan import GAN
from lit_gans.generate import load_model
from lit_gans.models import DCGAN, DCGANSELU, LSGAN, WGAN, WGANGP, InfoGAN, VanillaGAN

__version__ = "0.1.0"
__all__ = [
    "GAN", "DCGAN", "DCGANSELU", "InfoGAN", "LSGAN", "VanillaGAN", "WGAN", "WGANGP", "load_model", "__version__"
]

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

from __future__ import annotations

import importlib
from typing import Any

from lit_gans.preemption import exit_on_sigterm, running_as_command

if running_as_command():  # before torch loads (seconds): SIGTERM exits 75, "preempted, resume me", from the start
    exit_on_sigterm()

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that ``import lit_gans.objectives`` or ``lit_gans.networks`` does not load the
# engine, the commands and their dependencies (Lightning's loggers, torch-fidelity).
_EXPORTS = {
    "GAN": "lit_gans.gan",
    "load_model": "lit_gans.generate",
    **{name: "lit_gans.models" for name in ("DCGAN", "DCGANSELU", "InfoGAN", "LSGAN", "VanillaGAN", "WGAN", "WGANGP")},
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lit_gans' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

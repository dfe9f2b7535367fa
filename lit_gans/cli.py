"""The ``lit-gans`` command (and ``python -m lit_gans``): LightningCLI over every GAN and DataModule of the package.

Example::

    lit-gans fit --config configs/dcgan_mnist.yaml
    lit-gans fit --config configs/dcgan_mnist.yaml --model.init_args.max_generator_steps=500
    lit-gans fit --model lit_gans.VanillaGAN --data lit_gans.datamodules.MNISTDataModule --print_config
"""

from __future__ import annotations

from typing import Any, Optional

from lightning.pytorch.cli import LightningCLI

from lit_gans.datamodules import ImageDataModule
from lit_gans.gan import GAN


class GANCLI(LightningCLI):
    """LightningCLI in subclass mode: ``model`` is any :class:`~lit_gans.GAN`, ``data`` any package DataModule.

    Each network has its own optimizer argument (``model.init_args.generator_optimizer`` and
    ``discriminator_optimizer``, as ``OptimizerCallable``); the data's ``image_shape`` is linked into the model.
    """

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.image_shape", "model.init_args.image_shape", apply_on="instantiate")


def main(args: Optional[list[str]] = None) -> GANCLI:
    """Run the CLI on ``args`` (default: the command line); returns it, with ``.model`` and ``.trainer``."""
    from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable  # noqa: F401  (registers the types)

    return GANCLI(
        GAN,
        ImageDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"max_epochs": -1, "logger": {"class_path": "lit_gans.loggers.WandbLogger"}},
        args=args,
    )


if __name__ == "__main__":
    main()

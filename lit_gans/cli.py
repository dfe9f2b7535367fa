"""The ``lit-gans`` command (and ``python -m lit_gans``): LightningCLI over every GAN and DataModule of the package.

Example::

    lit-gans fit --config configs/dcgan_mnist.yaml
    lit-gans fit --config configs/dcgan_mnist.yaml --model.init_args.max_generator_steps=500
    lit-gans fit --model lit_gans.VanillaGAN --data lit_gans.datamodules.MNISTDataModule --print_config
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Optional

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info

import lit_gans
import lit_gans.callbacks
from lit_gans.checkpoints import resolve_checkpoint
from lit_gans.datamodules import ImageDataModule
from lit_gans.gan import GAN, NonFiniteLossError
from lit_gans.loggers import wandb_run_in_checkpoint

PACKAGE_DIRS = tuple(str(Path(m.__file__).parent) for m in (lit_gans, lit_gans.callbacks, lit_gans.datamodules))
USER_ERRORS = (ValueError, FileNotFoundError, NonFiniteLossError)


class GANCLI(LightningCLI):
    """LightningCLI in subclass mode: ``model`` is any :class:`~lit_gans.GAN`, ``data`` any package DataModule.

    Each network has its own optimizer argument (``model.init_args.generator_optimizer`` and
    ``discriminator_optimizer``, as ``OptimizerCallable``); the data's ``image_shape`` is linked into the model.
    """

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.image_shape", "model.init_args.image_shape", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        path = config.get("ckpt_path")
        if not path or path in ("last", "best", "hpc", "registry") or not Path(path).exists():
            return
        # --ckpt_path may name a folder (resume from its newest valid checkpoint) or a checkpoint that turns out
        # corrupt (fall back to the newest valid one beside it, with a warning)
        config["ckpt_path"] = str(resolve_checkpoint(path))
        if self.subcommand == "fit":
            continue_wandb_run(config.trainer.logger, config["ckpt_path"])


def continue_wandb_run(logger_config: Any, checkpoint_path: str) -> None:
    """Point the configured W&B logger at the run the checkpoint's training logged to, so that a resumed fit
    continues one run (curves, and checkpoints in the same ``<project>/<run id>`` folder) instead of starting a new
    one. Only when the config names no run (``version``/``id`` unset) and the same project."""
    run = wandb_run_in_checkpoint(checkpoint_path)
    if run is None:
        return
    for entry in logger_config if isinstance(logger_config, list) else [logger_config]:
        if not isinstance(entry, Namespace) or not issubclass(_class(entry.class_path), LightningWandbLogger):
            continue
        init_args = entry.get("init_args") or Namespace()
        project = init_args.get("project") or os.environ.get("WANDB_PROJECT")
        if init_args.get("version") or init_args.get("id") or (project and project != run["project"]):
            return
        init_args["version"] = run["id"]
        if "resume" in init_args and init_args["resume"] is None:  # Lightning's "allow" unless the config says otherwise
            init_args["resume"] = "allow"
        entry["init_args"] = init_args
        rank_zero_info(f"lit_gans: continuing W&B run {run['id']} of project {run['project']}")
        return


def _class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _user_error(err: BaseException) -> Optional[BaseException]:
    """The package's own ValueError/FileNotFoundError/NonFiniteLossError behind ``err`` (jsonargparse and
    Lightning wrap them), or ``None``."""
    seen: set[int] = set()
    current: Optional[BaseException] = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, USER_ERRORS):
            tb = current.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is not None and tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIRS):
                return current
        current = current.__cause__ or current.__context__
    return None


def main(args: Optional[list[str]] = None) -> GANCLI:
    """Run the CLI on ``args`` (default: the command line); returns it, with ``.model`` and ``.trainer``.

    A bad parameter, a missing file or a diverged run ends with ``lit-gans: error: <message>`` and exit status 2,
    without a Python traceback."""
    try:
        return _run(args)
    except Exception as err:
        user = _user_error(err)
        if user is None:
            raise
        print(f"lit-gans: error: {user}", file=sys.stderr)
        raise SystemExit(2) from None


def console_main() -> int:
    """The ``lit-gans`` console script and ``python -m lit_gans``: :func:`main` on the command line, exit status 0
    when it finishes (a console script passes its return value to ``sys.exit``, so it must not be the CLI)."""
    main()
    return 0


def _run(args: Optional[list[str]]) -> GANCLI:
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
    sys.exit(console_main())

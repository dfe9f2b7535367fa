"""``lit-gans prepare``: preprocess the data of a fit config once into LitData chunks
(:func:`~lit_gans.datamodules.prepare_streaming`), for :class:`~lit_gans.datamodules.StreamingImageDataModule`.

The data is given as ``lit-gans fit`` takes it (``--config`` files, ``--data ...`` overrides), parsed by the same
parser (:class:`~lit_gans.fit_cli.GANCLI`); only the datamodule is built: no model, trainer or logger.

Example::

    lit-gans prepare --config configs/dcgan_cats64.yaml --output_dir s3://my-bucket/cats-64
    lit-gans prepare --data lit_gans.datamodules.ImageFolderDataModule --data.data_dir faces \\
        --data.image_size 128 --data.labels true --output_dir /data/faces-128
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from jsonargparse import ArgumentError

from lit_gans.datamodules import ImageDataModule
from lit_gans.datamodules.streaming import DEFAULT_CHUNK_BYTES, PreparedDataset, prepare_streaming
from lit_gans.fit_cli import CLI_OPTIONS, GANCLI
from lit_gans.gan import GAN
from lit_gans.models import DCGAN
from lit_gans.generate import import_class

DESCRIPTION = (
    "lit-gans prepare preprocesses the data of a fit config (--config, --data ...) once into LitData chunks in "
    "--output_dir (a folder, or an s3:// / gs:// URL); train from them with --data "
    "lit_gans.datamodules.StreamingImageDataModule --data.init_args.input_dir OUTPUT_DIR."
)


class PrepareCLI(GANCLI):
    """:class:`~lit_gans.fit_cli.GANCLI`'s parser (every config and ``--data`` option of ``fit``) with the options of
    ``prepare``; it builds the datamodule only."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--output_dir", type=str, required=True,
                            help="where the chunks go: a new or empty folder, or a URL (s3://bucket/path, gs://...)")
        parser.add_argument("--chunk_bytes", type=str, default=DEFAULT_CHUNK_BYTES, help="LitData's chunk size")
        parser.add_argument("--staging_dir", type=str, default=None,
                            help="where decoded images wait while preparing (default: beside output_dir)")  # fmt: skip

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        """fit's parser, whose ``--help`` shows only what prepare uses: its own options, ``--config`` and the data.
        The trainer, model and callback options still parse (a fit config has them) but are left out of the help,
        where they were 500 of its 600 lines."""
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        shown = {"help", "config", "print_config", "output_dir", "chunk_bytes", "staging_dir", "data"}
        for group in self.parser._action_groups:
            hidden = [a for a in group._group_actions if a.dest.split(".")[0] not in shown]
            for action in hidden:
                action.help = argparse.SUPPRESS
            if hidden and len(hidden) == len(group._group_actions):
                group.description = None

    def before_instantiate_classes(self) -> None:
        """Nothing of fit's (its W&B run, its resume checks): no model or trainer is built."""

    def instantiate_classes(self) -> None:
        data = self.config.data
        self.datamodule = import_class(data.class_path)(**data.init_args.as_dict())
        self.model = self.trainer = None

    def after_instantiate_classes(self) -> None:
        """Nothing: fit's checks concern the model."""


def prepare_command(args: list[str]) -> PreparedDataset:
    """``lit-gans prepare ARGS``: parse the data as ``fit`` does, prepare it, say what was done in one line."""
    # a config without a model parses: a model class stands in (a config's own replaces it); none is built
    command = ["--model", f"{DCGAN.__module__}.{DCGAN.__qualname__}", *args]
    try:
        with warnings.catch_warnings():  # `lit-gans prepare`'s own command line is not this parser's
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            cli = _prepare_cli(command)
    except ArgumentError as err:
        message = " ".join(str(err).split())
        raise ValueError(f"prepare: {message} (lit-gans prepare --help lists the options)") from None
    config = cli.config
    try:
        result = prepare_streaming(cli.datamodule, config.output_dir, config.chunk_bytes, config.staging_dir,
                                   log_result=False)  # fmt: skip
    except KeyboardInterrupt:  # lit_gans.cli says it in one line, with the shell's 130
        raise KeyboardInterrupt(f"nothing was written to {config.output_dir}; the same command starts again") from None
    print(f"lit-gans: {result.describe()}", flush=True)
    return result


def _prepare_cli(command: list[str]) -> PrepareCLI:
    return PrepareCLI(
        GAN,
        ImageDataModule,
        **CLI_OPTIONS,
        save_config_callback=None,
        seed_everything_default=False,
        parser_kwargs={"exit_on_error": False, "description": DESCRIPTION, "prog": "lit-gans prepare"},
        args=command,
        run=False,
    )


__all__ = ["PrepareCLI", "prepare_command"]

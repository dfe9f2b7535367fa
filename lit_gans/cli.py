"""The ``lit-gans`` command (and ``python -m lit_gans``): ``fit`` (:class:`~lit_gans.fit_cli.GANCLI`, LightningCLI over
every GAN and DataModule of the package) and the commands for after training (:data:`COMMANDS`); a user error
ends in one line.

Example::

    lit-gans fit --config configs/dcgan_mnist.yaml
    lit-gans generate --ckpt_path lightning_logs/lit-gans/RUN --num_images 10000 --output_dir samples
    lit-gans evaluate --ckpt_path lightning_logs/lit-gans/RUN --output_json scores.json   # the run's saved config
    lit-gans evaluate --ckpt_path best.ckpt --config configs/dcgan_mnist.yaml --output_json scores.json
    lit-gans fit --config configs/dcgan_mnist.yaml --model.init_args.max_generator_steps=500 --fid.num_fake=2000
    lit-gans fit --model lit_gans.VanillaGAN --data lit_gans.datamodules.MNISTDataModule --print_config
"""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path
from typing import Any, Optional

import lit_gans
import lit_gans.callbacks
from lit_gans.checkpoints import find_run_config
from lit_gans.console import quiet_console
from lit_gans.datamodules import ImageDataModule
from lit_gans.evaluate import format_metrics, write_metrics_json
from lit_gans.files import DISK_FULL, WriteError, check_writable
from lit_gans.fit_cli import CALLBACK_GROUPS, CLI_OPTIONS, GANCLI, RunConfig
from lit_gans.gan import GAN, NonFiniteLossError
from lit_gans.generate import describe_checkpoint, import_class, parse_seeds
from lit_gans.preemption import PREEMPTED_EXIT_STATUS, exit_on_sigterm

PACKAGE_DIRS = tuple(str(Path(m.__file__).parent) for m in (lit_gans, lit_gans.callbacks, lit_gans.datamodules))
USER_ERRORS = (ValueError, FileNotFoundError, NonFiniteLossError, WriteError)
#: what the environment, not the program, makes any write fail with (a full disk, a read-only filesystem)
ENVIRONMENT_ERRNOS = (*DISK_FULL, errno.EROFS)
__all__ = ["PREEMPTED_EXIT_STATUS", "console_main", "main", "run_command"]  # the exit status a retry wrapper reads


def _user_error(err: BaseException) -> Optional[BaseException]:
    """The package's own ValueError/FileNotFoundError/NonFiniteLossError behind ``err`` (jsonargparse and
    Lightning wrap them), or a missing optional module, or ``None``."""
    seen: set[int] = set()
    current: Optional[BaseException] = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError):  # an optional dependency the config needs (tensorboard)
            return current
        if isinstance(current, OSError) and current.errno in ENVIRONMENT_ERRNOS:  # a full or read-only disk, anywhere
            return current
        if isinstance(current, USER_ERRORS):
            tb = current.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is not None and tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIRS):
                return current
        current = current.__cause__ or current.__context__
    return None


def main(args: Optional[list[str]] = None) -> Any:
    """Run the CLI on ``args`` (default: the command line). ``fit`` returns the LightningCLI, with ``.model`` and
    ``.trainer``; ``generate`` what it wrote; ``evaluate`` (also ``validate`` and ``test``) the metrics.

    A bad parameter, a missing file or a diverged run ends with ``lit-gans: error: <message>`` and exit status 2,
    without a Python traceback."""
    try:
        return _run(args)
    except KeyboardInterrupt as err:  # Ctrl-C outside fit (Lightning handles fit's): one line, the shell's 130
        print(f"lit-gans: interrupted: {err}" if str(err) else "lit-gans: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as err:
        user = _user_error(err)
        if user is None:
            raise
        message = str(user).strip()
        if isinstance(user, ModuleNotFoundError):  # Lightning appends pip hints on further lines
            message = message.splitlines()[0]
        elif isinstance(user, OSError) and user.errno in ENVIRONMENT_ERRNOS and not isinstance(user, WriteError):
            # a write of Lightning's or a logger's: the file, when the error names it
            message = f"cannot write {user.filename or 'a file of the run'}: {user.strerror}"
        print(f"lit-gans: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def console_main() -> int:
    """The ``lit-gans`` console script and ``python -m lit_gans``: :func:`main` on the command line, exit status 0
    when it finishes (a console script passes its return value to ``sys.exit``, so it must not be the CLI); 75
    when SIGTERM stops it, at any moment (:mod:`lit_gans.preemption`)."""
    exit_on_sigterm()  # importing lit_gans did already when this process is the command; not when called otherwise
    main()
    return 0


#: ``lit-gans <command>`` for what comes after training: the function each runs (its signature is the parser)
COMMANDS = {
    "generate": "lit_gans.generate.generate", "evaluate": "lit_gans.evaluate.evaluate", "export": "lit_gans.export.export",
}
#: ``lit-gans <command>`` with a parser of its own: the function each runs on the command's arguments
OTHER_COMMANDS = {"prepare": "lit_gans.prepare.prepare_command"}
#: every command, in the order ``lit-gans --help`` lists them
ALL_COMMANDS = ("fit", *COMMANDS, *OTHER_COMMANDS)
#: Lightning's other subcommands: what each means for a GAN
ALIASES = {"validate": "evaluate", "test": "evaluate"}
NOT_FOR_GANS = {"predict": "a GAN predicts nothing from data: `lit-gans generate --ckpt_path CKPT --num_images N "
                "--output_dir DIR` writes its samples"}


DESCRIPTION = (
    "lit-gans fit trains a GAN (Lightning's Trainer, one yaml config). After training: `lit-gans generate` writes "
    "a checkpoint's images (generate --help), `lit-gans evaluate` scores it with a config's metrics (evaluate "
    "--help; `validate` and `test` are the same command). `lit-gans --help` lists every command."
)
FIT_DESCRIPTION = (
    "Train a GAN: lit-gans fit --config configs/dcgan_mnist.yaml. Any setting of the config is a flag "
    "(--model.init_args.max_generator_steps=500, --trainer.precision=bf16-mixed), and later --config files override "
    "earlier ones key by key. Each of the package's callbacks is a group of its own, so that one setting is one "
    "flag (--fid.every_n_generator_steps=250) and `fid: null` (--fid=null) leaves one out: "
    + "; ".join(f"--{key} ({cls.__name__})" for key, (cls, _) in CALLBACK_GROUPS.items())
    + ". --GROUP.help CLASS lists a callback's settings. The run's folder, lightning_logs/lit-gans/<run id>, holds "
    "checkpoints/, images/ and config.yaml (the run's config, which evaluate reads); --ckpt_path RUN_FOLDER resumes "
    "the run, --name names its W&B run."
)


def top_level_help() -> str:
    """``lit-gans --help``: every command (fit, :data:`COMMANDS`, :data:`ALIASES`), with the first line of what each
    does."""
    commands = {"fit": "Train a GAN from a yaml config (fit --help lists the options; --ckpt_path RUN_FOLDER resumes)."}
    for name, function in COMMANDS.items():
        commands[name] = (import_class(function).__doc__ or "").strip().split("\n\n")[0]
    for name, function in OTHER_COMMANDS.items():  # their modules say what they do: "``lit-gans NAME``: ..."
        commands[name] = (sys.modules[import_class(function).__module__].__doc__ or "").strip().split("\n\n")[0]
        commands[name] = commands[name].split(": ", 1)[-1]
    for alias, command in ALIASES.items():
        commands[alias] = f"the same as {command}"
    for command, use in NOT_FOR_GANS.items():
        commands[command] = f"not for GANs: {use.split(': ', 1)[-1]}"
    width = max(map(len, commands)) + 2
    rows = "\n".join(f"  {name:<{width}}{_plain(text)}" for name, text in commands.items())
    return (f"usage: lit-gans COMMAND [OPTIONS]   (lit-gans COMMAND --help lists a command's options)\n\n"
            f"{DESCRIPTION}\n\ncommands:\n{rows}\n")


def _plain(text: str) -> str:
    """A docstring's sentence for a terminal: one line, Sphinx roles and literals as plain words, a capital first."""
    text = re.sub(r"\s*\(:\w+:`[^`]*`\)", "", " ".join(text.split()))  # a parenthesised cross-reference
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"\1", text).replace("``", "")
    return text[:1].upper() + text[1:]


def run_command(name: str, args: list[str], prog: str) -> Any:
    """``lit-gans generate|evaluate ARGS``: parse ``args`` with jsonargparse from the function's signature and
    docstring (``--help`` lists them) and call it; say what it wrote or print the metrics as a table."""
    from jsonargparse import ArgumentError, ArgumentParser

    function = import_class(COMMANDS[name])
    parser = ArgumentParser(prog=f"lit-gans {prog}", description=(function.__doc__ or "").split("\n\n")[0],
                            exit_on_error=False)  # fmt: skip
    skip = set()
    if name == "evaluate":  # repeatable, like fit's: shared files first, overrides after
        parser.add_argument(
            "-c", "--config", action="append", default=None,
            help="a fit config (repeatable); default: the config.yaml that lit-gans fit saved in the checkpoint's run folder",
        )  # fmt: skip
        skip.add("config")
    parser.add_function_arguments(function, skip=skip, fail_untyped=False, as_group=False)
    try:
        kwargs = parser.parse_args(args).as_dict()
    except ArgumentError as err:
        message = " ".join(str(err).split())
        raise ValueError(f"{prog}: {message} (lit-gans {prog} --help lists the options)") from None
    if name == "evaluate" and not kwargs.get("config") and kwargs.get("ckpt_path") is not None:
        kwargs["config"] = [run_config_of(kwargs["ckpt_path"], prog)]
    output_json = kwargs.pop("output_json", None) if name == "evaluate" else None
    if output_json is not None:  # checked before computing, written after printing: a failed write loses nothing
        check_writable(output_json, "output_json")
    result = function(**kwargs)
    if name == "evaluate":
        images = kwargs.get("images")
        print(f"lit-gans: {describe_checkpoint(kwargs['ckpt_path']) if images is None else f'the images in {images}'}")
        print(format_metrics(result), flush=True)
        if output_json is not None:
            write_metrics_json(output_json, result)
    elif name == "export":
        pushed = f", uploaded to https://huggingface.co/{kwargs['push_to_hub']}" if kwargs.get("push_to_hub") else ""
        print(f"lit-gans: wrote {result} ({kwargs['format']}) from {describe_checkpoint(kwargs['ckpt_path'])}{pushed}")
    else:
        count = len(parse_seeds(kwargs["seeds"])) if kwargs.get("seeds") is not None else kwargs["num_images"]
        images = "1 image" if count == 1 else f"{count} images"
        print(f"lit-gans: wrote {images} to {result} from {describe_checkpoint(kwargs['ckpt_path'])}")
    return result


def run_config_of(ckpt_path: str, prog: str) -> str:
    """The config ``lit-gans fit`` saved in the run folder of ``ckpt_path`` (a checkpoint, its folder, the run
    folder), which ``evaluate`` takes when no ``--config`` is given; a one-line error when there is none."""
    found = find_run_config(ckpt_path) if Path(ckpt_path).exists() else None
    if found is None:
        where = "no such file or folder" if not Path(ckpt_path).exists() else "no config.yaml in its run folder"
        raise ValueError(
            f"{prog}: --ckpt_path={ckpt_path}: {where}, and no --config was given: pass the config the run trained "
            f"with (--config configs/<run>.yaml); runs since lit-gans saved their config have it in their run folder"
        )
    print(f"lit-gans: the run's config {found}", flush=True)
    return str(found)


def _run(args: Optional[list[str]]) -> Any:
    quiet_console()
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
    if argv[:1] in (["-h"], ["--help"]):  # LightningCLI's own help would list fit alone
        print(top_level_help(), end="", flush=True)
        raise SystemExit(0)
    if not argv and not isinstance(args, dict):
        raise ValueError(f"a command is needed: {', '.join(ALL_COMMANDS)} (lit-gans --help)")
    command = ALIASES.get(argv[0], argv[0]) if argv else None
    if command in NOT_FOR_GANS:
        raise ValueError(f"`lit-gans {command}` is not for GANs: {NOT_FOR_GANS[command]}")
    if command in OTHER_COMMANDS:  # prepare: the data of a fit config into LitData chunks, for StreamingImageDataModule
        return import_class(OTHER_COMMANDS[command])(argv[1:])
    if command in COMMANDS:
        return run_command(command, argv[1:], prog=argv[0])
    if command is not None and not command.startswith("-") and command != "fit":
        raise ValueError(
            f"no command {command!r}: use {', '.join(ALL_COMMANDS)} (validate and test are evaluate); lit-gans --help"
        )
    return GANCLI(
        GAN,
        ImageDataModule,
        **CLI_OPTIONS,
        save_config_callback=RunConfig,  # config.yaml in each run's folder
        # the parsers raise (GANCLI.parse_arguments makes one line of it) instead of printing a usage text
        parser_kwargs={"description": DESCRIPTION, "exit_on_error": False,
                       "fit": {"description": FIT_DESCRIPTION, "exit_on_error": False}},
        trainer_defaults={
            "max_epochs": -1,
            "logger": {"class_path": "lit_gans.loggers.WandbLogger"},
            "enable_model_summary": False,  # the engine prints a one-line summary (lit_gans.console.fit_header)
        },
        args=args,
    )


if __name__ == "__main__":
    sys.exit(console_main())

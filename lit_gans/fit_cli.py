"""The ``fit`` command's parser: :class:`GANCLI`, LightningCLI over every GAN and DataModule of the package, with a
group of its own for each of the package's callbacks (:data:`CALLBACK_GROUPS`: ``--fid.num_fake=2000``), the
run's config saved in its folder (:class:`RunConfig`), and what a resumed fit takes from its checkpoint (the
model's arguments, the W&B run). :mod:`lit_gans.cli` runs it; :mod:`lit_gans.evaluate` parses a fit config with it.

Example::

    from lit_gans.fit_cli import GANCLI
    cli = GANCLI(run=False, args=["--config", "configs/dcgan_mnist.yaml"])
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_gans.callbacks import (
    BestCheckpoint, ClassificationAccuracyScore, ConditionalAccuracy, DiversityMonitor, FIDCallback,
    GradientNormMonitor, LastCheckpoint, SampleGrid,
)  # fmt: skip
from lit_gans.callbacks.base import image_dir
from lit_gans.checkpoints import RUN_CONFIG, load_checkpoint_file, newest_first, resolve_checkpoint
from lit_gans.datamodules import ImageFolderDataModule
from lit_gans.files import atomic_write_bytes
from lit_gans.gan import preemption_checkpoint_path
from lit_gans.generate import import_class
from lit_gans.loggers import wandb_run_in_checkpoint
from lit_gans.preemption import PREEMPTED_EXIT_STATUS

CHECKPOINT_ALIASES = ("last", "best", "hpc", "registry")
#: Lightning's names for a checkpoint of the trainer's own run folder, which a fit started by a command has just
#: made, empty: refused (see :meth:`GANCLI._parse_ckpt_path`)
OWN_RUN_ALIASES = ("last", "best")
#: the package's callbacks, each a group of its own (``--fid.every_n_generator_steps=100``; ``fid:`` in a config
#: changes only that callback, ``fid: null`` leaves it out): group -> (base class, what it does). Before the
#: trainer is built they join ``trainer.callbacks``, ahead of any listed there.
CALLBACK_GROUPS: dict[str, tuple[type, str]] = {
    "fid": (FIDCallback, "FID (and KID, IS, precision/recall) of the fakes against the real data"),
    "diversity": (DiversityMonitor, "MS-SSIM mode-collapse flag and mode coverage"),
    "conditional_accuracy": (ConditionalAccuracy, "the share of fakes a classifier reads as the class asked for"),
    "cas": (ClassificationAccuracyScore, "Classification Accuracy Score: a classifier trained on fakes, tested on real data"),
    "gradient_norms": (GradientNormMonitor, "gradient norms of G and D"),
    "samples": (SampleGrid, "the fixed-noise sample grid, an interpolation strip and the grid's GIF over training"),
    "best_checkpoint": (BestCheckpoint, "the checkpoint of the best value of a metric (monitor)"),
    "last_checkpoint": (LastCheckpoint, "last.ckpt for resuming, on a schedule, on SIGTERM and at the end"),
}
#: the arguments of ``Trainer.fit`` itself, which a run's saved config leaves out: it configures a run (a
#: ``--config`` of ``fit`` or ``evaluate``), and the resumed checkpoint is not part of that
FIT_ONLY_KEYS = ("ckpt_path", "weights_only")
CKPT_PATH_HELP = (
    "Resume a run: its run folder (<save_dir>/<project>/<run id>), its checkpoints/ folder (the newest valid "
    "checkpoint there) or a checkpoint file. The model's arguments come from the checkpoint; the command line may "
    "change the budget. Lightning's `last` and `best` (checkpoints of the trainer's own, new run folder, which is "
    "empty) are refused: name the run."
)
#: the model arguments that a resumed fit may change on the command line without changing how G and D train: the
#: budget, the sample grid's size, the divergence guard, speed settings, the weight average kept beside G. Any
#: other change continues the run as another one: refused where it would write into the checkpoint's run, unless
#: --allow_resume_changes=true asks for it
RESUME_SETTINGS = frozenset({
    "max_generator_steps", "num_sample_images", "check_finite", "max_nonfinite_steps", "on_nonfinite",
    "rollback_lr_factor", "max_rollbacks", "compile", "channels_last", "joint_discriminator_forward",
    "generator_ema_decay", "generator_ema_start",
})  # fmt: skip
#: how every lit-gans LightningCLI parses: any GAN and DataModule class, one optimizer argument per network
CLI_OPTIONS = dict(subclass_mode_model=True, subclass_mode_data=True, auto_configure_optimizers=False)


class GANCLI(LightningCLI):
    """LightningCLI in subclass mode: ``model`` is any :class:`~lit_gans.GAN`, ``data`` any package DataModule.

    Each network has its own optimizer argument (``model.init_args.generator_optimizer`` and
    ``discriminator_optimizer``, as ``OptimizerCallable``); the data's ``image_shape`` is linked into the model.
    So is the data's ``num_classes`` for a model that names a ``conditioning`` (a labelled datamodule feeds
    unconditional models too, so a class count alone does not make a model conditional); an explicit
    ``num_classes`` must then agree with the data's.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # validate/test/predict are lit-gans commands of their own (see COMMANDS, ALIASES): a GAN has no
        # validation loss, and Lightning's help for them would describe what they do not do
        return {"fit": LightningCLI.subcommands()["fit"]}

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> Any:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        for action in parser._actions:  # Trainer.fit's help says nothing of run folders, nor of `last` in a new process
            if action.dest == "ckpt_path":
                action.help = CKPT_PATH_HELP
        return parser

    def add_arguments_to_parser(self, parser: Any) -> None:
        for key, (cls, what) in CALLBACK_GROUPS.items():
            parser.add_subclass_arguments(
                cls, key, required=False,
                help=f"{what}: a {cls.__name__}; --{key}.SETTING=VALUE sets one setting, --{key}.help {cls.__name__} "
                f"lists them, --{key}=null leaves it out (the default)",
            )  # fmt: skip
        parser.add_argument(
            "--name", type=Optional[str], default=None,
            help="the W&B run's name (default: its model and data, e.g. DCGAN-MNIST or DCGAN-<image folder>64)",
        )  # fmt: skip
        parser.add_argument(
            "--allow_resume_changes", type=bool, default=False,
            help="with --ckpt_path: let command-line model arguments change how the resumed run trains (anything "
            "but the budget, the divergence guard, speed settings and the weight average) and still write into the "
            "checkpoint's run folder; without it such a resume must name another run (--trainer.logger.init_args.version)",
        )  # fmt: skip
        parser.link_arguments("data.image_shape", "model.init_args.image_shape", apply_on="instantiate")
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", compute_fn=self._num_classes_from_data, apply_on="instantiate"
        )

    def _num_classes_from_data(self, data_classes: Optional[int]) -> int:
        requested, conditioning = self._requested_num_classes, self._requested_conditioning
        if conditioning is None:
            return requested or 0
        if not data_classes:
            raise ValueError(
                f"model.init_args.conditioning={conditioning!r} needs labelled data, and the datamodule has no classes "
                "(an image folder needs labels=True and one subfolder per class)"
            )
        if requested and requested != data_classes and self._resumed_checkpoint is not None:
            raise ValueError(
                f"--ckpt_path={self._resumed_checkpoint} holds a model of num_classes={requested}, and the data gives "
                f"num_classes={data_classes}: resume with the run's data, or start a new run"
            )
        if requested and requested != data_classes:
            raise ValueError(
                f"model.init_args.num_classes={requested} conflicts with the data's num_classes={data_classes}; leave "
                "num_classes out (the data's is taken)"
            )
        return data_classes

    #: the checkpoint file a fit resumes from (``--ckpt_path`` resolved), once parsed
    _resumed_checkpoint: Optional[str] = None

    def parse_arguments(self, parser: Any, args: Any) -> None:
        self._command_line = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
        refuse_unnamed_callback_flags(self._command_line)
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            if not getattr(self, "_subcommand_parsers", None):  # a CLI without subcommands (evaluate's) says it its way
                raise
            # the parsers of `lit-gans fit` do not exit (cli.py): one line, not a usage text
            raise ValueError(parse_error_line(err)) from None

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path``: a checkpoint file or a folder (its newest valid checkpoint; a corrupt file falls back
        to the newest valid one beside it), resolved before anything is built. The model's arguments come from
        the command line, then the checkpoint, then the config files: the checkpoint's hyperparameters replace
        the config's (the run continues as it was trained), except those given on the command line; each
        difference is reported. Lightning's own version applied the checkpoint over the command line, silently."""
        if not self.config.get("subcommand"):
            return
        config = self.config[self.config.subcommand]
        path = config.get("ckpt_path")
        if not path:
            return
        if config.get("weights_only") is False:
            raise ValueError(
                "--weights_only=false: lit-gans resumes only with weights_only=True (an unrestricted load can run "
                "code that a checkpoint file names; lit-gans checkpoints need none)"
            )
        config["weights_only"] = True  # Lightning's own load of the resumed checkpoint: explicit, and restricted
        if path in OWN_RUN_ALIASES:
            # Lightning looks for them in the checkpoint folder of this trainer's run, which a fit started by a
            # command has just made (a new W&B run id): it would warn and train from scratch
            newest = newest_run_checkpoint(config.get("trainer"))
            raise ValueError(
                f"--ckpt_path={path}: a new fit's run folder holds no checkpoint yet; name the run to resume: "
                "--ckpt_path <run folder or checkpoint>"
                + (f" (the newest here: --ckpt_path {newest.parent.parent})" if newest is not None else "")
            )
        if path in CHECKPOINT_ALIASES:
            return
        if not Path(path).exists():
            raise FileNotFoundError(f"--ckpt_path={path}: no such checkpoint file or folder")
        config["ckpt_path"] = self._resumed_checkpoint = str(resolve_checkpoint(path))
        changes = apply_checkpoint_hyperparameters(config.model, config["ckpt_path"], command_line_model_keys(self._command_line))
        if changes and not config.get("allow_resume_changes") and writes_into_checkpoint_run(config.trainer.logger, config["ckpt_path"]):
            raise ValueError(
                f"--ckpt_path={config['ckpt_path']}: the command line changes how the run trains ({'; '.join(changes)}), "
                "and the fit would write into that run's folder: continue as a new run with "
                "--trainer.logger.init_args.version=<new id>, or pass --allow_resume_changes=true to change the old one"
            )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        self._config_as_given = config.clone()  # what RunConfig saves: the callback groups as groups, no W&B run id
        join_callback_groups(config)
        # the data's shape is linked into the model at instantiation, over whatever the command line said
        explicit = "image_shape" in command_line_model_keys(self._command_line) and "model" in config
        self._requested_image_shape = config.model.init_args.get("image_shape") if explicit else None
        self._requested_num_classes = config.model.init_args.get("num_classes")
        self._requested_conditioning = config.model.init_args.get("conditioning")
        if self.subcommand == "fit" and config.get("ckpt_path") not in (None, *CHECKPOINT_ALIASES):
            continue_wandb_run(config.trainer.logger, config["ckpt_path"])
        if "trainer" in config:
            if config.get("name") and self.subcommand == "fit" and not has_wandb_logger(config.trainer.logger):
                raise ValueError(f"--name={config.name} names the W&B run, and the config's logger is no W&B logger: "
                                 "name the run with the logger's own argument (--trainer.logger.init_args....)")
            name_wandb_run(config.trainer.logger, config.get("name") or run_name(config), replace=bool(config.get("name")))

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        for callback in self.trainer.callbacks if getattr(self, "trainer", None) is not None else []:
            if isinstance(callback, RunConfig):
                callback.config = self._config_as_given
        requested, linked = self._requested_image_shape, getattr(self.datamodule, "image_shape", None)
        if requested is not None and linked is not None and tuple(requested) != tuple(linked):
            raise ValueError(
                f"model.init_args.image_shape={tuple(requested)} conflicts with the data's image_shape="
                f"{tuple(linked)}, which the model takes: set the data's image_size/channels instead"
            )
        path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        if path and path not in CHECKPOINT_ALIASES and linked is not None:  # its networks are built for its shape
            stored = (load_checkpoint_file(path, mmap=True).get("hyper_parameters") or {}).get("image_shape")
            if stored is not None and tuple(stored) != tuple(linked):
                raise ValueError(
                    f"--ckpt_path={path} holds a model of image_shape={tuple(stored)}, and the data gives image_shape="
                    f"{tuple(linked)}: resume with the run's data settings (image_size, channels), or start a new run"
                )

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:
            model = self.model
            if self.trainer.is_global_zero:  # every rank stops; one line says so
                print(
                    f"lit-gans: stopped by SIGTERM at generator step {model.generator_step} of "
                    f"max_generator_steps={model.max_generator_steps}; resume with --ckpt_path "
                    f"{Path(preemption_checkpoint_path(self.trainer)).parent} (exit status {PREEMPTED_EXIT_STATUS})",
                    file=sys.stderr,
                )
            raise SystemExit(PREEMPTED_EXIT_STATUS) from None


class RunConfig(SaveConfigCallback):
    """Saves a fit's configuration as ``config.yaml`` in its run's folder, beside ``checkpoints/`` and ``images/``
    (``<save_dir>/<project>/<run id>/`` with W&B, :func:`run_folder`), where ``lit-gans evaluate --ckpt_path RUN``
    finds it: one file per run, where Lightning's ``SaveConfigCallback`` rewrote one ``config.yaml`` in the
    logger's ``save_dir`` at every run. The file is a config of the run, as ``fit --config`` and ``evaluate
    --config`` take it: without ``Trainer.fit``'s own arguments (:data:`FIT_ONLY_KEYS`: the resumed checkpoint),
    with the model arguments the run trains with (a resume's, from its checkpoint). Written when training starts
    (the checkpoint folder is known then; a fit that fails at setup leaves none), atomically, by rank 0; a resume
    rewrites it."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        pass  # Lightning's writes to the logger's save_dir here

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.already_saved or not trainer.is_global_zero:
            return
        config = self.config.clone()
        for key in FIT_ONLY_KEYS:
            config.pop(key, None)
        text = self.parser.dump(config, skip_none=False, skip_check=True)
        atomic_write_bytes(run_folder(trainer) / RUN_CONFIG, text.encode())
        self.already_saved = True


def run_folder(trainer: Any) -> Path:
    """A fit's run folder: the one above its checkpoint folder (``<save_dir>/<project>/<run id>`` with W&B, Lightning's
    ``<save_dir>/<name>/<version>`` with other loggers), else the one above its images (:func:`image_dir`)."""
    folders = [c.dirpath for c in trainer.callbacks if isinstance(c, LastCheckpoint) and c.dirpath]
    folders += [c.dirpath for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
    return Path(folders[0]).parent if folders else image_dir(trainer).parent


def join_callback_groups(config: Namespace) -> None:
    """Move the :data:`CALLBACK_GROUPS` that a config sets into ``trainer.callbacks``, ahead of those listed there,
    in the groups' order, and refuse a class that both name (two LastCheckpoints would write one ``last.ckpt``)."""
    if "trainer" not in config:
        return
    listed = config.trainer.get("callbacks")
    listed = [] if listed is None else list(listed) if isinstance(listed, list) else [listed]
    listed_classes = {import_class(e.class_path) if isinstance(e, Namespace) else type(e) for e in listed}
    grouped = []
    for key, _ in CALLBACK_GROUPS.items():
        entry = config.get(key)
        if entry is None:
            continue
        cls = import_class(entry.class_path)
        if cls in listed_classes:
            raise ValueError(
                f"trainer.callbacks has a {cls.__name__}, and so has the {key} group: set it in the group (--{key}.SETTING "
                f"or `{key}:` in a config), or leave the group out ({key}: null)"
            )
        grouped.append(entry)
        config[key] = None
    if grouped:
        config.trainer["callbacks"] = grouped + listed


def refuse_unnamed_callback_flags(command_line: list[str]) -> None:
    """``--trainer.callbacks.SETTING=V`` sets SETTING of whichever callback comes last in ``trainer.callbacks``
    (jsonargparse's rule): refused unless the command line itself appended that callback before it
    (``--trainer.callbacks+=CLASS``); the package's callbacks have groups of their own."""
    appended = False
    for token in command_line:
        flag = token.split("=", 1)[0]
        if flag in ("--trainer.callbacks", "--trainer.callbacks+"):
            appended = True
        elif flag.startswith("--trainer.callbacks.") and not appended:
            setting = flag.rsplit(".", 1)[-1]
            raise ValueError(
                f"{flag}: would change whichever callback comes last in trainer.callbacks; set a callback's setting in "
                f"its own group, e.g. --fid.{setting} or --last_checkpoint.{setting} (groups: "
                f"{', '.join(CALLBACK_GROUPS)}; lit-gans fit --help)"
            )


#: the lines of a jsonargparse error that say how it searched, not what is wrong
_PARSE_ERROR_NOISE = (
    "Does not validate against", "Subtypes:", "Errors:", "Problem with given class_path", "Expected a <class 'NoneType'>",
    "Given value type:", "Given value:",
)  # fmt: skip


def parse_error_line(err: ArgumentError) -> str:
    """jsonargparse's error as one line naming the flag: a callback group's error nests the setting's own
    (``Parser key "fid": ... Parser key "num_fake": Expected a <class 'int'>. Got value: many`` becomes
    ``--fid.num_fake: Expected a int. Got value: many``), under lines that say which types were tried."""
    flag, reasons = "", []
    for line in (line.strip().lstrip("- ").strip() for line in str(err).splitlines()):
        key = re.fullmatch(r'Parser key "([^"]+)":?', line)
        if key:
            flag = f"{flag}.{key[1]}" if flag else f"--{key[1]}"
        elif line and not line.startswith(_PARSE_ERROR_NOISE):
            reasons.append(re.sub(r"<class '([\w.]+)'>", r"\1", line))
    reasons = list(dict.fromkeys(reasons)) or ["cannot parse the command line"]
    return f"fit: {flag + ': ' if flag else ''}{'; '.join(reasons)} (lit-gans fit --help lists the options)"


def newest_run_checkpoint(trainer_config: Any) -> Optional[Path]:
    """The newest ``last.ckpt`` (else any checkpoint) under the W&B logger's ``save_dir`` of ``trainer_config``
    (``<save_dir>/<project>/<run id>/checkpoints/``), for a message; ``None`` when there is none."""
    save_dir = "lightning_logs"
    logger = trainer_config.get("logger") if isinstance(trainer_config, Namespace) else None
    for entry in logger if isinstance(logger, list) else [logger]:
        if isinstance(entry, Namespace) and (entry.get("init_args") or Namespace()).get("save_dir"):
            save_dir = entry.init_args.save_dir
            break
    folders = sorted(Path(save_dir).glob("*/*/checkpoints"))
    found = [path for folder in folders for path in newest_first(folder)]
    found.sort(key=lambda p: (p.name == "last.ckpt", p.stat().st_mtime), reverse=True)
    return found[0] if found else None


def command_line_model_keys(command_line: list[str]) -> set[str]:
    """The model arguments given on the command line: ``--model.init_args.NAME[.more]=...`` (or ``--model.NAME``)
    names ``NAME``."""
    keys = set()
    for token in command_line:
        for prefix in ("--model.init_args.", "--model."):
            if token.startswith(prefix):
                keys.add(token[len(prefix):].split("=", 1)[0].split(".", 1)[0])
                break
    return keys


def apply_checkpoint_hyperparameters(model_config: Namespace, checkpoint_path: str, command_line_keys: set[str]) -> list[str]:
    """Put the checkpoint's model hyperparameters into ``model_config`` (``class_path`` + ``init_args``), except the
    keys in ``command_line_keys``; report each value that changes, and refuse another model class. A value the
    checkpoint does not store (an argument the class took later, or the default ``objective``) is the class's
    default, which the checkpoint's training used. ``num_classes`` and ``image_shape`` come from the data (linked
    at instantiation, where they are checked against the checkpoint's).

    Returns:
        The command line's changes of how the run trains, one ``key=new (the checkpoint's: old)`` each: every
        argument but the :data:`RESUME_SETTINGS`.
    """
    checkpoint = load_checkpoint_file(checkpoint_path, mmap=True)
    stored = dict(checkpoint.get("hyper_parameters") or {})
    class_path = stored.pop("_class_path", None)
    stored.pop("_instantiator", None)
    cls = import_class(model_config.class_path)
    if class_path is not None and import_class(class_path) is not cls:
        raise ValueError(
            f"--ckpt_path={checkpoint_path} holds a {class_path}, but the config's model is {model_config.class_path}"
        )
    # networks, optimizers: objects; the objective, regularizers and augmentation are stored as their configs
    not_stored = set(getattr(cls, "_hparams_ignore", ())) - {"objective", "regularizers", "augment"}
    defaults = {k: v for k, v in _init_defaults(cls).items() if k not in not_stored}
    if getattr(cls, "objective_is_argument", False):  # objective=None trains the class's default objective
        defaults["objective"] = cls.default_objective().to_config()
    init_args = model_config.init_args
    changes = []
    for key in list(vars(init_args)):
        if key not in stored and key not in defaults or key == "image_shape":
            continue
        current, saved = init_args[key], stored.get(key, defaults.get(key))
        if _plain(_or_default(key, current, defaults)) == _plain(_or_default(key, saved, defaults)):
            continue
        if key in command_line_keys:
            rank_zero_info(
                f"lit-gans: --model.init_args.{key}={_describe(current)} overrides the checkpoint's "
                f"{_describe(_or_default(key, saved, defaults))}"
            )
            if key not in RESUME_SETTINGS:
                changes.append(f"{key}={_describe(current)} (the checkpoint's: {_describe(_or_default(key, saved, defaults))})")
        elif key == "num_classes" and not current:  # unset: the data's, checked against the checkpoint's then
            init_args[key] = saved
        else:
            init_args[key] = _namespace(saved)
            rank_zero_info(
                f"lit-gans: {key}={_describe(_or_default(key, saved, defaults))} from the checkpoint (the config says "
                f"{_describe(_or_default(key, current, defaults))}; pass --model.init_args.{key}=... to change it)"
            )
    report_optimizer_settings(init_args, checkpoint.get("optimizer_states") or [], checkpoint_path, command_line_keys)
    return changes


#: entries of an optimizer's param_groups that are no constructor setting
_GROUP_BOOKKEEPING = frozenset({"params", "initial_lr", "param_names"})


def report_optimizer_settings(init_args: Namespace, states: list[Any], checkpoint_path: str, command_line_keys: set[str]) -> None:
    """A resumed optimizer continues with the settings saved in its state (Lightning restores its param groups, lr
    included): say so for each setting the config gives otherwise, and refuse what cannot resume, another optimizer
    class (its saved settings are not the config's class's) or a setting changed on the command line, which the
    restore would silently undo."""
    for index, key in enumerate(("generator_optimizer", "discriminator_optimizer")):
        config = init_args.get(key)
        if not isinstance(config, Namespace) or index >= len(states) or not states[index].get("param_groups"):
            continue
        saved = states[index]["param_groups"][0]
        accepted = set(inspect.signature(import_class(config.class_path).__init__).parameters) - {"self", "params"}
        foreign = sorted(set(saved) - accepted - _GROUP_BOOKKEEPING)
        if foreign:
            raise ValueError(
                f"--ckpt_path={checkpoint_path}: its {key} has settings {', '.join(foreign)} that {config.class_path} "
                "does not take: the run trained with another optimizer; resume with that one, or start a new run"
            )
        for name, value in _plain(config).get("init_args", {}).items():
            if name not in saved or _plain(saved[name]) == _plain(value):
                continue
            if key in command_line_keys:
                raise ValueError(
                    f"--ckpt_path={checkpoint_path}: {key} {name}={value!r} cannot change on resume (the optimizer "
                    f"continues with its saved state, {name}={_plain(saved[name])!r}); start a new run to change it"
                )
            rank_zero_info(
                f"lit-gans: {key} {name}={_plain(saved[name])!r} from the checkpoint (the config says {value!r}; an "
                "optimizer resumes with its saved settings)"
            )


def _init_defaults(cls: type) -> dict[str, Any]:
    """The default of every constructor argument of ``cls``, its base classes' too (a subclass passes ``**kwargs``
    on)."""
    defaults: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for name, parameter in inspect.signature(klass.__init__).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                defaults.setdefault(name, parameter.default)
    return defaults


def _or_default(key: str, value: Any, defaults: dict[str, Any]) -> Any:
    """The objective that ``objective=None`` means (the class's default); any other value as it is."""
    return defaults["objective"] if key == "objective" and value is None and "objective" in defaults else value


def _describe(value: Any) -> str:
    """A model argument for a message: an objective by its class (and arguments), any other value by ``repr``."""
    value = _plain(value)
    if isinstance(value, dict) and "class_path" in value:
        arguments = ", ".join(f"{k}={v!r}" for k, v in (value.get("init_args") or {}).items())
        return f"{value['class_path']}({arguments})"
    return repr(value)


def _namespace(value: Any) -> Any:
    """A stored ``{"class_path": ..., "init_args": {...}}`` (an objective, a regularizer, an augmentation), or a list
    of them, as the namespace jsonargparse builds."""
    if isinstance(value, list):
        return [_namespace(v) for v in value]
    if isinstance(value, dict) and "class_path" in value:
        return Namespace(class_path=value["class_path"], init_args=Namespace(**(value.get("init_args") or {})))
    return value


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists and namespaces as dictionaries, so that a yaml value equals what a checkpoint
    stored."""
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        defaults = {"init_args": {}} if "class_path" in value else {}  # a class without arguments
        return {k: _plain(v) for k, v in {**defaults, **value}.items()}
    return value


def writes_into_checkpoint_run(logger_config: Any, checkpoint_path: str) -> bool:
    """Whether a fit resumed from ``checkpoint_path`` with this logger config would write into the checkpoint's own
    run (its W&B run and checkpoint folder): unless a W&B logger names another run or project. Without a W&B run
    to tell by, it is assumed to."""
    run = wandb_run_in_checkpoint(checkpoint_path)
    for entry in logger_config if isinstance(logger_config, list) else [logger_config]:
        if run is None or not isinstance(entry, Namespace) or not issubclass(import_class(entry.class_path), LightningWandbLogger):
            continue
        init_args = entry.get("init_args") or Namespace()
        named = init_args.get("version") or init_args.get("id")
        project = init_args.get("project") or os.environ.get("WANDB_PROJECT")
        if (named and named != run["id"]) or (project and project != run["project"]):
            return False
    return True


def continue_wandb_run(logger_config: Any, checkpoint_path: str) -> None:
    """Point the configured W&B logger at the run the checkpoint's training logged to, so that a resumed fit
    continues one run (curves, and checkpoints in the same ``<project>/<run id>`` folder) instead of starting a new
    one. Only when the config names no run (``version``/``id`` unset) and the same project."""
    run = wandb_run_in_checkpoint(checkpoint_path)
    if run is None:
        return
    for entry in logger_config if isinstance(logger_config, list) else [logger_config]:
        if not isinstance(entry, Namespace) or not issubclass(import_class(entry.class_path), LightningWandbLogger):
            continue
        init_args = entry.get("init_args") or Namespace()
        project = init_args.get("project") or os.environ.get("WANDB_PROJECT")
        if init_args.get("version") or init_args.get("id") or (project and project != run["project"]):
            return
        init_args["version"] = run["id"]
        if "resume" in init_args and init_args["resume"] is None:  # Lightning's "allow" unless the config says otherwise
            init_args["resume"] = "allow"
        entry["init_args"] = init_args
        rank_zero_info(f"lit-gans: continuing W&B run {run['id']} of project {run['project']}")
        return


def has_wandb_logger(logger_config: Any) -> bool:
    """Whether the trainer's ``logger`` config holds a W&B logger."""
    return any(
        isinstance(entry, Namespace) and issubclass(import_class(entry.class_path), LightningWandbLogger)
        for entry in (logger_config if isinstance(logger_config, list) else [logger_config])
    )


def name_wandb_run(logger_config: Any, name: str, replace: bool = False) -> None:
    """Name the W&B run ``name`` (:func:`run_name` unless the user gave ``--name``): when it has no name, or over
    the config's name with ``replace``."""
    for entry in logger_config if isinstance(logger_config, list) else [logger_config]:
        if isinstance(entry, Namespace) and issubclass(import_class(entry.class_path), LightningWandbLogger):
            init_args = entry.get("init_args") or Namespace()
            if replace or not init_args.get("name"):
                init_args["name"] = name
                entry["init_args"] = init_args


def run_name(config: Namespace) -> str:
    """A run's name from its model and data: the model class, its objective class (without ``Loss``) and its
    conditioning when the config sets them, and the data (an image folder's name, else the DataModule class without
    ``DataModule``) with its ``image_size`` when set: ``DCGAN-MNIST``, ``DCGAN-RaLSGAN-CatFaces64``,
    ``WGANGP-projection-Calligraphy128``, ``DCGAN-glyphs64``. The first ``--config`` file's name said neither when
    a run changed its data (``dcgan_cats64`` for glyphs)."""
    parts = []
    model, data = config.get("model"), config.get("data")
    if isinstance(model, Namespace) and model.get("class_path"):
        parts.append(model.class_path.rsplit(".", 1)[-1])
        init_args = model.get("init_args") or Namespace()
        objective = init_args.get("objective")
        if isinstance(objective, Namespace) and objective.get("class_path"):
            parts.append(objective.class_path.rsplit(".", 1)[-1].removesuffix("Loss"))
        if init_args.get("conditioning"):
            parts.append(str(init_args.conditioning))
    if isinstance(data, Namespace) and data.get("class_path"):
        init_args = data.get("init_args") or Namespace()
        name = data.class_path.rsplit(".", 1)[-1].removesuffix("DataModule")
        if import_class(data.class_path) is ImageFolderDataModule and init_args.get("data_dir"):
            name = Path(str(init_args.data_dir)).expanduser().resolve().name or name
        parts.append(f"{name}{init_args.image_size}" if init_args.get("image_size") else name)
    return "-".join(parts) or "lit-gans"

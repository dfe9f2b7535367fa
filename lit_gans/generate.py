"""Images out of a trained checkpoint, without writing Python: :func:`generate` (the ``lit-gans generate``
command) and :func:`load_model`, which rebuilds any model of the package from its checkpoint file alone.

Example::

    lit-gans generate --ckpt_path lightning_logs/lit-gans/<run id>/checkpoints --num_images 10000 --output_dir fakes
    lit-gans generate --ckpt_path best.ckpt --seeds 0-35 --truncation 0.7 --output_dir favourites
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from lit_gans.checkpoints import (
    FILE_UNSAFE,
    TEMPORARY_FILE,
    UnsafeCheckpointError,
    checkpoint_to_sample,
    load_checkpoint_file,
    remove_stale_temporaries,
)
from lit_gans.files import WriteError, atomic_write_bytes, check_writable
from lit_gans.gan import CLASS_NAMES_KEY, GAN, MODEL_CLASS_KEY
from lit_gans.latent import interpolate, render_grid, to_uint8_image
from lit_gans.validation import check_choice, check_float, check_int

#: what :func:`generate` writes besides the images: its arguments and what it resolved, written last
MANIFEST = "generate.json"
NPZ_FILE = "images.npz"
FORMATS = ("png", "npz")
#: the interpolation GIF: paths (columns of each frame), keyframes per path, frame duration
GIF_PATHS, GIF_KEYFRAMES, GIF_FRAME_MS = 8, 4, 80
_NUMBERED_PNG = re.compile(r"^(\d{6,}|seed\d{4,})\.png$")  # generate's names: an index (6+ digits) or a seed
_SEED_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_CLASS_FOLDER = re.compile(r"^\d+(_.*)?$")


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------- loading
def import_class(class_path: str) -> Any:
    """The object ``class_path`` names (``package.module.Class``, nested qualnames too)."""
    parts = class_path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(f"no module of {class_path!r} can be imported")


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        checkpoint = load_checkpoint_file(path, mmap=True)
    except UnsafeCheckpointError as err:  # a pickle of arbitrary objects: never unpickled
        raise ValueError(f"ckpt_path={err}") from None
    except Exception as err:  # not a zip, truncated
        raise ValueError(f"ckpt_path={path} is not a checkpoint torch can read ({type(err).__name__})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"ckpt_path={path} is not a Lightning checkpoint (no state_dict in it)")
    return checkpoint


def describe_checkpoint(ckpt_path: Union[str, os.PathLike]) -> str:
    """``<file> (generator step N)``: which checkpoint a run folder or file means, for the commands' output."""
    path = Path(ckpt_path)
    if path.is_dir():
        from lit_gans.export import exported_config

        exported = exported_config(path)
        if exported is not None:
            return f"{path} (exported generator, generator step {exported['generator_step']})"
        path = checkpoint_to_sample(path)
    steps = _read_checkpoint(path)["state_dict"].get("generator_steps")
    return f"{path} (generator step {int(steps)})" if steps is not None else str(path)


def load_model(ckpt_path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> GAN:
    """Rebuild the model of a checkpoint from the file alone, with no config: any :class:`~lit_gans.GAN` of the
    package (conditional, with a weight-averaged generator, written by ``lit-gans fit`` or by a Python
    ``Trainer``), its class read from the checkpoint, its weights loaded, in eval mode on ``map_location``.

    The class comes from the checkpoint's ``lit_gans_model_class`` entry (:data:`lit_gans.gan.MODEL_CLASS_KEY`),
    else from ``hyper_parameters["_class_path"]`` (what LightningCLI stores, and all older files have). The class
    names of a conditional model's training data, where the checkpoint stores them
    (:data:`lit_gans.gan.CLASS_NAMES_KEY`), are set as ``model.class_names`` (else ``None``), the checkpoint file
    it loaded (a folder's newest) as ``model.checkpoint_path``.

    A folder written by ``lit-gans export --format hf`` (:func:`lit_gans.export.export`) loads too, offline: its
    model is rebuilt from ``config.json`` and its generator (the exported one, averaged or raw) from
    ``model.safetensors``; it has no weight-averaged copy, and its discriminator is untrained (not exported).

    Args:
        ckpt_path: a checkpoint file, or a run's checkpoint folder (its best checkpoint, else its newest:
            :func:`checkpoint_to_sample`), or an exported Hugging Face folder.
        map_location: the device to load the weights onto.

    Raises:
        FileNotFoundError: no such file or folder, or no valid checkpoint in the folder.
        ValueError: a file that is no lit-gans checkpoint, or names a class that is not a ``lit_gans.GAN``, or
            whose model cannot be rebuilt; one line, naming the path and what is wrong.

    Example::

        model = load_model("lightning_logs/lit-gans/<run id>/checkpoints")
        images = model.sample(16)
    """
    path = Path(ckpt_path)
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path={path}: no such checkpoint file or folder")
    if path.is_dir():
        from lit_gans.export import exported_config, load_exported

        if exported_config(path) is not None:
            return load_exported(path, map_location)
        path = checkpoint_to_sample(path)
    checkpoint = _read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") or {}
    class_path = checkpoint.get(MODEL_CLASS_KEY) or (hparams.get("_class_path") if isinstance(hparams, dict) else None)
    if not isinstance(class_path, str):
        raise ValueError(
            f"ckpt_path={path} is not a lit-gans checkpoint: it names no model class (neither {MODEL_CLASS_KEY!r} nor "
            "hyper_parameters['_class_path'])"
        )
    try:
        cls = import_class(class_path)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"ckpt_path={path} names the model class {class_path}, which cannot be imported ({_one_line(err)})") from err
    if not (isinstance(cls, type) and issubclass(cls, GAN)):
        raise ValueError(f"ckpt_path={path} holds a {class_path}, which is not a lit_gans.GAN model")
    missing = unstored_arguments(cls, hparams if isinstance(hparams, dict) else {})
    if missing:
        raise ValueError(
            f"ckpt_path={path} holds a {cls.__name__} built from objects that a checkpoint does not store "
            f"({', '.join(missing)}): build them as for training and load it in Python, "
            f"{cls.__name__}.load_from_checkpoint(path, {', '.join(f'{m}=...' for m in missing)}), or train a model "
            "class that builds its own networks (DCGAN, WGANGP, ...)"
        )
    names = checkpoint.get(CLASS_NAMES_KEY)
    del checkpoint
    try:
        model = cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except Exception as err:  # the hyperparameters do not rebuild the model, or the weights do not fit it
        raise ValueError(
            f"ckpt_path={path}: {cls.__name__} cannot be rebuilt from it ({type(err).__name__}: {_one_line(err)[:300]})"
        ) from err
    model = model.to(map_location).eval()
    model.checkpoint_path = str(path)
    names = list(map(str, names)) if isinstance(names, (list, tuple)) else None
    model.class_names = names if names is not None and len(names) == model.num_classes else None
    return model


def unstored_arguments(cls: type, hparams: dict[str, Any]) -> list[str]:
    """The required constructor arguments of ``cls`` that the checkpoint's hyperparameters lack (the networks of a
    plain :class:`~lit_gans.GAN`, which are objects and so never stored)."""
    required = [
        p.name for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]  # fmt: skip
    return [name for name in required if name not in hparams]


# ---------------------------------------------------------------------------------------------- labels and folders
def class_folders(num_classes: int, class_names: Optional[Sequence[str]] = None) -> list[str]:
    """One folder name per class, in label order: the zero-padded index, then the class name made filesystem-safe
    (``3_cat``; just ``3`` when the name is the index or missing). Sorted as strings they keep the label order, so
    :class:`~lit_gans.datamodules.ImageFolderDataModule` (``labels=True``) reads a folder of them back with the
    same label indices.

    Example::

        >>> class_folders(12, ["zero", "a/b", "", "3"])[:4]
        ['00_zero', '01_a_b', '02', '03']
    """
    width = len(str(max(num_classes - 1, 0)))
    folders = []
    for index in range(num_classes):
        name = str(class_names[index]) if class_names is not None and index < len(class_names) else ""
        safe = FILE_UNSAFE.sub("_", name).strip("._")[:64]
        folders.append(f"{index:0{width}d}" + ("" if safe in ("", str(index)) else f"_{safe}"))
    return folders


def resolve_labels(
    labels: Union[int, str, Sequence[Union[int, str]]], num_classes: int, class_names: Optional[Sequence[str]] = None
) -> list[int]:
    """The class indices that ``labels`` lists: an index, a class name, a comma-separated string of them, or a list
    of them. A string that is no class name but an integer is taken as an index.

    Raises:
        ValueError: an unknown class or an index outside ``[0, num_classes)``, named.
    """
    items = labels.split(",") if isinstance(labels, str) else [labels] if isinstance(labels, int) else list(labels)
    names = [str(n) for n in class_names] if class_names else []
    resolved = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if item in names:
                resolved.append(names.index(item))
                continue
            if not re.fullmatch(r"-?\d+", item):
                known = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") if names else "none stored"
                raise ValueError(f"labels: no class named {item!r} (the checkpoint's class names: {known})")
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"labels: {item!r} is neither a class index nor a class name")
        if not 0 <= item < num_classes:
            raise ValueError(f"labels: class {item} is out of range: the model has classes 0 to {num_classes - 1}")
        resolved.append(item)
    if not resolved:
        raise ValueError("labels: the list of classes is empty")
    return resolved


def _image_labels(model: GAN, n: int, labels: Any, seed: int) -> Optional[Tensor]:
    """The class of each of ``n`` images (on the CPU): ``None`` for an unconditional model; drawn from the training
    data's class frequencies with seed ``seed`` (as :meth:`FIDCallback.fake_labels`) for ``labels=None``; else
    cycling through the listed classes."""
    if not model.num_classes:
        if labels is not None:
            raise ValueError(
                f"labels={labels!r}: the checkpoint's {type(model).__name__} is unconditional (num_classes=0); leave labels out"
            )
        return None
    if labels is None:
        return model.draw_labels(n, generator=torch.Generator().manual_seed(seed)).cpu()
    listed = torch.tensor(resolve_labels(labels, model.num_classes, getattr(model, "class_names", None)))
    return listed[torch.arange(n) % len(listed)]


# ---------------------------------------------------------------------------------------------- writing
def to_uint8(images: Tensor) -> np.ndarray:
    """Images in [-1, 1] ``(N, C, H, W)`` as uint8 ``(N, H, W, C)`` (rounded as
    :func:`~lit_gans.callbacks.features.to_uint8_rgb`, without making them RGB)."""
    x = ((images.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 ``(H, W, C)`` image as PNG: grayscale (``L``) for 1 channel, RGB for 3, RGBA for 4."""
    channels = image.shape[-1]
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise ValueError(f"format='png' needs 1, 3 or 4 channels, and the model makes {channels}: use format='npz'")
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if channels == 1 else image, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _generated_entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """``(what an earlier generate wrote, everything else)`` among the visible entries of ``folder``: the manifest,
    the npz file, numbered PNGs (6 digits or more), and class folders holding only those (and temporary files),
    which must be the manifest's ``class_folders`` when there is a manifest (none: an interrupted run)."""
    generated, other = [], []
    manifest = folder / MANIFEST
    listed = set(json.loads(manifest.read_text()).get("class_folders") or []) if manifest.is_file() else None
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and (entry.name in (MANIFEST, NPZ_FILE) or _NUMBERED_PNG.match(entry.name)):
            generated.append(entry)
        elif entry.is_dir() and _CLASS_FOLDER.match(entry.name) and (listed is None or entry.name in listed) and all(
            f.is_file() and (_NUMBERED_PNG.match(f.name) or TEMPORARY_FILE.match(f.name)) for f in entry.iterdir()
        ):
            generated.append(entry)
        else:
            other.append(entry)
    return generated, other


def _prepare_output_dir(folder: Path, file_format: str, overwrite: bool) -> None:
    """Create ``folder``, or check that nothing of an earlier run (or anything else, for PNGs) would mix with this
    one; with ``overwrite``, remove what an earlier generate wrote there (and only that)."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output_dir={folder} is a file, not a folder")
    for name in (MANIFEST, NPZ_FILE):
        if (folder / name).is_dir():
            raise ValueError(f"output_dir={folder} holds a folder named {name}, where generate writes a file: remove it")
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    generated, other = _generated_entries(folder)
    if generated and not overwrite:
        raise ValueError(
            f"output_dir={folder} already holds generated images ({len(generated)} entries, e.g. {generated[0].name}): "
            "pass overwrite=True (--overwrite true) to replace them, or choose another folder"
        )
    if other and file_format == "png":
        raise ValueError(
            f"output_dir={folder} holds files that generate did not write (e.g. {other[0].name}), which would mix with "
            "the images when the folder is read as a dataset: choose an empty or new folder"
        )
    for entry in generated:
        if entry.is_dir():
            for f in entry.iterdir():
                f.unlink()
            entry.rmdir()
        else:
            entry.unlink()


def resolve_ema(model: GAN, ema: Optional[bool]) -> bool:
    """Whether to use the weight-averaged generator: ``ema``, or with ``None`` whenever the model keeps one.

    Raises:
        ValueError: ``ema=True`` for a model without one (trained without ``generator_ema_decay``), or an ``ema``
            that is no bool.
    """
    if ema is not None and not isinstance(ema, bool):
        raise ValueError(f"ema={ema!r} must be true, false or left out (None)")
    if ema and model.generator_ema is None:
        raise ValueError(
            f"ema=True: the checkpoint's {type(model).__name__} has no weight-averaged generator (it was trained without "
            "generator_ema_decay); leave ema out or pass false"
        )
    return model.generator_ema is not None if ema is None else ema


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a torch device ('cpu', 'cuda', 'cuda:1', 'auto')") from err
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: this machine has no CUDA GPU (use cpu or auto)")
    return chosen


# ---------------------------------------------------------------------------------------------- seeds and truncation
def parse_seeds(seeds: Union[int, str, Sequence[Union[int, str]]]) -> list[int]:
    """The seeds that ``seeds`` lists, in order: an integer, a range ``"0-35"`` (both ends included), a
    comma-separated mix (``"1,5,9"``, ``"0-3,10,20-22"``), or a list of those.

    Example::

        >>> parse_seeds("0-3,10,20-21")
        [0, 1, 2, 3, 10, 20, 21]

    Raises:
        ValueError: an item that is no seed (negative, not an integer, a range that runs backwards), a seed listed
            twice (its file would be written twice), or an empty list; one line naming ``seeds``.
    """
    items = seeds.split(",") if isinstance(seeds, str) else [seeds] if isinstance(seeds, int) else list(seeds)
    resolved: list[int] = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not text:
            raise ValueError(f"seeds={seeds!r}: {item!r} is no seed (write seeds as 7, 0-35 or 1,5,9)")
        span = _SEED_RANGE.match(text)
        if span is not None:
            first, last = int(span[1]), int(span[2])
            if last < first:
                raise ValueError(f"seeds={seeds!r}: the range {text} runs backwards (write {last}-{first})")
            resolved.extend(range(first, last + 1))
        elif text.isdigit():
            resolved.append(int(text))
        else:
            raise ValueError(f"seeds={seeds!r}: {text!r} is no seed: seeds are integers >= 0 (7, 0-35, 1,5,9)")
    if not resolved:
        raise ValueError(f"seeds={seeds!r}: the list of seeds is empty")
    repeated = sorted(seed for seed, count in Counter(resolved).items() if count > 1)
    if repeated:
        raise ValueError(f"seeds={seeds!r} lists seed {repeated[0]} more than once: each seed is one image")
    return resolved


def seed_latents(model: GAN, seeds: Sequence[int], labels: Any = None) -> tuple[Tensor, Optional[Tensor]]:
    """One latent vector per seed, each drawn alone from ``torch.Generator().manual_seed(seed)``
    (``model.sample_latent(1, generator)``, as stylegan2-ada-pytorch's ``generate.py`` draws ``z`` from
    ``RandomState(seed)``): the image of a seed is the same whether it is generated alone or among others. A
    conditional model's class, with ``labels=None``, is drawn from the training data's class frequencies by the
    same generator, after the latent; listed ``labels`` cycle through the seeds in order (one class: every seed)."""
    z, drawn = [], []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        z.append(model.sample_latent(1, generator=generator))
        if model.num_classes and labels is None:
            drawn.append(model.draw_labels(1, generator=generator).cpu())
    image_labels = torch.cat(drawn) if drawn else _image_labels(model, len(seeds), labels, 0)
    return torch.cat(z), image_labels


def truncate(model: GAN, z: Tensor, psi: float) -> Tensor:
    r"""The truncation trick as an interpolation towards the latent mean (StyleGAN's, Karras et al. 2019, sec. 4
    and appendix B, applied here to ``z``, as these generators have no mapping network):

    .. math:: z' = \bar z + \psi\,(z - \bar z), \qquad \bar z = 0 \text{ for } \mathcal N(0, I)
              \text{ and } U[-1, 1]^d, \text{ so } z' = \psi z

    ``psi=1`` leaves every image as it is; smaller ``psi`` trades variety for typicality, and ``psi=0`` gives every
    seed the image of the mean latent. Chosen over BigGAN's trick (Brock et al. 2019, sec. 3.1: redraw each
    coordinate with ``|z_i|`` above a threshold) because it is continuous in ``psi``: a seed keeps its image,
    only more typical, so images at several ``psi`` can be compared, whereas a redraw replaces coordinates by
    unrelated values; it applies to uniform latents alike; and BigGAN relied on orthogonal regularization to keep
    its generator smooth under truncation, which these models were not trained with. InfoGAN's codes are left as
    they are: only its ``noise_dim`` noise coordinates (the first ones) are truncated."""
    dim = int(getattr(model, "noise_dim", z.shape[1]))
    mean = torch.zeros_like(z[:, :dim])  # both latent distributions of the package are centred
    truncated = z.clone()
    truncated[:, :dim] = mean + psi * (z[:, :dim] - mean)
    return truncated


# ---------------------------------------------------------------------------------------------- the command
def generate(
    ckpt_path: str,
    num_images: Optional[int] = None,
    output_dir: Optional[str] = None,
    seed: int = 1234,
    batch_size: int = 250,
    labels: Optional[Union[int, str, list[Union[int, str]]]] = None,
    ema: Optional[bool] = None,
    format: Literal["png", "npz"] = "png",
    overwrite: bool = False,
    interpolation_gif: Optional[str] = None,
    interpolation_steps: int = 8,
    device: str = "auto",
    progress: bool = True,
    seeds: Optional[Union[str, int, list[Union[int, str]]]] = None,
    truncation: Optional[float] = None,
) -> Path:
    """Generate images with a trained checkpoint and write them as numbered PNG files (or one ``.npz`` file).

    Either ``num_images`` images from one seed, or one image per seed of ``seeds``. With ``num_images``, the ``N``
    latent vectors are drawn at once with ``model.sample_latent(N, generator=torch.Generator().
    manual_seed(seed))``, so the same seed gives the same files whatever the batch size, and, with
    ``seed`` equal to ``FIDCallback``'s seed and ``num_images`` to its ``num_fake``, exactly the fakes that
    ``FIDCallback`` scores. With ``seeds`` (``--seeds 0-35``, as stylegan2-ada-pytorch's ``generate.py``), each
    image's latent is drawn alone from its own seed (:func:`seed_latents`), so the image of seed 7 is the same
    whether it is generated alone or in a range, and its file is named after it (``seed0007.png``).
    Images are uint8 at the model's resolution, grayscale for one channel, RGB for three.
    A conditional model's images go into one subfolder per class (``<index>_<class name>``, see
    :func:`class_folders`), which ``ImageFolderDataModule(labels=True)`` reads back with the same label indices
    as long as every class got images. Every file is written atomically (a temporary file renamed over it), and
    ``generate.json`` (the arguments, the checkpoint, the classes) last, so a folder without it is an interrupted
    run. The paths are checked, and the latents allocated, before anything is generated or written: a folder that
    cannot be written or more images than the memory holds fail at once, in one line. Ctrl-C (``KeyboardInterrupt``)
    or a full disk (:class:`~lit_gans.files.WriteError`) mid-way leave only complete files, and their message says
    how many images were written.

    Args:
        ckpt_path: the checkpoint file, or a run's checkpoint folder (its best checkpoint by the metric each file
            stores, else its newest), or a folder of ``lit-gans export --format hf``. Any model class; the
            checkpoint alone rebuilds it (``load_model``).
        num_images: how many images to generate (leave out with ``seeds``).
        output_dir: the folder to write into, created if missing (required). It must not already hold generated
            images (see ``overwrite``) nor, for PNGs, anything else.
        seed: seed of the latent vectors (and of a conditional model's drawn labels); the default is
            ``FIDCallback``'s.
        batch_size: images per generator forward: speed and memory; on the CPU the files are bitwise the same for
            any batch size (a GPU may choose other kernels for other batch sizes).
        labels: a conditional model's classes: ``None`` draws each image's class from the training data's class
            frequencies (seeded by ``seed``, or by each image's seed with ``seeds``); a class index, a class name,
            or a list of them (``[3, 5]``, ``"cat,dog"``) makes the images cycle through those classes, balanced.
        ema: ``None``: the weight-averaged generator when the model has one (``generator_ema_decay``), else the
            raw one; ``true``: the averaged one (an error without one); ``false``: the raw generator.
        format: ``png`` (numbered files ``000000.png``, ..., or ``seed0007.png``, ... with ``seeds``) or ``npz``
            (one ``images.npz`` holding ``images``, uint8 ``(N, H, W, C)``, for a conditional model ``labels``,
            int64 ``(N,)``, and with ``seeds`` the ``seeds``, int64 ``(N,)``).
        overwrite: replace the images an earlier run wrote into ``output_dir`` (those files only; nothing else is
            ever deleted).
        interpolation_gif: also write an animated GIF to this path (outside ``output_dir`` for PNGs): 8 spherical
            interpolation paths side by side, each looping through 4 latents seeded by ``seed`` (a conditional
            model's path keeps one class).
        interpolation_steps: GIF frames between two keyframes.
        device: ``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:1``, ...
        progress: show a progress bar on stderr (only when it is a terminal).
        seeds: one image per seed: ``0-35``, ``1,5,9``, or a mix (``0-3,10``); instead of ``num_images``.
        truncation: ``psi``, the truncation trick as StyleGAN's interpolation towards the latent mean,
            ``z' = mean + psi (z - mean)`` (``psi * z``: the package's latents are centred), not BigGAN's
            resampling of ``|z_i| > threshold``: continuous in ``psi``, so each seed keeps its image, only more
            typical (``1``: unchanged, ``0``: the mean latent's image for all; see :func:`truncate`). Applies to
            the images and the GIF.

    Returns:
        The folder of PNGs, or the ``.npz`` file.

    Example::

        lit-gans generate --ckpt_path lightning_logs/lit-gans/abc123/checkpoints --num_images 10000 --output_dir fakes
        lit-gans generate --ckpt_path best.ckpt --num_images 64 --output_dir sevens --labels 7 --ema false
        lit-gans generate --ckpt_path last.ckpt --num_images 50000 --output_dir eval --format npz --seed 0
        lit-gans generate --ckpt_path best.ckpt --seeds 0-35 --truncation 0.7 --output_dir favourites
    """
    if output_dir is None:
        raise ValueError("output_dir is required: the folder to write the images into (--output_dir DIR)")
    if (num_images is None) == (seeds is None):
        raise ValueError(
            "give either num_images (that many images from --seed) or seeds (one image per seed, e.g. --seeds 0-35)"
            + (", not both" if seeds is not None else "")
        )
    seed_list = parse_seeds(seeds) if seeds is not None else None
    num_images = len(seed_list) if seed_list is not None else check_int("num_images", num_images)
    batch_size = check_int("batch_size", batch_size)
    seed = check_int("seed", seed, minimum=0)
    interpolation_steps = check_int("interpolation_steps", interpolation_steps)
    psi = check_float("truncation", truncation, inclusive=True, optional=True)
    check_choice("format", format, FORMATS)
    if ema is not None and not isinstance(ema, bool):
        raise ValueError(f"ema={ema!r} must be true, false or left out (None)")
    folder = Path(output_dir)
    gif = Path(interpolation_gif) if interpolation_gif is not None else None
    if gif is not None and format == "png" and folder.resolve() in gif.resolve().parents:
        raise ValueError(
            f"interpolation_gif={gif} is inside output_dir={folder}, where it would be read as one more image: put it "
            "elsewhere"
        )
    check_writable(folder, "output_dir", folder=True)  # paths first: nothing is generated for a path that fails
    if gif is not None:
        check_writable(gif, "interpolation_gif")
    torch_device = _resolve_device(device)
    model = load_model(ckpt_path, map_location=torch_device)
    use_ema = resolve_ema(model, ema)
    z, image_labels, array = _allocate(model, num_images, labels, seed, format, seed_list)
    if psi is not None:
        z = truncate(model, z, psi)
    _prepare_output_dir(folder, format, overwrite)

    folders = class_folders(model.num_classes, model.class_names) if model.num_classes else []
    if image_labels is not None and format == "png":
        missing = sorted(set(range(model.num_classes)) - set(image_labels.tolist()))
        if missing:
            warnings.warn(
                f"lit_gans generate: {len(missing)} of the {model.num_classes} classes get no image (e.g. class "
                f"{missing[0]}); ImageFolderDataModule(labels=True) numbers only the folders it finds, so it would not "
                "read this folder back with the model's label indices",
                stacklevel=2,
            )
        for name in sorted({folders[c] for c in image_labels.tolist()}):
            (folder / name).mkdir(exist_ok=True)
    if seed_list is not None:  # sorted by name, the files keep the order of the seeds' values
        width = max(4, len(str(max(seed_list))))
        file_names = [f"seed{s:0{width}d}.png" for s in seed_list]
    else:
        width = max(6, len(str(num_images - 1)))
        file_names = [f"{index:0{width}d}.png" for index in range(num_images)]
    try:
        bar = tqdm(total=num_images, unit="img", desc="lit-gans generate", disable=None if progress else True)
        with bar:
            for start in range(0, num_images, batch_size):
                chunk = z[start : start + batch_size]
                chunk_labels = None if image_labels is None else image_labels[start : start + batch_size]
                images = to_uint8(_sample(model, chunk, chunk_labels, use_ema))
                shape = images.shape[1:]
                if format == "npz":
                    array[start : start + len(images)] = images
                else:
                    for offset, image in enumerate(images):
                        target = folder if chunk_labels is None else folder / folders[int(chunk_labels[offset])]
                        atomic_write_bytes(target / file_names[start + offset], png_bytes(image), fsync=False)
                bar.update(len(images))
        result = folder
        if format == "npz":
            result = folder / NPZ_FILE
            payload = {"images": array}
            if image_labels is not None:
                payload["labels"] = image_labels.numpy().astype(np.int64)
            if seed_list is not None:
                payload["seeds"] = np.asarray(seed_list, dtype=np.int64)
            buffer = io.BytesIO()
            np.savez(buffer, **payload)
            atomic_write_bytes(result, buffer.getvalue())
        if gif is not None:
            write_interpolation_gif(model, gif, seed, labels, use_ema, interpolation_steps, batch_size, truncation=psi)
        manifest = {
            "ckpt_path": str(Path(ckpt_path)),
            "checkpoint_file": model.checkpoint_path,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "generator_step": int(model.generator_step),
            "num_images": num_images,
            "seed": seed if seed_list is None else None,
            "seeds": seed_list,
            "truncation": psi,
            "ema": use_ema,
            "labels": labels,
            "format": format,
            "image_shape": list(shape),  # (H, W, C)
            "class_folders": folders,
            "class_names": model.class_names,
            "interpolation_gif": str(gif) if gif is not None else None,
        }
        atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    except KeyboardInterrupt:  # Ctrl-C: every file written is complete; say which (lit_gans.cli exits 130)
        raise KeyboardInterrupt(_unfinished(folder, num_images, format)) from None
    except WriteError as err:  # a full disk: the same, after what could not be written
        err.context = _unfinished(folder, num_images, format)
        raise
    return result


def _allocate(
    model: GAN, num_images: int, labels: Any, seed: int, file_format: str, seeds: Optional[list[int]] = None
) -> tuple[Tensor, Optional[Tensor], Optional[np.ndarray]]:
    """The seeded latents (one seed, or one per image of ``seeds``), the labels and (for npz) the image array,
    allocated before anything is written, so that more images than the memory holds are refused in one line and
    leave no folder behind."""
    try:
        if seeds is not None:
            z, image_labels = seed_latents(model, seeds, labels)
        else:
            z = model.sample_latent(num_images, generator=torch.Generator().manual_seed(seed))
            image_labels = _image_labels(model, num_images, labels, seed)
        channels, height, width = model.image_shape
        array = np.empty((num_images, height, width, channels), dtype=np.uint8) if file_format == "npz" else None
    except (MemoryError, RuntimeError) as err:  # torch's allocators raise RuntimeErrors ("can't allocate memory")
        if not isinstance(err, MemoryError) and "memory" not in str(err).lower():
            raise
        latent_bytes = model.sample_latent(1).numel() * 4 * num_images
        raise ValueError(
            f"num_images={num_images} does not fit in memory: its latent vectors alone take {latent_bytes / 1e9:.3g} GB "
            "(all are drawn at once, so that a seed gives the same images whatever the batch size); generate fewer"
        ) from None
    return z, image_labels, array


def _unfinished(folder: Path, num_images: int, file_format: str) -> str:
    """What an interrupted :func:`generate` left in ``folder`` (counted there: an interruption can come between a
    file's rename and any count kept in Python)."""
    if file_format == "npz":
        written = num_images if (folder / NPZ_FILE).is_file() else 0
    else:
        written = sum(1 for d in (folder, *filter(Path.is_dir, folder.iterdir())) for f in d.iterdir() if _NUMBERED_PNG.match(f.name))
    at_end = f" ({NPZ_FILE} is written whole, at the end)" if file_format == "npz" and not written else ""
    return (
        f"{written} of {num_images} images were written to {folder}{at_end}, each complete; no {MANIFEST}, which "
        "marks a finished run (--overwrite true replaces them)"
    )


def _sample(model: GAN, z: Tensor, labels: Optional[Tensor], ema: bool) -> Tensor:
    """``model.sample`` of ``z`` (with ``labels`` for a conditional model), autocast off."""
    with torch.autocast(device_type=model.device.type, enabled=False):
        if labels is None:
            return model.sample(z=z, ema=ema)
        return model.sample(z=z, labels=labels.to(model.device), ema=ema)


def write_interpolation_gif(
    model: GAN,
    path: Union[str, os.PathLike],
    seed: int = 1234,
    labels: Any = None,
    ema: Optional[bool] = None,
    steps: int = 8,
    batch_size: int = 250,
    truncation: Optional[float] = None,
) -> Path:
    """An animated GIF of spherical interpolation (:func:`~lit_gans.latent.interpolate`): ``GIF_PATHS`` paths side
    by side, each looping through ``GIF_KEYFRAMES`` latents seeded by ``seed``, ``steps`` frames between two
    keyframes; written atomically. A conditional model's path keeps one class (the labels as in :func:`generate`);
    ``truncation`` truncates the keyframes (:func:`truncate`).
    """
    path = Path(path)
    use_ema = model.generator_ema is not None if ema is None else ema
    keys = model.sample_latent(GIF_PATHS * GIF_KEYFRAMES, generator=torch.Generator().manual_seed(seed))
    if truncation is not None:
        keys = truncate(model, keys, truncation)
    keys = keys.view(GIF_PATHS, GIF_KEYFRAMES, -1)
    path_labels = _image_labels(model, GIF_PATHS, labels, seed)
    frames = []  # (frame, path, latent)
    for k in range(GIF_KEYFRAMES):
        segment = [interpolate(keys[p, k], keys[p, (k + 1) % GIF_KEYFRAMES], steps + 1)[:-1] for p in range(GIF_PATHS)]
        frames.append(torch.stack(segment, dim=1))
    z = torch.cat(frames).reshape(-1, keys.shape[-1])  # frame-major: frame f holds rows f * GIF_PATHS ...
    frame_labels = None if path_labels is None else path_labels.repeat(len(z) // GIF_PATHS)
    images = torch.cat(
        [
            _sample(model, z[i : i + batch_size], None if frame_labels is None else frame_labels[i : i + batch_size], use_ema).cpu()
            for i in range(0, len(z), batch_size)
        ]
    )
    pictures = [
        Image.fromarray(to_uint8_image(render_grid(images[i : i + GIF_PATHS], nrow=GIF_PATHS)))
        for i in range(0, len(images), GIF_PATHS)
    ]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=GIF_FRAME_MS, loop=0)
    atomic_write_bytes(path, buffer.getvalue())
    return path


__all__ = [
    "checkpoint_to_sample", "class_folders", "describe_checkpoint", "generate", "import_class", "load_model",
    "parse_seeds", "png_bytes", "resolve_ema", "resolve_labels", "seed_latents", "to_uint8", "truncate", "write_interpolation_gif",
]

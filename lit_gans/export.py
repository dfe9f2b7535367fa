"""Sharing a trained generator without the package's training code: ``lit-gans export`` writes the generator of a
checkpoint (the weight-averaged one when the model keeps one, as ``lit-gans generate`` uses) as

* ``onnx``: one ``.onnx`` file, inputs ``z`` ``(N, latent_dim)`` float32 (and ``labels`` ``(N,)`` int64 for a
  class-conditional model), output ``images`` ``(N, C, H, W)`` in [-1, 1], a dynamic batch axis; checked with
  ONNX Runtime after writing (outputs equal PyTorch's within :data:`ONNX_TOLERANCE`, at two batch sizes);
* ``torchscript``: one ``.pt`` file (``torch.jit.trace``) that ``torch.jit.load`` runs without lit-gans;
* ``hf``: a Hugging Face model folder in ``huggingface_hub``'s ``PyTorchModelHubMixin`` layout: ``config.json``
  (what rebuilds the model), ``model.safetensors`` (the generator's weights), ``README.md`` (a model card with the
  sample grid ``samples.png``, the training data, the metrics and the command that reproduces them); it loads
  offline with ``lit_gans.load_model(folder)`` (so ``lit-gans generate --ckpt_path folder`` works) and with
  ``HubGenerator.from_pretrained(folder)``; ``--push_to_hub USER/REPO`` uploads it.

Every file records what it holds (model class, latent size and distribution, image shape, classes, generator step):
ONNX metadata ``lit_gans``, a TorchScript extra file ``lit_gans.json``, the folder's ``config.json``. An existing
output is replaced only when it is such an export; anything else there is refused. Files are written beside the
target and renamed into place once verified: a failed export leaves what was there before.

Example::

    lit-gans export --ckpt_path lightning_logs/lit-gans/<run id>/checkpoints --format onnx --output generator.onnx
    lit-gans export --ckpt_path best.ckpt --format hf --output my-gan --config configs/dcgan_mnist.yaml
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
import io
import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
from PIL import Image
from torch import Tensor, nn

from lit_gans.checkpoints import load_checkpoint_file, saved_score
from lit_gans.files import atomic_write_bytes, check_writable, permissions_as_created
from lit_gans.gan import GAN
from lit_gans.generate import import_class, load_model, resolve_ema, seed_latents
from lit_gans.latent import render_grid, to_uint8_image
from lit_gans.validation import check_choice

FORMATS = ("onnx", "torchscript", "hf")
#: the Python packages each format needs beyond lit-gans' own (the ``export`` extra installs them all)
NEEDS = {"onnx": ("onnx", "onnxruntime"), "torchscript": (), "hf": ("huggingface_hub", "safetensors")}
#: what marks an export of lit-gans: the key of the ONNX metadata, the TorchScript extra file, the config entry
MARKER = "lit_gans"
TORCHSCRIPT_EXTRA = "lit_gans.json"
HUB_CONFIG, HUB_WEIGHTS, MODEL_CARD, SAMPLE_GRID = "config.json", "model.safetensors", "README.md", "samples.png"
#: the largest difference allowed between ONNX Runtime's images and PyTorch's (images in [-1, 1])
ONNX_TOLERANCE = 1e-4
#: the newest opset torch's TorchScript-based ONNX exporter writes (``torch.onnx._constants``)
TORCHSCRIPT_EXPORTER_MAX_OPSET = 20
#: the seeds of the model card's sample grid (8 x 8)
GRID_SEEDS = range(64)
#: latents per check of an export (and a second, smaller batch: the batch axis is dynamic)
CHECK_BATCHES = (5, 2)
HUB_TAGS = ["gan", "image-generation", "lit-gans"]


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------- the generator
class ExportedGenerator(nn.Module):
    """The generator alone: ``forward(z)``, or ``forward(z, labels)`` for a class-conditional model, gives images in
    [-1, 1] ``(N, C, H, W)``, as ``GAN.generate`` calls it."""

    def __init__(self, net: nn.Module, conditional: bool) -> None:
        super().__init__()
        self.net = net
        self.conditional = conditional

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        return (self.net(z, labels) if self.conditional else self.net(z)).float()


def generator_of(model: GAN, ema: Optional[bool] = None) -> tuple[ExportedGenerator, bool]:
    """``(generator, averaged)``: a copy of the generator that ``lit-gans generate`` would use (:func:`resolve_ema`),
    its BatchNorm statistics those of its weights, in eval mode, float32, on the CPU."""
    use_ema = resolve_ema(model, ema)
    net = model.averaged_generator() if use_ema else model.generator
    net = copy.deepcopy(net).float().cpu().eval().requires_grad_(False)
    return ExportedGenerator(net, bool(model.num_classes)).eval(), use_ema


def example_inputs(model: GAN, n: int, seed: int = 0) -> tuple[Tensor, ...]:
    """``(z,)`` or ``(z, labels)``: ``n`` seeded latents (and classes ``0, 1, ...``) on the CPU."""
    z = model.sample_latent(n, generator=torch.Generator().manual_seed(seed)).float().cpu()
    return (z, torch.arange(n) % model.num_classes) if model.num_classes else (z,)


def describe(model: GAN, averaged: bool, ckpt_path: Union[str, os.PathLike]) -> dict[str, Any]:
    """What an export records about its generator (the ``lit_gans`` entry of every format)."""
    return {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "latent_dim": int(model.latent_dim),
        "latent_distribution": model.latent_distribution,
        "image_shape": [int(s) for s in model.image_shape],
        "num_classes": int(model.num_classes or 0),
        "class_names": model.class_names,
        "generator_step": int(model.generator_step),
        "averaged_generator": averaged,
        "checkpoint": str(getattr(model, "checkpoint_path", None) or ckpt_path),
        "output_range": [-1.0, 1.0],
    }


# ---------------------------------------------------------------------------------------------- the folder model
def _jsonable(value: Any, name: str) -> Any:
    """``value`` as plain JSON values (tuples become lists), or a one-line ValueError naming ``name``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{name}.{k}") for k, v in value.items()}
    raise ValueError(f"export: the hyperparameter {name} is a {type(value).__name__}, which config.json cannot hold")


def hub_config(model: GAN, averaged: bool, ckpt_path: Union[str, os.PathLike]) -> dict[str, Any]:
    """``config.json`` of an exported folder: :func:`describe` plus the hyperparameters that rebuild the model
    (without a weight average: the folder holds one generator, the one exported)."""
    parameters = inspect.signature(type(model).__init__).parameters.values()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)  # DCGAN passes **kwargs on to GAN
    accepted = {p.name for p in parameters} - {"self"}
    hparams = {k: v for k, v in dict(model.hparams).items() if not k.startswith("_") and (takes_any or k in accepted)}
    hparams["generator_ema_decay"] = None
    metadata = describe(model, averaged, ckpt_path)
    return {"model_class": metadata["model_class"], "hyper_parameters": _jsonable(hparams, "hyper_parameters"), MARKER: metadata}


def build_exported_model(model_class: str, hyper_parameters: dict[str, Any]) -> GAN:
    """The untrained model an exported ``config.json`` describes (its generator's weights come from the folder)."""
    try:
        cls = import_class(model_class)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"the exported model class {model_class} cannot be imported ({_one_line(err)})") from err
    if not (isinstance(cls, type) and issubclass(cls, GAN)):
        raise ValueError(f"the exported model class {model_class} is not a lit_gans.GAN model")
    hparams = dict(hyper_parameters)
    if "image_shape" in hparams and hparams["image_shape"] is not None:
        hparams["image_shape"] = tuple(hparams["image_shape"])
    return cls(**hparams)


def exported_config(folder: Union[str, os.PathLike]) -> Optional[dict[str, Any]]:
    """The ``lit_gans`` entry of a folder written by ``export --format hf`` (with ``model_class`` and
    ``hyper_parameters``), or ``None`` when ``folder`` is no such folder."""
    path = Path(folder) / HUB_CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or not isinstance(config.get(MARKER), dict) or "hyper_parameters" not in config:
        return None
    return {**config[MARKER], "model_class": config["model_class"], "hyper_parameters": config["hyper_parameters"]}


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ModuleNotFoundError:
        raise ValueError(
            f"ckpt_path={path.parent} is an exported folder, whose weights need the safetensors package: "
            "pip install safetensors (or lit-gans[export])"
        ) from None
    return load_file(str(path))


def load_exported(folder: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> GAN:
    """The model of an exported folder (``lit_gans.load_model`` calls this for one): built from ``config.json``,
    its generator's weights, class frequencies and generator step from ``model.safetensors``; in eval mode on
    ``map_location``. Its discriminator is untrained (not exported) and it has no weight-averaged copy."""
    folder = Path(folder)
    config = exported_config(folder)
    if config is None:
        raise ValueError(f"ckpt_path={folder} is no folder of lit-gans export (its {HUB_CONFIG} has no {MARKER!r} entry)")
    weights_file = folder / HUB_WEIGHTS
    if not weights_file.is_file():
        raise FileNotFoundError(f"ckpt_path={folder}: the exported folder has no {HUB_WEIGHTS}")
    model = build_exported_model(config["model_class"], config["hyper_parameters"])
    weights = _read_safetensors(weights_file)
    known = model.state_dict()
    missing = sorted({k for k in known if k.startswith("generator.")} - set(weights))
    unknown = sorted(set(weights) - set(known))
    if missing or unknown:
        raise ValueError(
            f"ckpt_path={folder}: {HUB_WEIGHTS} does not fit the model config.json describes (missing "
            f"{missing[:3]}, unexpected {unknown[:3]})"
        )
    model.load_state_dict(weights, strict=False)  # the generator (and its step); the discriminator stays as built
    model = model.to(map_location).eval()
    model.checkpoint_path = str(folder)
    names = config.get("class_names")
    model.class_names = list(map(str, names)) if isinstance(names, list) and len(names) == model.num_classes else None
    return model


@functools.lru_cache(maxsize=None)
def hub_generator_class() -> type:
    """:class:`HubGenerator`, built on first use (``huggingface_hub`` is an optional dependency)."""
    try:
        from huggingface_hub import PyTorchModelHubMixin
    except ModuleNotFoundError:
        raise ValueError("HubGenerator needs the huggingface_hub package: pip install huggingface_hub (or lit-gans[export])") from None

    class HubGenerator(nn.Module, PyTorchModelHubMixin, library_name="lit-gans", tags=HUB_TAGS):
        """An exported generator as a ``huggingface_hub`` ``PyTorchModelHubMixin`` model: ``config.json`` holds its
        constructor's arguments, ``model.safetensors`` its weights (``generator.*``, ``class_frequencies`` and
        ``generator_steps``, the state of the :class:`~lit_gans.GAN` it is part of).

        Example::

            from lit_gans.export import HubGenerator
            generator = HubGenerator.from_pretrained("user/my-gan")  # or a local folder, offline
            images = generator(torch.randn(16, generator.latent_dim))
        """

        def __init__(self, model_class: str, hyper_parameters: dict, lit_gans: Optional[dict] = None) -> None:
            super().__init__()
            model = build_exported_model(model_class, hyper_parameters)
            self.latent_dim, self.num_classes = model.latent_dim, int(model.num_classes or 0)
            self.generator = model.generator
            self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
            if self.num_classes:
                self.register_buffer("class_frequencies", model.class_frequencies.clone())
            self.eval()  # a generator to sample from: BatchNorm uses its stored statistics

        def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
            return self.generator(z, labels) if self.num_classes else self.generator(z)

    HubGenerator.__module__ = __name__
    return HubGenerator


def __getattr__(name: str) -> Any:  # PEP 562: ``from lit_gans.export import HubGenerator``
    if name == "HubGenerator":
        return hub_generator_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------- checks
def _missing_packages(format: str, push_to_hub: Optional[str]) -> list[str]:
    needed = list(NEEDS[format]) + (["huggingface_hub"] if push_to_hub else [])
    return [name for name in dict.fromkeys(needed) if importlib.util.find_spec(name) is None]


def is_our_export(path: Path, format: str) -> bool:
    """Whether ``path`` holds an earlier export of ``format`` (which a new export may replace)."""
    if format == "hf":
        return path.is_dir() and exported_config(path) is not None
    if not path.is_file():
        return False
    if format == "torchscript":
        try:
            with zipfile.ZipFile(path) as archive:
                return any(name.endswith(f"/extra/{TORCHSCRIPT_EXTRA}") for name in archive.namelist())
        except (OSError, zipfile.BadZipFile):
            return False
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not an ONNX file (any parse error)
        return False
    return any(entry.key == MARKER for entry in proto.metadata_props)


def _check_output(path: Path, format: str, overwrite: bool) -> None:
    """Refuse, in one line, an output that exists and is no earlier export of ``format``, an earlier export
    without ``overwrite``, or an output that cannot be written."""
    if format == "hf":
        if path.exists() and not path.is_dir():
            raise ValueError(f"output={path} is a file: --format hf writes a folder")
        if path.is_dir() and any(path.iterdir()) and not is_our_export(path, format):
            raise ValueError(
                f"output={path} is a folder that lit-gans export did not write (no {HUB_CONFIG} of an export): choose "
                "a new or empty folder"
            )
    elif path.is_dir():
        raise ValueError(f"output={path} is a folder: --format {format} writes one file (e.g. {path / ('generator.' + _SUFFIX[format])})")
    elif path.exists() and not is_our_export(path, format):
        raise ValueError(f"output={path} exists and is no {format} export of lit-gans: choose another path or remove it")
    earlier = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if earlier and not overwrite:
        raise ValueError(
            f"output={path} holds an earlier {format} export: pass overwrite=True (--overwrite true) to replace it, "
            "or choose another path"
        )
    check_writable(path, "output", folder=format == "hf")


_SUFFIX = {"onnx": "onnx", "torchscript": "pt"}


def _check_close(what: str, expected: Tensor, got: Tensor, tolerance: float) -> None:
    difference = float((expected - got).abs().max()) if expected.shape == got.shape else float("inf")
    if not difference <= tolerance:
        raise ValueError(
            f"export: the {what} gives other images than PyTorch (largest difference {difference:.3g}, allowed "
            f"{tolerance:g}; shapes {tuple(got.shape)} and {tuple(expected.shape)}): nothing was written"
        )


# ---------------------------------------------------------------------------------------------- the formats
def onnx_opset() -> int:
    """The opset an export writes: the installed ``onnx``'s newest, at most what torch's TorchScript-based exporter
    writes (:data:`TORCHSCRIPT_EXPORTER_MAX_OPSET`)."""
    import onnx

    try:
        from torch.onnx import _constants

        exporter_max = int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", TORCHSCRIPT_EXPORTER_MAX_OPSET))
    except ImportError:
        exporter_max = TORCHSCRIPT_EXPORTER_MAX_OPSET
    return min(int(onnx.defs.onnx_opset_version()), exporter_max)


def write_onnx(generator: ExportedGenerator, model: GAN, path: Path, metadata: dict[str, Any]) -> None:
    """``generator`` as ONNX at ``path`` (``torch.onnx.export(dynamo=False)``: the TorchScript-based exporter,
    which needs only ``onnx``; torch's default ``torch.export``-based one also needs ``onnxscript``), with a
    dynamic batch axis and the ``lit_gans`` metadata, checked by ``onnx.checker`` and run by ONNX Runtime at two
    batch sizes: its images must equal PyTorch's within :data:`ONNX_TOLERANCE`."""
    import onnx
    import onnxruntime

    inputs = example_inputs(model, CHECK_BATCHES[0])
    names = ["z", "labels"][: len(inputs)]
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's deprecation notice and tracer warnings are not the user's
        warnings.simplefilter("ignore")
        torch.onnx.export(
            generator, inputs, buffer, dynamo=False, input_names=names, output_names=["images"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "images"]}, opset_version=onnx_opset(),
        )  # fmt: skip
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = MARKER, json.dumps(metadata, ensure_ascii=False)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    for n in CHECK_BATCHES:
        feed = example_inputs(model, n, seed=n)
        with torch.no_grad():
            expected = generator(*feed)
        got = session.run(["images"], {name: value.numpy() for name, value in zip(names, feed)})[0]
        _check_close("ONNX file (ONNX Runtime)", expected, torch.from_numpy(got), ONNX_TOLERANCE)
    atomic_write_bytes(path, data)


def write_torchscript(generator: ExportedGenerator, model: GAN, path: Path, metadata: dict[str, Any]) -> None:
    """``generator`` traced (``torch.jit.trace``) and saved at ``path`` with the extra file ``lit_gans.json``;
    loaded back with ``torch.jit.load``, its images must equal PyTorch's at two batch sizes."""
    with warnings.catch_warnings():  # torch marks TorchScript deprecated; the file is what the user asked for
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(generator, example_inputs(model, CHECK_BATCHES[0]))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_EXTRA: json.dumps(metadata, ensure_ascii=False)})
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()))
        for n in CHECK_BATCHES:
            feed = example_inputs(model, n, seed=n)
            with torch.no_grad():
                _check_close("TorchScript file", generator(*feed), loaded(*feed), 0.0)
    atomic_write_bytes(path, buffer.getvalue())


def sample_grid(generator: ExportedGenerator, model: GAN) -> bytes:
    """The model card's picture: the images of seeds 0-63 (:data:`GRID_SEEDS`, drawn as ``generate --seeds``
    draws them) as an 8 x 8 PNG grid."""
    z, labels = seed_latents(model, list(GRID_SEEDS))
    with torch.no_grad():
        images = generator(z.float().cpu(), *(() if labels is None else (labels.cpu(),)))
    buffer = io.BytesIO()
    Image.fromarray(to_uint8_image(render_grid(images, nrow=8))).save(buffer, format="PNG")
    return buffer.getvalue()


def write_hub_folder(
    generator: ExportedGenerator, model: GAN, folder: Path, config: dict[str, Any], card: str
) -> None:
    """The Hugging Face folder at ``folder`` (which must not exist): :class:`HubGenerator`'s ``save_pretrained``
    (``config.json``, ``model.safetensors``), then ``samples.png`` and the model card ``README.md``; loaded back
    with :func:`load_exported`, its images must equal PyTorch's."""
    hub = hub_generator_class()(
        model_class=config["model_class"], hyper_parameters=config["hyper_parameters"], lit_gans=config[MARKER]
    )
    state = {f"generator.{k}": v for k, v in generator.net.state_dict().items()}
    state["generator_steps"] = torch.tensor(int(model.generator_step))
    if model.num_classes:
        state["class_frequencies"] = model.class_frequencies.detach().cpu().float()
    hub.load_state_dict(state, strict=True)
    hub.save_pretrained(folder)
    atomic_write_bytes(folder / SAMPLE_GRID, sample_grid(generator, model))
    atomic_write_bytes(folder / MODEL_CARD, card.encode())
    permissions_as_created(folder)
    reloaded = load_exported(folder)
    for n in CHECK_BATCHES:
        z, *labels = example_inputs(model, n, seed=n)
        with torch.no_grad():
            _check_close("exported folder", generator(z, *labels), reloaded.generate(z, *labels).float(), 0.0)


# ---------------------------------------------------------------------------------------------- the model card
def _run_config(checkpoint: Path) -> Optional[Path]:
    """The fit config saved with the run of ``checkpoint`` (``config.yaml`` beside it or in the run folder)."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def _data_description(configs: list[str]) -> Optional[str]:
    """The ``data`` entry of the last config that has one, as ``class_path`` and ``init_args`` lines."""
    import yaml

    for path in reversed(configs):
        try:
            data = (yaml.safe_load(Path(path).read_text()) or {}).get("data")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if isinstance(data, dict):
            lines = [f"- data module: `{data.get('class_path', '?')}` (from `{path}`)"]
            lines += [f"- `{key}`: `{value}`" for key, value in (data.get("init_args") or {}).items()]
            return "\n".join(lines)
    return None


def model_card(
    model: GAN, metadata: dict[str, Any], ckpt_path: str, configs: list[str], metrics: Optional[dict[str, float]],
    repo: Optional[str],
) -> str:
    """The README.md of an exported folder: front matter for the Hub, the sample grid, how to load it, the training
    data, the metrics (computed by ``evaluate`` when a config was given, else the one the checkpoint was saved for)
    with the command that reproduces them, and the model's hyperparameters."""
    checkpoint = Path(metadata["checkpoint"])
    run_config = _run_config(checkpoint)
    described = configs or ([str(run_config)] if run_config else [])
    name = type(model).__name__
    conditional = metadata["num_classes"] > 0
    front = ["---", "library_name: lit-gans", "tags:", *[f"- {tag}" for tag in HUB_TAGS]]
    if not conditional:
        front.append("pipeline_tag: unconditional-image-generation")
    front.append("---")
    where = repo or "path/to/this/folder"
    folder = f"snapshot_download({repo!r})" if repo else repr(where)  # load_model reads a local folder
    c, h, w = metadata["image_shape"]
    lines = [
        *front, "",
        f"# {name} generator ({c}x{h}x{w}, generator step {metadata['generator_step']})", "",
        f"![64 samples, seeds 0-63]({SAMPLE_GRID})", "",
        f"The images of seeds 0-63, as `lit-gans generate --ckpt_path {where} --seeds 0-63 --output_dir samples` "
        "writes them. Trained with lit-gans "
        f"({'the weight-averaged generator' if metadata['averaged_generator'] else 'the raw generator'}, exported "
        f"from `{checkpoint}`).", "",
        "## Use", "",
        "```python",
        "import lit_gans  # pip install 'lit-gans[export]'",
        *(["from huggingface_hub import snapshot_download"] if repo else []),
        f"model = lit_gans.load_model({folder})  # a local folder loads offline",
        "images = model.sample(16)  # (16, C, H, W) in [-1, 1]" if not conditional else
        "images = model.sample(16, labels=3)  # (16, C, H, W) in [-1, 1], all of class 3",
        "```", "",
        f"or with huggingface_hub alone: `from lit_gans.export import HubGenerator; "
        f"G = HubGenerator.from_pretrained({where!r}); images = G(torch.randn(16, {metadata['latent_dim']})"
        + (", labels)`" if conditional else ")`"),
        f"(latents: {metadata['latent_dim']} values, {metadata['latent_distribution']} "
        f"{'N(0, 1)' if metadata['latent_distribution'] == 'normal' else 'U[-1, 1]'}).", "",
        "## Training data", "",
        _data_description(described) or f"- images of shape {c}x{h}x{w} (the run's config was not found; export "
        "with --config CONFIG to describe the data)",
    ]
    if conditional:
        names = metadata["class_names"] or [str(i) for i in range(metadata["num_classes"])]
        lines.append(f"- {metadata['num_classes']} classes: {', '.join(map(str, names[:20]))}{', ...' if len(names) > 20 else ''}")
    lines += ["", "## Metrics", ""]
    config_args = " ".join(f"--config {p}" for p in described) or "--config CONFIG"
    command = f"lit-gans evaluate --ckpt_path {checkpoint} {config_args}"
    if metrics:
        lines += ["| metric | value |", "|---|---|", *[f"| {k} | {v:.6g} |" for k, v in metrics.items()], "",
                  f"Computed by `lit-gans evaluate` (the config's metric callbacks); reproduce with `{command}`."]
    else:
        score = _saved_score(checkpoint)
        if score is not None:
            monitor, _, value = score
            lines += ["| metric | value |", "|---|---|", f"| {monitor} | {value:.6g} |", "",
                      f"The value logged when this checkpoint was saved; `{command}` recomputes it with every metric "
                      "of the config."]
        else:
            lines.append(f"None recorded with this checkpoint: `{command}` computes them (or export with --config).")
    hparams = {k: v for k, v in model.hparams.items() if not k.startswith("_")}
    lines += ["", "## Model", "", f"`{metadata['model_class']}`:", "", "```yaml",
              *[f"{k}: {json.dumps(_jsonable(v, k), ensure_ascii=False)}" for k, v in hparams.items()], "```", ""]
    return "\n".join(lines)


def _saved_score(checkpoint: Path) -> Optional[tuple[str, str, float]]:
    if not checkpoint.is_file():
        return None
    try:
        return saved_score(load_checkpoint_file(checkpoint, mmap=True), checkpoint.name)
    except Exception:  # the card goes without it
        return None


# ---------------------------------------------------------------------------------------------- writing in place
def _replace(path: Path, write: Any) -> None:
    """Run ``write(folder)`` on a temporary sibling folder of ``path``, then put it in place of ``path`` (an earlier
    export there is removed only then): a failure leaves ``path`` as it was."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    for leftover in (temporary, old):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write(temporary)
        if path.exists():
            path.rename(old)
        os.replace(temporary, path)
    finally:
        for leftover in (temporary, old):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- the command
def export(
    ckpt_path: str,
    format: Literal["onnx", "torchscript", "hf"],
    output: str,
    ema: Optional[bool] = None,
    config: Optional[Union[str, list[str]]] = None,
    push_to_hub: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """Export the generator of a trained checkpoint as ONNX, TorchScript or a Hugging Face model folder.

    The generator is the one ``lit-gans generate`` uses: the weight-averaged one when the model keeps one (its
    BatchNorm statistics re-estimated for its weights), else the raw one; in eval mode, float32, on the CPU. Each
    export is checked before it is put in place: the ONNX file by ONNX Runtime (its images equal PyTorch's within
    1e-4, at two batch sizes), the TorchScript file by ``torch.jit.load``, the folder by ``lit_gans.load_model``.

    Args:
        ckpt_path: the checkpoint file, or a run's checkpoint folder (its best checkpoint, else its newest).
        format: ``onnx`` (inputs ``z`` and, conditional, ``labels``; output ``images``; the TorchScript-based
            exporter, ``torch.onnx.export(dynamo=False)``, at the installed onnx's newest opset up to 20),
            ``torchscript`` (``torch.jit.trace``; ``forward(z)`` or ``forward(z, labels)``) or ``hf`` (a folder:
            ``config.json``, ``model.safetensors``, ``README.md`` with the samples of seeds 0-63, ``samples.png``).
        output: the file (onnx, torchscript) or folder (hf) to write; an earlier export there is refused unless
            ``overwrite``, anything else always.
        ema: ``None``: the weight-averaged generator when there is one; ``true``: it (an error without one);
            ``false``: the raw generator.
        config: the fit config(s) of the run (hf): the model card describes their data and lists the metrics that
            ``lit-gans evaluate --ckpt_path CKPT --config CONFIG`` computes (computed now, which takes as long as
            that command). Without it the card shows the metric the checkpoint was saved for, if any.
        push_to_hub: also upload the folder to this Hugging Face repository (``user/name``; created if missing;
            needs a login, ``hf auth login``); hf only.
        overwrite: replace an earlier export at ``output`` (only once the new one is verified).

    Returns:
        The file or folder written.

    Example::

        lit-gans export --ckpt_path best.ckpt --format onnx --output generator.onnx
        lit-gans export --ckpt_path best.ckpt --format hf --output my-gan --config configs/dcgan_mnist.yaml --push_to_hub me/my-gan
    """
    check_choice("format", format, FORMATS)
    if push_to_hub is not None and format != "hf":
        raise ValueError(f"push_to_hub={push_to_hub!r} uploads a Hugging Face folder: use it with --format hf")
    missing = _missing_packages(format, push_to_hub)
    if missing:
        raise ValueError(
            f"format={format}{' with push_to_hub' if push_to_hub else ''} needs the Python package(s) "
            f"{', '.join(missing)}: pip install {' '.join(missing)} (or the export extra: pip install 'lit-gans[export]')"
        )
    configs = [] if config is None else [config] if isinstance(config, (str, os.PathLike)) else list(config)
    for path in configs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config={path}: no such file")
    target = Path(output)
    _check_output(target, format, overwrite)
    model = load_model(ckpt_path)
    generator, averaged = generator_of(model, ema)
    metadata = describe(model, averaged, ckpt_path)
    if format == "onnx":  # each file is written atomically, once verified
        write_onnx(generator, model, target, metadata)
    elif format == "torchscript":
        write_torchscript(generator, model, target, metadata)
    else:
        metrics = None
        if configs:
            from lit_gans.evaluate import evaluate

            metrics = evaluate(ckpt_path, configs, ema=ema)  # the generator exported
        card = model_card(model, metadata, str(ckpt_path), [str(p) for p in configs], metrics, push_to_hub)
        hub = hub_config(model, averaged, ckpt_path)
        _replace(target, lambda path: write_hub_folder(generator, model, path, hub, card))
        if push_to_hub is not None:
            upload(target, push_to_hub)
    return target


def upload(folder: Path, repo: str) -> str:
    """Upload an exported folder to the Hugging Face repository ``repo`` (created if missing) with
    ``huggingface_hub.upload_folder``; its URL. A failure (no login, no network) is one line: the folder stays."""
    import huggingface_hub

    try:
        huggingface_hub.create_repo(repo, repo_type="model", exist_ok=True)
        huggingface_hub.upload_folder(
            repo_id=repo, folder_path=str(folder), repo_type="model", commit_message=f"lit-gans export of {folder.name}"
        )
    except Exception as err:
        raise ValueError(
            f"push_to_hub={repo}: the upload failed ({type(err).__name__}: {_one_line(err)[:200]}); {folder} is written "
            "and complete: export again with --push_to_hub to retry"
        ) from err
    return f"https://huggingface.co/{repo}"


__all__ = [
    "ExportedGenerator", "FORMATS", "HubGenerator", "describe", "export", "exported_config", "generator_of",
    "hub_generator_class", "is_our_export", "load_exported", "model_card", "onnx_opset", "upload", "write_hub_folder",
    "write_onnx", "write_torchscript",
]

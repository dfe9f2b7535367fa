"""lit-gans export: the generator of a checkpoint as ONNX (run by ONNX Runtime), TorchScript and a Hugging Face folder
(loaded by lit_gans.load_model and huggingface_hub, offline), each equal to sampling the checkpoint; refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_testing import current_umask
from gan_testing import RandomImages, fitted_checkpoint
from lightning.pytorch import seed_everything
from PIL import Image

from lit_gans import DCGAN
from lit_gans.cli import main
from lit_gans.generate import generate, load_model

K = 4
NAMES = ["cat", "dog", "owl", "fox"]
SMALL = dict(generator_width=8, discriminator_width=8, latent_dim=16)  # 28x28 grey


class NamedImages(RandomImages):
    class_names = NAMES


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """An unconditional model with a weight-averaged generator (BatchNorm statistics re-estimated for it), and a
    class-conditional one; both 2 generator steps on random 28x28 images."""
    root = tmp_path_factory.mktemp("export_ckpts")
    seed_everything(0)
    return {
        "unconditional": fitted_checkpoint(
            root / "ema.ckpt", DCGAN(generator_ema_decay=0.5, **SMALL), RandomImages(n=32, image_shape=(1, 28, 28))
        ),
        "conditional": fitted_checkpoint(
            root / "conditional.ckpt", DCGAN(num_classes=K, **SMALL),
            NamedImages(n=32, image_shape=(1, 28, 28), num_classes=K),
        ),
    }  # fmt: skip


def inputs(model, n: int, seed: int = 11) -> tuple[torch.Tensor, ...]:
    z = model.sample_latent(n, generator=torch.Generator().manual_seed(seed))
    return (z, torch.arange(n) % model.num_classes) if model.num_classes else (z,)


def expected(model, z, labels=None) -> torch.Tensor:
    """What `lit-gans generate` makes of these latents: the averaged generator when there is one."""
    return model.sample(z=z) if labels is None else model.sample(z=z, labels=labels)


def export_cli(ckpt, fmt: str, output: Path, *extra: str) -> Path:
    return main(["export", "--ckpt_path", str(ckpt), "--format", fmt, "--output", str(output), *extra])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("lit-gans: error: "), err
    return err


# ---------------------------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("kind", ["unconditional", "conditional"])
def test_onnx_runs_in_onnx_runtime_with_pytorchs_images_at_any_batch_size(ckpts, kind, tmp_path, capsys):
    import onnx
    import onnxruntime

    from lit_gans.export import onnx_opset

    out = export_cli(ckpts[kind], "onnx", tmp_path / "g.onnx")
    assert out == tmp_path / "g.onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]  # no leftovers
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said.startswith(f"lit-gans: wrote {out} (onnx) from {ckpts[kind]}")
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == onnx_opset() == min(onnx.defs.onnx_opset_version(), 20)
    names = [i.name for i in proto.graph.input]
    assert names == (["z", "labels"] if kind == "conditional" else ["z"])
    assert all(i.type.tensor_type.shape.dim[0].dim_param == "batch" for i in proto.graph.input)  # a dynamic batch
    metadata = json.loads({p.key: p.value for p in proto.metadata_props}["lit_gans"])
    assert metadata["latent_dim"] == 16 and metadata["image_shape"] == [1, 28, 28]
    assert metadata["num_classes"] == (K if kind == "conditional" else 0)
    assert metadata["averaged_generator"] is (kind == "unconditional")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = load_model(ckpts[kind])
    for n in (1, 7):
        feed = inputs(model, n)
        images = session.run(["images"], {name: t.numpy() for name, t in zip(names, feed)})[0]
        assert images.shape == (n, 1, 28, 28)
        assert np.abs(images - expected(model, *feed).numpy()).max() <= 1e-4


def test_an_onnx_export_that_onnx_runtime_contradicts_is_not_written(ckpts, tmp_path, monkeypatch):
    import onnxruntime

    class Wrong:  # a runtime whose images are off by 1e-3
        def __init__(self, *args, **kwargs):
            self.session = real(*args, **kwargs)

        def run(self, *args, **kwargs):
            return [out + 1e-3 for out in self.session.run(*args, **kwargs)]

    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", Wrong)
    with pytest.raises(ValueError, match="ONNX Runtime.*other images than PyTorch"):
        from lit_gans.export import export

        export(str(ckpts["unconditional"]), "onnx", str(tmp_path / "g.onnx"))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- TorchScript
@pytest.mark.parametrize("kind", ["unconditional", "conditional"])
def test_torchscript_loads_with_torch_jit_and_gives_the_same_images(ckpts, kind, tmp_path):
    out = export_cli(ckpts[kind], "torchscript", tmp_path / "g.pt")
    extra = {"lit_gans.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["lit_gans.json"])["num_classes"] == (K if kind == "conditional" else 0)
    model = load_model(ckpts[kind])
    for n in (2, 9):
        feed = inputs(model, n)
        assert torch.equal(loaded(*feed), expected(model, *feed))


# ---------------------------------------------------------------------------------------------- Hugging Face
def write_fid_config(path: Path, mnist_dir: Path) -> Path:
    fid = {"feature_extractor": "mnist", "num_real": 200, "num_fake": 100, "batch_size": 100}
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "callbacks": [{"class_path": "lit_gans.callbacks.FIDCallback", "init_args": fid}]},
        "data": {"class_path": "lit_gans.datamodules.MNISTDataModule",
                 "init_args": {"data_dir": str(mnist_dir), "download": False, "batch_size": 16}},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_hf_folder_loads_offline_in_lit_gans_and_huggingface_hub(ckpts, mnist_dir, tmp_path, monkeypatch):
    from lit_gans.evaluate import evaluate
    from lit_gans.export import HubGenerator

    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = write_fid_config(tmp_path / "fid.yaml", mnist_dir)
    folder = export_cli(ckpts["unconditional"], "hf", tmp_path / "my-gan", "--config", str(config))
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    # readable by every account that may read the folder (before: safetensors' weights were owner-only)
    assert {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {oct(0o666 & ~current_umask())}
    model = load_model(ckpts["unconditional"])
    z = inputs(model, 6)[0]
    # lit_gans.load_model rebuilds the model around the exported (averaged) generator
    exported = load_model(folder)
    assert type(exported) is DCGAN and exported.generator_step == model.generator_step == 2
    assert exported.generator_ema is None and torch.equal(exported.sample(z=z), model.sample(z=z))
    # huggingface_hub's PyTorchModelHubMixin: config.json holds the constructor's arguments
    hub = HubGenerator.from_pretrained(str(folder))
    assert torch.equal(hub(z), model.sample(z=z))
    # the model card: the samples, the data, the metrics of `evaluate` and the command that reproduces them
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: lit-gans\n") and "![64 samples, seeds 0-63](samples.png)" in card
    assert "lit_gans.datamodules.MNISTDataModule" in card
    fid = evaluate(str(ckpts["unconditional"]), str(config))["fid"]
    assert f"| fid | {fid:.6g} |" in card
    assert f"lit-gans evaluate --ckpt_path {ckpts['unconditional']} --config {config}" in card
    with Image.open(folder / "samples.png") as grid:
        assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 8 x 8 images of 28 pixels, make_grid's padding
    # and `generate` samples the folder as it samples the checkpoint
    a = generate(str(folder), output_dir=str(tmp_path / "a"), seeds="3-5", device="cpu", progress=False)
    b = generate(str(ckpts["unconditional"]), output_dir=str(tmp_path / "b"), seeds="3-5", device="cpu", progress=False)
    assert [p.read_bytes() for p in sorted(a.glob("*.png"))] == [p.read_bytes() for p in sorted(b.glob("*.png"))]


def test_a_conditional_hf_folder_keeps_its_classes(ckpts, tmp_path):
    folder = export_cli(ckpts["conditional"], "hf", tmp_path / "cgan")
    model, exported = load_model(ckpts["conditional"]), load_model(folder)
    assert exported.num_classes == K and exported.class_names == NAMES
    assert torch.equal(exported.class_frequencies, model.class_frequencies)  # labels=None draws as the model's
    z, labels = inputs(model, 8)
    assert torch.equal(exported.sample(z=z, labels=labels), model.sample(z=z, labels=labels))
    card = (folder / "README.md").read_text()
    assert "4 classes: cat, dog, owl, fox" in card and "pipeline_tag" not in card
    config = json.loads((folder / "config.json").read_text())
    assert config["model_class"] == "lit_gans.models.dcgan.DCGAN" and config["hyper_parameters"]["num_classes"] == K


def test_push_to_hub_uploads_the_folder_it_wrote(ckpts, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo, **kw: calls.append(("create", repo, kw)))

    def upload_folder(**kwargs):  # what would go to the Hub: the folder, complete, at upload time
        calls.append(("upload", kwargs["repo_id"], sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())))

    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    folder = export_cli(ckpts["unconditional"], "hf", tmp_path / "my-gan", "--push_to_hub", "me/my-gan")
    assert calls == [
        ("create", "me/my-gan", {"repo_type": "model", "exist_ok": True}),
        ("upload", "me/my-gan", ["README.md", "config.json", "model.safetensors", "samples.png"]),
    ]
    # the card's load lines name the repository (load_model takes the folder huggingface_hub downloads)
    assert "lit_gans.load_model(snapshot_download('me/my-gan'))" in (folder / "README.md").read_text()

    def offline(**kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "upload_folder", offline)
    with pytest.raises(ValueError, match="push_to_hub=me/my-gan: the upload failed .*ConnectionError.* is written"):
        from lit_gans.export import export

        export(str(ckpts["unconditional"]), "hf", str(tmp_path / "again"), push_to_hub="me/my-gan")
    assert load_model(tmp_path / "again").generator_step == 2  # the folder stays, complete


# ---------------------------------------------------------------------------------------------- refusals
def test_an_earlier_export_is_replaced_only_with_overwrite_and_anything_else_refused(ckpts, tmp_path, capsys):
    out = export_cli(ckpts["unconditional"], "torchscript", tmp_path / "g.pt")
    first = out.read_bytes()
    hub = export_cli(ckpts["unconditional"], "hf", tmp_path / "my-gan")
    card = (hub / "README.md").read_bytes()
    # before: replaced without a word, as generate never does
    for fmt, output, kind in (("torchscript", out, "torchscript"), ("hf", hub, "hf")):
        with pytest.raises(SystemExit):
            export_cli(ckpts["conditional"], fmt, output)
        assert error_line(capsys) == (
            f"lit-gans: error: output={output} holds an earlier {kind} export: pass overwrite=True (--overwrite true) "
            "to replace it, or choose another path"
        )
    assert out.read_bytes() == first and (hub / "README.md").read_bytes() == card
    export_cli(ckpts["conditional"], "torchscript", out, "--overwrite", "true")
    assert out.read_bytes() != first
    export_cli(ckpts["conditional"], "hf", hub, "--overwrite", "true")
    assert load_model(hub).num_classes == K
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt", "my-gan"]
    (tmp_path / "notes.onnx").write_text("mine")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "photo.png").write_bytes(b"mine")
    for fmt, output, words in (
        ("onnx", tmp_path / "notes.onnx", ["output=", "notes.onnx", "no onnx export of lit-gans"]),
        ("hf", tmp_path / "folder", ["output=", "did not write"]),
        ("hf", out, ["is a file"]),
        ("onnx", tmp_path / "folder", ["is a folder"]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            export_cli(ckpts["unconditional"], fmt, output)
        assert exit_info.value.code == 2
        err = error_line(capsys)
        assert all(word in err for word in words), err
    assert (tmp_path / "notes.onnx").read_text() == "mine" and (tmp_path / "folder" / "photo.png").read_bytes() == b"mine"


@pytest.mark.parametrize(
    "kind, args, words",
    [
        ("unconditional", ["--format", "keras"], ["format", "keras"]),
        ("unconditional", ["--format", "onnx", "--push_to_hub", "me/x"], ["push_to_hub", "--format hf"]),
        ("conditional", ["--format", "torchscript", "--ema", "true"], ["ema=True", "no weight-averaged"]),
    ],
)
def test_bad_arguments_are_one_line(ckpts, tmp_path, capsys, kind, args, words):
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(ckpts[kind]), "--output", str(tmp_path / "out"), *args])
    err = error_line(capsys)
    assert all(word in err for word in words), err
    assert not (tmp_path / "out").exists()


def test_a_missing_package_is_named_with_the_install_command(ckpts, tmp_path, monkeypatch, capsys):
    import importlib.util

    import lit_gans.export

    real = importlib.util.find_spec
    monkeypatch.setattr(lit_gans.export.importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(SystemExit):
        export_cli(ckpts["unconditional"], "onnx", tmp_path / "g.onnx")
    err = error_line(capsys)
    assert "format=onnx needs the Python package(s) onnxruntime: pip install onnxruntime" in err and "lit-gans[export]" in err
    assert not (tmp_path / "g.onnx").exists()

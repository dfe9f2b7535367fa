"""The files `generate` writes are what other tools score: torch-fidelity's own FID of a folder of generated PNGs
against a folder of real MNIST PNGs, in the package's MNIST-classifier features, equals the FID the package reports
for the same checkpoint (``lit-gans evaluate`` with FIDCallback(feature_extractor="mnist"), the same seed and
counts)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch_fidelity  # a dependency of the package: no skip
import yaml
from gan_testing import tiny_trainer_kwargs
from lightning.pytorch import Trainer, seed_everything
from PIL import Image
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from lit_gans import DCGAN
from lit_gans.callbacks import FIDCallback, MNISTClassifier
from lit_gans.datamodules import MNISTDataModule
from lit_gans.datamodules.base import float_images
from lit_gans.evaluate import evaluate
from lit_gans.generate import generate, png_bytes, to_uint8


NUM_FAKE, NUM_REAL, SEED = 500, 1000, 1234
EXTRACTOR = "lit-gans-mnist"


class MNISTFeatures(FeatureExtractorBase):
    """The package's MNIST classifier as a torch-fidelity extractor: torch-fidelity feeds uint8 RGB ``(N, 3, H, W)``;
    the classifier takes images in [-1, 1] (averaging 3 channels to one) and gives the 64-d penultimate features,
    those of ``FIDCallback(feature_extractor="mnist")``."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.classifier = MNISTClassifier.pretrained()

    @staticmethod
    def get_provided_features_list():
        return ("penultimate",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "penultimate"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 28, 28, dtype=torch.uint8)

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3
        return (self.classifier(x.float() / 127.5 - 1),)


def torch_fidelity_fid(folder1: Path, folder2: Path) -> float:
    if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(EXTRACTOR, MNISTFeatures)
    return torch_fidelity.calculate_metrics(
        input1=str(folder1), input2=str(folder2), fid=True, feature_extractor=EXTRACTOR, cuda=False, cache=False,
        verbose=False, save_cpu_ram=True, batch_size=250,
    )["frechet_inception_distance"]  # fmt: skip


def test_torch_fidelity_fid_of_generated_pngs_equals_the_packages_fid(mnist_dir, tmp_path):
    seed_everything(0)
    data = MNISTDataModule(mnist_dir, download=False, batch_size=64)
    model = DCGAN(generator_width=8, discriminator_width=8, max_generator_steps=40)
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(model, data)
    trainer.save_checkpoint(tmp_path / "mnist.ckpt")

    fake_dir = generate(str(tmp_path / "mnist.ckpt"), NUM_FAKE, str(tmp_path / "fake"), seed=SEED, device="cpu", progress=False)
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = float_images(data.train_set, slice(None, NUM_REAL))
    for i, image in enumerate(to_uint8(real)):
        (real_dir / f"{i:06d}.png").write_bytes(png_bytes(image))
    assert np.array_equal(np.asarray(Image.open(real_dir / "000007.png")), to_uint8(real[7:8])[0, ..., 0])

    theirs = torch_fidelity_fid(fake_dir, real_dir)

    # what `lit-gans evaluate` reports for the checkpoint with a config measuring FID on these counts and seed
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"class_path": "lit_gans.DCGAN"},
        "data": {"class_path": "lit_gans.datamodules.MNISTDataModule",
                 "init_args": {"data_dir": str(mnist_dir), "download": False, "batch_size": 64}},
        "trainer": {"accelerator": "cpu", "callbacks": [{"class_path": "lit_gans.callbacks.FIDCallback", "init_args": {
            "feature_extractor": "mnist", "num_real": NUM_REAL, "num_fake": NUM_FAKE, "seed": SEED,
            "cache_dir": str(tmp_path / "fid")}}]},
    }))  # fmt: skip
    ours = evaluate(str(tmp_path / "mnist.ckpt"), str(config))["fid"]
    stub = SimpleNamespace(
        datamodule=data, global_rank=0, world_size=1, is_global_zero=True,
        strategy=SimpleNamespace(reduce=lambda t, reduce_op: t),
    )  # fmt: skip
    print(f"FID: torch-fidelity on the PNGs {theirs:.4f}, lit-gans evaluate {ours:.4f}")
    assert 1.0 < ours < 1e4  # a barely trained generator: far from the data, a finite distance
    assert theirs == pytest.approx(ours, rel=0.01)

    # and where FID is small (two halves of the real images), the extractor adapter agrees as closely
    halves = [tmp_path / "half0", tmp_path / "half1"]
    for k, half in enumerate(halves):
        half.mkdir()
        for i in range(NUM_REAL // 2):
            name = f"{k * NUM_REAL // 2 + i:06d}.png"
            (half / name).write_bytes((real_dir / name).read_bytes())
    small = FIDCallback("mnist", num_real=NUM_REAL // 2, num_fake=NUM_REAL // 2, cache_dir=tmp_path / "fid")
    small.setup(None, None, "fit")
    replay = SimpleNamespace(
        device=torch.device("cpu"), generator_step=0, sample=lambda z: real[NUM_REAL // 2 :][z[:, 0].long()],
        sample_latent=lambda n, generator=None: torch.arange(n, dtype=torch.float32)[:, None],
    )  # fmt: skip
    ours_small = float(small.evaluate(stub, replay)["fid"])
    theirs_small = torch_fidelity_fid(halves[1], halves[0])
    print(f"FID of two real halves: torch-fidelity {theirs_small:.4f}, FIDCallback {ours_small:.4f}")
    assert ours_small < ours / 10 and theirs_small == pytest.approx(ours_small, rel=0.01)

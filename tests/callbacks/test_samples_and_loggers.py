"""SampleGrid and the logging paths: PNG files without an image logger, TensorBoard-free W&B offline, GIF."""

from __future__ import annotations

import numpy as np
import torch
from gan_testing import RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from lit_gans import DCGAN, InfoGAN
from lit_gans.callbacks import DiversityMonitor, FIDCallback, GradientNormMonitor, SampleGrid
from lit_gans.loggers import WandbLogger
from gan_testing import ProjectionFeatures


def tiny_dcgan(**kwargs):
    return DCGAN(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4, **kwargs)


def test_png_files_and_gif_with_a_csv_logger(tmp_path):
    logger = CSVLogger(tmp_path, name="run")
    samples = SampleGrid(every_n_generator_steps=2, num_images=16, nrow=4, gif=True)
    model = tiny_dcgan(max_generator_steps=6)
    Trainer(**tiny_trainer_kwargs(logger=logger, callbacks=[samples])).fit(model, RandomImages(n=64))
    folder = tmp_path / "run" / "version_0" / "images"
    grids = sorted((folder / "samples_grid").glob("*.png"))
    assert [p.stem for p in grids] == ["00000002", "00000004", "00000006"]  # named by generator step
    image = np.asarray(Image.open(grids[0]))
    assert image.dtype == np.uint8 and image.shape == (4 * 10 + 2, 4 * 10 + 2, 3)
    assert (folder / "samples_interpolation").is_dir()
    gif = Image.open(folder / "samples_grid.gif")
    assert gif.n_frames == 3 and len(samples.state_dict()["frames"]) == 3


def test_grid_shows_the_fixed_noise():
    model = tiny_dcgan()
    expected = model.sample(z=model.sample_noise[:16])
    from lit_gans.latent import render_grid

    assert torch.equal(render_grid(model.sample(z=model.sample_noise[:16]), nrow=4), render_grid(expected, nrow=4))


def test_infogan_traversal_is_logged(tmp_path):
    logger = CSVLogger(tmp_path, name="run")
    model = InfoGAN(image_shape=(1, 8, 8), noise_dim=4, categorical_dim=3, continuous_dim=1, q_hidden_dim=8,
                    generator_width=4, discriminator_width=4, max_generator_steps=2)
    Trainer(**tiny_trainer_kwargs(logger=logger, callbacks=[SampleGrid(every_n_generator_steps=2)])).fit(model, RandomImages(n=32))
    (png,) = (tmp_path / "run" / "version_0" / "images" / "samples_traversal").glob("*.png")
    assert np.asarray(Image.open(png)).shape[0] == 3 * 10 + 2  # one row per categorical value


def test_real_wandb_logger_offline_gets_images_and_scalars(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = WandbLogger(save_dir=str(tmp_path))  # no API key here: offline
    callbacks = [
        SampleGrid(every_n_generator_steps=2),
        GradientNormMonitor(every_n_generator_steps=1),
        FIDCallback(ProjectionFeatures(), num_real=32, num_fake=32, every_n_generator_steps=2),
        DiversityMonitor(num_samples=16, every_n_generator_steps=2),
    ]
    model = tiny_dcgan(max_generator_steps=4)
    Trainer(**tiny_trainer_kwargs(logger=logger, callbacks=callbacks, log_every_n_steps=1)).fit(
        model, RandomImages(n=64, image_shape=(1, 8, 8))
    )
    summary = dict(logger.experiment.summary)
    for key in ("fid", "best_fid", "grad_norm/generator", "grad_norm/discriminator", "diversity/ms_ssim_fake",
                "train/d_loss", "train/g_loss", "samples/grid", "samples/interpolation"):
        assert key in summary, key
    assert summary["trainer/global_step"] == 4  # the x-axis is the generator step
    logger.experiment.finish()
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    images = sorted(p.name for p in (run / "files" / "media" / "images" / "samples").glob("*.png"))
    assert any(n.startswith("grid_") for n in images) and any(n.startswith("interpolation_") for n in images)


def test_a_conditional_models_grid_has_one_row_per_class_captioned_with_the_class_names(tmp_path):
    from lit_gans.latent import render_grid

    class Named(RandomImages):
        class_names = ["永", "和", "九"]

    logger = CSVLogger(tmp_path, name="run")
    samples = SampleGrid(every_n_generator_steps=2, num_images=8, nrow=4, interpolation=False)
    model = DCGAN(num_classes=3, image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4,
                  max_generator_steps=2)  # fmt: skip
    Trainer(**tiny_trainer_kwargs(logger=logger, callbacks=[samples])).fit(model, Named(n=32, num_classes=3))
    [png] = (tmp_path / "run" / "version_0" / "images" / "samples_grid").glob("*.png")
    image = Image.open(png)
    assert image.size == (4 * 10 + 2, 2 * 10 + 2)  # 8 images: the first 2 of 3 classes, 4 latents each
    assert image.text["Description"] == "rows (first 2 of 3 classes), top to bottom: 永, 和"
    z = model.sample_noise[:4]
    expected = render_grid(torch.cat([model.sample(z=z, labels=0), model.sample(z=z, labels=1)]), nrow=4)
    assert np.array_equal(np.asarray(image), (expected.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_each_wandb_run_keeps_its_own_gif_beside_its_checkpoints(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    gifs = []
    for _ in range(2):
        logger = WandbLogger(save_dir=str(tmp_path), project="p", offline=True)
        samples = SampleGrid(every_n_generator_steps=2, num_images=4, nrow=2, interpolation=False, gif=True)
        trainer = Trainer(**tiny_trainer_kwargs(logger=logger, callbacks=[samples]))
        trainer.fit(tiny_dcgan(max_generator_steps=4), RandomImages(n=64))
        gifs.append(tmp_path / "p" / logger.version / "images" / "samples_grid.gif")
        logger.experiment.finish()
    assert gifs[0] != gifs[1] and all(gif.exists() for gif in gifs)

"""Sample images while training: a fixed-noise grid, a latent interpolation strip, InfoGAN's code traversal, and
optionally an animated GIF of the grid over training."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from lightning.pytorch import LightningModule, Trainer
from PIL import Image

from lit_gans.callbacks.base import PeriodicCallback, image_dir, log_image
from lit_gans.latent import interpolation_grid, render_grid, to_uint8_image
from lit_gans.validation import check_int


class SampleGrid(PeriodicCallback):
    """Logs ``samples/grid`` (the model's fixed ``sample_noise``, so frames are comparable; for a conditional model
    one row per class, captioned with the class names: :meth:`class_rows`), ``samples/interpolation``
    (spherical interpolation between fixed latent pairs; a conditional model's rows keep the fixed classes of its
    ``sample_labels``, never labels drawn from the training noise) and, for InfoGAN, ``samples/traversal`` (one row per
    categorical value, a continuous code swept from -2 to 2), through whatever logger the Trainer has (W&B and
    TensorBoard natively, else PNG files under ``<log dir>/images``), converted to uint8 explicitly, from rank 0
    only (no collective work, so the other ranks never wait). With ``gif=True`` the grids also become
    ``<log dir>/images/samples_grid.gif`` at the end of training, as the references showed.

    Example::

        SampleGrid(every_n_generator_steps=500, num_images=64, gif=True)
    """

    def __init__(
        self,
        every_n_generator_steps: Optional[int] = 500,
        every_n_epochs: Optional[int] = None,
        num_images: int = 64,
        nrow: int = 8,
        interpolation: bool = True,
        interpolation_steps: int = 10,
        traversal: bool = True,
        gif: bool = False,
        gif_frame_ms: int = 300,
    ) -> None:
        super().__init__(every_n_generator_steps, every_n_epochs, at_train_end=True)
        self.num_images = check_int("num_images", num_images)
        self.nrow = check_int("nrow", nrow)
        self.interpolation, self.interpolation_steps = interpolation, check_int("interpolation_steps", interpolation_steps, 2)
        self.traversal = traversal
        self.gif, self.gif_frame_ms = gif, gif_frame_ms
        self.frames: list[np.ndarray] = []

    @torch.no_grad()
    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if getattr(pl_module, "num_classes", 0):
            grid, caption = self.class_rows(trainer, pl_module)
        else:
            grid, caption = render_grid(pl_module.sample(z=pl_module.sample_noise[: self.num_images]), nrow=self.nrow), None
        log_image(trainer, pl_module, "samples/grid", grid, caption)
        if self.gif:
            self.frames.append(to_uint8_image(grid))
        if self.interpolation and len(pl_module.sample_noise) >= 8:
            z = pl_module.sample_noise
            strip = interpolation_grid(pl_module, z[0:4], z[4:8], steps=self.interpolation_steps)
            log_image(trainer, pl_module, "samples/interpolation", strip)
        if self.traversal and hasattr(pl_module, "traversal_grid"):
            log_image(trainer, pl_module, "samples/traversal", pl_module.traversal_grid())

    def class_rows(self, trainer: Trainer, pl_module: LightningModule) -> tuple[Tensor, str]:
        """A conditional model's grid: one row per class (the first ``num_images // nrow`` classes when there are
        more), the same ``nrow`` fixed latents in every row, so a column shows one latent across classes; and a
        caption naming the rows' classes (the datamodule's ``class_names``: digits, folders, characters)."""
        rows = min(pl_module.num_classes, max(self.num_images // self.nrow, 1))
        z = pl_module.sample_noise[: self.nrow].repeat(rows, 1)
        labels = torch.arange(rows, device=pl_module.device).repeat_interleave(self.nrow)
        images = pl_module.sample(z=z, labels=labels)
        names = getattr(trainer.datamodule, "class_names", None) if trainer is not None else None
        names = list(names) if names else [str(c) for c in range(pl_module.num_classes)]
        shown = f"first {rows} of {pl_module.num_classes} classes" if rows < pl_module.num_classes else "one per class"
        return render_grid(images, nrow=self.nrow), f"rows ({shown}), top to bottom: " + ", ".join(names[:rows])

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.gif and self.frames and trainer.is_global_zero:
            path = image_dir(trainer) / "samples_grid.gif"
            path.parent.mkdir(parents=True, exist_ok=True)
            frames = [Image.fromarray(f) for f in self.frames]
            frames[0].save(path, save_all=True, append_images=frames[1:], duration=self.gif_frame_ms, loop=0)

    def state_dict(self) -> dict[str, Any]:
        # as tensors: a checkpoint of tensors and plain types loads with torch.load(weights_only=True), which
        # Lightning uses when resuming
        return {**super().state_dict(), "frames": [torch.from_numpy(f) for f in self.frames]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.frames = [np.asarray(f) for f in state_dict.get("frames", [])]


__all__ = ["SampleGrid"]

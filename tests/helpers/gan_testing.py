"""Small pieces the engine tests share: tiny networks and a random in-memory datamodule."""

from __future__ import annotations

import os

import torch
from lightning.pytorch import Callback
from torch.utils.data import DataLoader, TensorDataset

from lit_gans import DCGAN
from lit_gans.datamodules import ImageDataModule


#: the smallest DCGAN-family model arguments: 8x8 grey images, 4 channels per stage, a 4-d latent
TINY = dict(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4)


class RandomImages(ImageDataModule):
    """``n`` random images in [-1, 1] of ``image_shape``; picklable for ddp_spawn."""

    def __init__(self, n: int = 64, image_shape=(1, 8, 8), batch_size: int = 8, num_classes=None) -> None:
        super().__init__(batch_size=batch_size)
        self.n, self.image_shape = n, tuple(image_shape)
        self.num_classes = num_classes  # labels 0, 1, ..., num_classes - 1, 0, ... (else all 0)

    def setup(self, stage=None) -> None:
        g = torch.Generator().manual_seed(123)
        labels = torch.arange(self.n) % self.num_classes if self.num_classes else torch.zeros(self.n).long()
        self._set_tensors(torch.rand(self.n, *self.image_shape, generator=g) * 2 - 1, labels)

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup()
        # no shuffle: two runs see the same batches
        return DataLoader(self.train_set, batch_size=self.batch_size, drop_last=True)


class ResumableRandomImages(RandomImages):
    """:class:`RandomImages` through the package's own loader (seeded shuffling that resumes mid-epoch)."""

    train_dataloader = ImageDataModule.train_dataloader


def tiny_trainer_kwargs(**overrides):
    kwargs = dict(
        max_epochs=-1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    kwargs.update(overrides)
    return kwargs


def fitted_checkpoint(path, model: DCGAN, data, generator_steps: int = 2):
    """``model`` trained ``generator_steps`` generator steps on ``data`` by a tiny trainer, saved at ``path``."""
    from lightning.pytorch import Trainer

    model.max_generator_steps = generator_steps
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(model, data)
    trainer.save_checkpoint(path)
    return path


class RankSyncCheck(Callback):
    """Checked inside every DDP worker at the end of training (a failed check raises there, and the spawn launcher
    re-raises it in the parent): G's and D's parameters are identical on all ranks, training changed them, the
    generator-step budget was reached, and each rank draws its own latent noise. Each rank then writes a marker
    file so the test can tell the checks ran."""

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir

    def on_train_start(self, trainer, pl_module) -> None:
        self.names = ["generator", "discriminator"] + (["generator_ema"] if pl_module.generator_ema is not None else [])
        self.initial = {n: _flat(getattr(pl_module, n)) for n in self.names}

    def on_train_end(self, trainer, pl_module) -> None:
        for name in self.names:
            flat = _flat(getattr(pl_module, name))
            gathered = pl_module.all_gather(flat)
            assert gathered.shape[0] == trainer.world_size == 2
            assert torch.equal(gathered[0], gathered[1]), f"{name} weights differ across ranks"
            assert not torch.equal(flat, self.initial[name]), f"{name} did not train"
        assert pl_module.generator_step == pl_module.max_generator_steps
        for part in (pl_module.regularizers, pl_module.augment):  # their state (ADA's p, LeCam's averages)
            for name, buffer in (part.named_buffers() if part is not None else ()):
                gathered = pl_module.all_gather(buffer.detach().double().flatten())
                assert torch.equal(gathered[0], gathered[1]), f"{name} of {type(part).__name__} differs across ranks"
        z = pl_module.all_gather(pl_module.sample_latent(4))
        assert not torch.equal(z[0], z[1]), "ranks drew the same latent noise"
        if pl_module.num_classes:  # each rank orders its batch's labels for the fakes with its own noise
            order = pl_module.all_gather(pl_module.labels_for_fakes(torch.arange(16, device=pl_module.device)))
            assert not torch.equal(order[0], order[1]), "ranks generated for the same labels"
        with open(os.path.join(self.marker_dir, f"rank{trainer.global_rank}.ok"), "w") as f:
            f.write(str(pl_module.generator_step))


class ShardCheck(Callback):
    """Inside each DDP worker: the images a rank trains on in one epoch are disjoint from the other rank's, and
    together they are the whole dataset (the data was prepared once and sharded, not duplicated)."""

    def __init__(self, marker_dir: str, dataset_size: int) -> None:
        self.marker_dir, self.dataset_size = marker_dir, dataset_size
        self.seen: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(batch[0].double().flatten(1).sum(1))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        mine = torch.cat(self.seen)
        everyone = pl_module.all_gather(mine)
        assert everyone.shape == (2, self.dataset_size // 2)
        assert len(set(everyone[0].tolist()) & set(everyone[1].tolist())) == 0, "ranks saw the same images"
        assert len(set(everyone.flatten().tolist())) == self.dataset_size
        caches = [p for p in os.listdir(os.environ["LIT_GANS_CACHE"]) if p.endswith(".pt")]
        assert len(caches) == 1, caches
        with open(os.path.join(self.marker_dir, f"rank{trainer.global_rank}.ok"), "w") as f:
            f.write(str(len(mine)))


class SaveAt(Callback):
    """Saves a checkpoint at ``path`` after batch ``batch`` of the first epoch and stops: an interrupted run."""

    def __init__(self, path, batch: int) -> None:
        self.path, self.batch = path, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.batch:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


class ConstantCritic(torch.nn.Module):
    """A discriminator rigged to score every image ``score``: ``score > 0`` is a D that has overfitted, sure every
    real image is real (ADA's r_t = 1); ``score < 0`` one that is not. Its weight gets zero gradients."""

    def __init__(self, score: float) -> None:
        super().__init__()
        self.score = score
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.score + 0 * self.weight * images.flatten(1).mean(1)


class AugmentProbability(Callback):
    """Inside each DDP worker at the end of training: writes ADA's p and r_t of this rank to a file."""

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir

    def on_train_end(self, trainer, pl_module) -> None:
        with open(os.path.join(self.marker_dir, f"rank{trainer.global_rank}.p"), "w") as f:
            f.write(f"{pl_module.augment.p.item()!r} {pl_module.augment.rt.item()!r}")


class ProjectionFeatures(torch.nn.Module):
    """A fixed random projection of the pixels to 16 features: a cheap, deterministic FID extractor."""

    num_features = 16

    def __init__(self, pixels: int = 64) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(pixels, 16, generator=torch.Generator().manual_seed(0)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1).float() @ self.weight


def _flat(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


__all__ = ["AugmentProbability", "ConstantCritic", "ProjectionFeatures", "RandomImages", "ResumableRandomImages", "RankSyncCheck", "SaveAt", "ShardCheck", "TensorDataset", "tiny_trainer_kwargs"]


class NaNAfter(DCGAN):
    """Injects a NaN discriminator loss from generator step ``start`` on (or every other D step)."""

    def __init__(self, start: int = 3, every_other: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.nan_start, self.every_other, self.d_calls = start, every_other, 0

    def discriminator_loss(self, step):
        loss, logs = super().discriminator_loss(step)
        self.d_calls += 1
        if self.generator_step >= self.nan_start and (not self.every_other or self.d_calls % 2):
            loss = loss * float("nan")
        return loss, logs


class ReplayGAN(torch.nn.Module):
    """Stands in for a GAN whose samples are given images: latent i -> image i."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images, self.device, self.generator_step = images, torch.device("cpu"), 0

    def sample_latent(self, n, generator=None):
        return torch.arange(n, dtype=torch.float32)[:, None]

    def sample(self, z):
        return self.images[z[:, 0].long()]

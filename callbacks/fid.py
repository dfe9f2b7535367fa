"""FID (and optionally KID and Inception Score) during training, correct under DDP and offline."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.seed import isolate_rng
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from lit_gans.callbacks.base import PeriodicCallback, log_scalars
from lit_gans.callbacks.features import MNISTClassifier, inception_weights_path
from lit_gans.callbacks.precision_recall import PrecisionRecall
from lit_gans.datamodules.image_folder import default_cache_dir
from lit_gans.datamodules.preprocessing import atomic_write_bytes
from lit_gans.validation import check_int

REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")


class _Inception(nn.Module):
    """torch-fidelity's Inception v3 (2048-d pool features) from a local weights file, fed images in [-1, 1]."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(weights))
        self.num_features = 2048

    def forward(self, images: Tensor) -> Tensor:
        x = images.float()
        x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x
        return self.net(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)).reshape(x.shape[0], -1)


class _FromMinusOneOne(nn.Module):
    """Adapts a user extractor: it receives float images in [-1, 1] and returns ``(N, d)`` features."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        if hasattr(module, "num_features"):
            self.num_features = module.num_features

    def forward(self, images: Tensor) -> Tensor:
        return self.module(images).flatten(1)


def build_extractor(
    feature_extractor: Union[str, nn.Module], weights_path: Optional[str] = None, download: bool = True
) -> tuple[nn.Module, str]:
    """``(module, name)`` for ``inception``, ``mnist`` or a user module (images in [-1, 1] -> ``(N, d)``)."""
    if isinstance(feature_extractor, nn.Module):
        return _FromMinusOneOne(feature_extractor), type(feature_extractor).__name__
    if feature_extractor == "mnist":
        return (MNISTClassifier.pretrained(weights_path) if weights_path else MNISTClassifier.pretrained()), "mnist"
    if feature_extractor == "inception":
        return _Inception(inception_weights_path(weights_path, download)), "inception"
    raise ValueError(f"feature_extractor={feature_extractor!r} is not supported; use 'inception', 'mnist' or an nn.Module")


class FIDCallback(PeriodicCallback):
    """Fréchet Inception Distance (Heusel et al. 2017) of the generator's samples, from torchmetrics'
    ``FrechetInceptionDistance`` (and ``KernelInceptionDistance``, ``InceptionScore`` with ``kid``/``inception_score``).

    * Real statistics are computed once per run from the first ``num_real`` training images and cached on disk,
      keyed by dataset, split, extractor and sample count (``cache_dir``); never re-added per evaluation or in the
      sanity check.
    * Fake images come from a fixed set of ``num_fake`` latent vectors (seed ``seed``), so successive values are
      comparable; they are generated in batches with the generator in eval mode (the weight-averaged one when the
      model keeps one, ``generator_ema_decay``), with autocast off.
    * Under DDP every rank extracts features of its share of real and fake images and ``compute`` syncs them (all
      ranks call it), so the value equals the single-process one on the same samples.
    * The feature extractor lives on the callback, never in the LightningModule, so it is not saved in checkpoints.

    Logs ``fid`` (``kid``, ``inception_score``) against the generator step; ``ModelCheckpoint(monitor="fid",
    mode="min")`` keeps the best checkpoint (GANs often degrade after their best step). Tracks ``best_fid`` and
    ``best_step`` (restored from checkpoints).

    Example::

        FIDCallback(feature_extractor="mnist", num_fake=5000, every_n_generator_steps=1000)

    Args:
        feature_extractor: ``inception`` (torch-fidelity's weights: ``weights_path`` or torch hub's cache;
            downloaded if missing and ``download``; a clear error offline), ``mnist`` (the shipped digit classifier;
            meaningful for MNIST-like data) or any ``nn.Module`` mapping images in [-1, 1] to ``(N, d)`` features.
        num_real: real images for the statistics.
        num_fake: generated images per evaluation.
        every_n_generator_steps: evaluate every n generator updates.
        every_n_epochs: evaluate every n epochs.
        batch_size: images per extractor forward.
        kid: also compute KID (subset size ``min(1000, num_fake)``).
        precision_recall: also compute improved precision and recall (Kynkäänniemi et al. 2019; logged as
            ``precision`` and ``recall``; :class:`~lit_gans.callbacks.precision_recall.PrecisionRecall`), which
            tell fidelity from coverage. Keeps every real feature in memory, like KID.
        precision_recall_neighborhood: the k of the k-nearest-neighbour balls (3 in the paper).
        inception_score: also compute the Inception Score over the extractor's output as logits.
        cache_dir: where real statistics are cached (default ``<lit_gans cache>/fid``); ``None`` with a user
            module and no ``cache_name`` disables the cache.
        cache_name: names a user module's features in the cache key.
        seed: seed of the fixed fake latent vectors.
    """

    def __init__(
        self,
        feature_extractor: Union[str, nn.Module] = "inception",
        num_real: int = 10_000,
        num_fake: int = 10_000,
        every_n_generator_steps: Optional[int] = 1000,
        every_n_epochs: Optional[int] = None,
        batch_size: int = 250,
        kid: bool = False,
        inception_score: bool = False,
        precision_recall: bool = False,
        precision_recall_neighborhood: int = 3,
        weights_path: Optional[str] = None,
        download: bool = True,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        cache_name: Optional[str] = None,
        seed: int = 1234,
        at_train_end: bool = False,
    ) -> None:
        super().__init__(every_n_generator_steps, every_n_epochs, at_train_end)
        self.feature_extractor = feature_extractor
        self.num_real = check_int("num_real", num_real, minimum=2)
        self.num_fake = check_int("num_fake", num_fake, minimum=2)
        self.batch_size = check_int("batch_size", batch_size)
        self.kid, self.inception_score = kid, inception_score
        self.precision_recall = precision_recall
        self.precision_recall_neighborhood = check_int("precision_recall_neighborhood", precision_recall_neighborhood)
        self.weights_path, self.download = weights_path, download
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "fid"
        self.cache_name = cache_name
        self.seed = seed
        self.best_fid: Optional[float] = None
        self.best_step: Optional[int] = None
        self._real_done = False

    # ------------------------------------------------------------------ setup
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Built here, in each process: metric states created before a CPU ddp_spawn would be shared memory between
        # ranks (the engineering notes), and a missing Inception file fails now rather than mid-run.
        extractor, self.extractor_name = build_extractor(self.feature_extractor, self.weights_path, self.download)
        extractor = extractor.eval().requires_grad_(False)
        self.fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False, normalize=True)
        self.kid_metric = self.is_metric = self.prc_metric = None
        if self.precision_recall:
            self.prc_metric = PrecisionRecall(extractor, self.precision_recall_neighborhood, reset_real_features=False)
        if self.kid:
            from torchmetrics.image.kid import KernelInceptionDistance

            self.kid_metric = KernelInceptionDistance(
                feature=extractor, subset_size=min(1000, self.num_fake), reset_real_features=False, normalize=True
            )
        if self.inception_score:
            from torchmetrics.image.inception import InceptionScore

            logits = _Logits(extractor)
            self.is_metric = InceptionScore(feature=logits)  # normalize=False: our float images pass unchanged
        self._real_done = False

    def _metrics(self) -> list:
        return [m for m in (self.fid, self.kid_metric, self.is_metric, self.prc_metric) if m is not None]

    # ------------------------------------------------------------------ real statistics
    def cache_path(self, trainer: Trainer) -> Optional[Path]:
        if isinstance(self.feature_extractor, nn.Module) and self.cache_name is None:
            return None
        dm = trainer.datamodule
        identity = {
            "datamodule": type(dm).__name__ if dm is not None else None,
            "data": str(getattr(dm, "data_dir", "")),
            "dataset": getattr(dm, "dataset", None),
            "train": getattr(dm, "train", True),
            "image_shape": list(getattr(dm, "image_shape", []) or []),
            "split": "train",
            "extractor": self.cache_name or self.extractor_name,
            "num_real": self.num_real,
        }
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.cache_dir / f"real-{identity['extractor']}-{self.num_real}-{key}.pt"

    def _real_images(self, trainer: Trainer) -> Tensor:
        dm = trainer.datamodule
        train_set = getattr(dm, "train_set", None)
        if train_set is not None and hasattr(train_set, "tensors"):
            images = train_set.tensors[0][: self.num_real]
        else:
            chunks, count = [], 0
            for batch in trainer.train_dataloader:
                x = batch[0] if isinstance(batch, (list, tuple)) else batch
                chunks.append(x)
                count += len(x)
                if count >= self.num_real:
                    break
            images = torch.cat(chunks)[: self.num_real]
        if len(images) < 2:
            raise ValueError(f"FIDCallback needs at least 2 real images, the training data has {len(images)}")
        return images

    def _add_real(self, trainer: Trainer, pl_module: LightningModule) -> None:
        path = self.cache_path(trainer)
        states = torch.load(path, map_location="cpu", weights_only=True) if path is not None and path.exists() else None
        share = None
        keep_features = [m for m in (self.kid_metric, self.prc_metric) if m is not None]  # not cached
        if states is None or keep_features:
            share = self._real_images(trainer)[trainer.global_rank :: trainer.world_size]
        for metric in keep_features:
            self._update(metric, share, pl_module, real=True)
        if states is None:
            self._update(self.fid, share, pl_module, real=True)
            # the full statistics are the sum over ranks
            states = {k: trainer.strategy.reduce(getattr(self.fid, k).clone(), reduce_op="sum") for k in REAL_STATES}
            states = {k: v.cpu() for k, v in states.items()}
            if path is not None and trainer.is_global_zero:
                buffer = io.BytesIO()
                torch.save(states, buffer)
                atomic_write_bytes(path, buffer.getvalue())
        # rank 0 holds the whole real statistics, the others none: compute() sums the ranks' states
        for k in REAL_STATES:
            value = states[k] if trainer.is_global_zero else torch.zeros_like(states[k])
            setattr(self.fid, k, value.to(device=pl_module.device, dtype=getattr(self.fid, k).dtype))
        self._real_done = True

    @torch.no_grad()
    def _update(self, metric: Any, images: Tensor, pl_module: LightningModule, real: bool) -> None:
        with torch.autocast(device_type=pl_module.device.type, enabled=False):
            for chunk in images.split(self.batch_size):
                chunk = chunk.to(pl_module.device).float()
                if real is None:
                    metric.update(chunk)
                else:
                    metric.update(chunk, real=real)

    # ------------------------------------------------------------------ evaluation
    def fake_latents(self, pl_module: LightningModule) -> Tensor:
        """The fixed latent vectors of every evaluation (the same ones on every rank and every run)."""
        return pl_module.sample_latent(self.num_fake, generator=torch.Generator().manual_seed(self.seed))

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        """Compute the metrics now (a collective call under DDP: every rank must call it)."""
        for metric in self._metrics():
            metric.to(pl_module.device)
        if not self._real_done:
            self._add_real(trainer, pl_module)
        with isolate_rng():  # KID/IS subsets draw from the global RNG; training's stream must not change
            z = self.fake_latents(pl_module)[trainer.global_rank :: trainer.world_size]
            for chunk in z.split(self.batch_size):
                fake = pl_module.sample(z=chunk)
                self._update(self.fid, fake, pl_module, real=False)
                if self.kid_metric is not None:
                    self._update(self.kid_metric, fake, pl_module, real=False)
                if self.is_metric is not None:
                    self._update(self.is_metric, fake, pl_module, real=None)
                if self.prc_metric is not None:
                    self._update(self.prc_metric, fake, pl_module, real=False)
            results = {"fid": self.fid.compute().float()}
            if self.kid_metric is not None:
                results["kid"] = self.kid_metric.compute()[0].float()
            if self.is_metric is not None:
                results["inception_score"] = self.is_metric.compute()[0].float()
            if self.prc_metric is not None:
                results["precision"], results["recall"] = (v.float() for v in self.prc_metric.compute())
        for metric in self._metrics():  # fake side only: reset_real_features=False
            metric.reset()
        return results

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = self.evaluate(trainer, pl_module)
        fid = float(results["fid"])
        if self.best_fid is None or fid < self.best_fid:
            self.best_fid, self.best_step = fid, int(getattr(pl_module, "generator_step", trainer.global_step))
        results["best_fid"] = torch.tensor(self.best_fid)
        log_scalars(trainer, pl_module, results)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_fid": self.best_fid, "best_step": self.best_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_fid, self.best_step = state_dict.get("best_fid"), state_dict.get("best_step")


class _Logits(nn.Module):
    """Class logits for the Inception Score: the extractor's ``logits`` if it has them, else its output."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, images: Tensor) -> Tensor:
        fn = getattr(self.extractor, "logits", None)
        return fn(images) if fn is not None else self.extractor(images)


__all__ = ["FIDCallback", "build_extractor"]

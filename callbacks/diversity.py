"""Mode-collapse monitoring: MS-SSIM diversity of generated samples against real data, and mode coverage with a
classifier for labelled data (MNIST)."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from lit_gans.callbacks.base import MetricCallback, fixed_labels, keeps_global_rng, log_scalars, train_loader
from lit_gans.callbacks.features import MNISTClassifier
from lit_gans.datamodules.base import float_images, uint8_to_unit_range
from lit_gans.validation import check_float, check_int

MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003
#: images per generator and classifier forward
CHUNK = 500


def ms_ssim_settings(size: int) -> tuple[tuple[float, ...], int]:
    """``(betas, kernel_size)`` for images of side ``size``: as many scales as possible (up to the paper's 5) with
    an odd Gaussian kernel of at least 5 (at most 11) that fits the coarsest scale and that torchmetrics accepts
    (``size // max(1, scales - 1)**2 > kernel - 1``). 28/32 px: 3 scales, kernel 7; 64: 4, 7; 128: 5, 7. Images
    too small for two scales get single-scale SSIM with a kernel of 3 or more."""
    for scales in range(5, 0, -1):
        div = max(1, scales - 1) ** 2
        kernel = min(11, size // div, size // 2 ** (scales - 1))
        kernel -= 1 - kernel % 2  # odd
        if kernel >= (5 if scales > 1 else 3):
            betas = MS_SSIM_BETAS[:scales] if scales > 1 else (1.0,)
            return tuple(b / sum(betas) for b in betas), kernel
    raise ValueError(f"images of {size} px are too small for SSIM (need at least 3 px)")


@torch.no_grad()
def pairwise_ms_ssim(images: Tensor, pairs: Optional[int] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Mean MS-SSIM over random pairs of distinct images in [-1, 1] (Odena et al. 2017's diversity measure):
    higher means more alike. ``images`` ``(N, C, H, W)``; ``pairs`` defaults to ``N // 2`` disjoint pairs."""
    n = images.shape[0]
    if n < 2:
        raise ValueError("pairwise MS-SSIM needs at least 2 images")
    perm = torch.randperm(n, generator=generator).to(images.device)
    half = n // 2 if pairs is None else min(pairs, n // 2)
    a, b = images[perm[:half]], images[perm[half : 2 * half]]
    betas, kernel = ms_ssim_settings(min(images.shape[-2:]))
    x, y = (a.float() + 1) / 2, (b.float() + 1) / 2
    scores = multiscale_structural_similarity_index_measure(
        x, y, data_range=1.0, kernel_size=kernel, betas=betas, normalize="relu", reduction="none"
    )
    return scores.mean()


def class_histogram(logits: Tensor, num_classes: int) -> Tensor:
    return torch.bincount(logits.argmax(1), minlength=num_classes).float()


def mode_statistics(fake_counts: Tensor, real_counts: Tensor, min_share: float = 0.1) -> tuple[Tensor, Tensor]:
    """``(modes covered, KL(fake || real))`` from class histograms. A class counts as covered when it receives at
    least ``min_share`` of the samples it would get under the data's class distribution (Metz et al. 2017,
    Srivastava et al. 2017 count modes this way); the KL uses add-one smoothing so empty classes stay finite."""
    p_fake = (fake_counts + 1) / (fake_counts + 1).sum()
    p_real = (real_counts + 1) / (real_counts + 1).sum()
    expected = p_real * fake_counts.sum()
    covered = (fake_counts >= min_share * expected).sum()
    kl = (p_fake * (p_fake / p_real).log()).sum()
    return covered, kl


class DiversityMonitor(MetricCallback):
    """Mode-collapse monitor.

    * ``diversity/ms_ssim_fake``: mean pairwise MS-SSIM of ``num_samples`` generated images, and
      ``diversity/ms_ssim_real`` of as many real ones (computed once). Generated samples that are more alike than
      real ones (a higher value) mean collapse. Scales and kernel adapt to 28, 32, 64 and 128 px
      (:func:`ms_ssim_settings`; torchmetrics' defaults need 176 px).
    * ``diversity/collapse`` is 1 when ``ms_ssim_fake > ms_ssim_real + collapse_margin``; with
      ``stop_on_collapse`` training stops there.
    * A class-conditional model's samples get fixed labels too, drawn with the fixed latents from the training
      data's class frequencies (:func:`~lit_gans.callbacks.base.fixed_labels`), so that they mix classes as the
      real pairs do; successive values are comparable and ``lit-gans evaluate`` reproduces them.
    * With a ``classifier`` (``"mnist"``: the shipped digit classifier, or a module with ``logits``):
      ``diversity/modes_covered`` and ``diversity/kl_classes`` (KL of the generated class histogram from the
      data's).

    Under DDP each rank scores its own samples and the values are averaged (counts summed) across ranks.
    :meth:`evaluate` computes the metrics, :meth:`run` (every ``every_n_generator_steps``) logs them and acts on
    a collapse.

    Example::

        DiversityMonitor(classifier="mnist", every_n_generator_steps=500, stop_on_collapse=True)

    Args:
        num_samples: generated images per evaluation, and real images (once) for the real MS-SSIM and classes.
        every_n_generator_steps, every_n_epochs: when to evaluate.
        collapse_margin: how much more alike than real images the samples may be before ``diversity/collapse``.
        stop_on_collapse: stop training at a collapse.
        classifier: ``"mnist"`` or a module with ``logits`` for the mode coverage (``None``: none).
        num_classes: the classifier's classes.
        seed: seed of the real subset and of the latents.
        ema: passed to ``sample`` (``None``: the weight-averaged generator whenever the model has one).
    """

    evaluation_settings = {"num_fake": "num_samples", "seed": "seed", "ema": "ema"}

    def __init__(
        self,
        num_samples: int = 500,
        every_n_generator_steps: Optional[int] = 500,
        every_n_epochs: Optional[int] = None,
        collapse_margin: float = 0.1,
        stop_on_collapse: bool = False,
        classifier: Optional[Union[str, nn.Module]] = None,
        num_classes: int = 10,
        seed: int = 4321,
        ema: Optional[bool] = None,
    ) -> None:
        super().__init__(every_n_generator_steps, every_n_epochs)
        self.num_samples = check_int("num_samples", num_samples, minimum=4)
        self.collapse_margin = check_float("collapse_margin", collapse_margin, inclusive=True)
        self.stop_on_collapse = stop_on_collapse
        self.classifier_spec, self.num_classes = classifier, num_classes
        self.seed, self.ema = seed, ema
        self.real_ms_ssim: Optional[Tensor] = None
        self.real_counts: Optional[Tensor] = None
        self.collapsed_at: Optional[int] = None

    @keeps_global_rng
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        spec = self.classifier_spec
        self.classifier = MNISTClassifier.pretrained() if spec == "mnist" else spec
        if isinstance(spec, str) and spec != "mnist":
            raise ValueError(f"classifier={spec!r} is not supported; use 'mnist' or an nn.Module with .logits")

    def _real(self, trainer: Trainer) -> Tensor:
        g = torch.Generator().manual_seed(self.seed)
        train_set = getattr(trainer.datamodule, "train_set", None)
        if train_set is not None and hasattr(train_set, "tensors"):  # held as uint8: only the drawn images become floats
            return float_images(train_set, torch.randperm(len(train_set), generator=g)[: self.num_samples])
        to_float = getattr(trainer.datamodule, "to_float", uint8_to_unit_range)
        images = torch.cat([to_float(b[0] if isinstance(b, (list, tuple)) else b) for b in train_loader(trainer)])
        return images[torch.randperm(len(images), generator=g)[: self.num_samples]]

    def _logits(self, images: Tensor, device: torch.device) -> Tensor:
        self.classifier.to(device)
        fn = getattr(self.classifier, "logits", self.classifier)
        with torch.autocast(device_type=device.type, enabled=False):
            return torch.cat([fn(chunk.to(device).float()) for chunk in images.split(CHUNK)])

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        """The metrics now (a collective call under DDP: every rank must call it); the real side is computed once."""
        strategy, device = trainer.strategy, pl_module.device
        g = torch.Generator().manual_seed(self.seed + trainer.global_rank)
        if self.real_ms_ssim is None:  # the same real pairs on every rank: every rank reaches the same verdict
            real = self._real(trainer)
            self.real_ms_ssim = pairwise_ms_ssim(real.to(device), generator=torch.Generator().manual_seed(self.seed)).cpu()
            if self.classifier is not None:
                self.real_counts = class_histogram(self._logits(real, device), self.num_classes).cpu()
        share = max(2, self.num_samples // trainer.world_size)
        fixed = torch.Generator().manual_seed(self.seed + 1 + trainer.global_rank)
        z = pl_module.sample_latent(share, generator=fixed)
        labels = fixed_labels(pl_module, share, fixed)  # a conditional model's: the data's class mix, fixed
        kwargs = {} if self.ema is None else {"ema": self.ema}
        if labels is None:
            fake = torch.cat([pl_module.sample(z=chunk, **kwargs) for chunk in z.split(CHUNK)])
        else:
            fake = torch.cat([
                pl_module.sample(z=chunk, labels=chunk_labels.to(device), **kwargs)
                for chunk, chunk_labels in zip(z.split(CHUNK), labels.split(CHUNK))
            ])
        fake_ms_ssim = strategy.reduce(pairwise_ms_ssim(fake, generator=g).to(device), reduce_op="mean")
        metrics = {"diversity/ms_ssim_fake": fake_ms_ssim, "diversity/ms_ssim_real": self.real_ms_ssim}
        collapsed = bool(fake_ms_ssim.item() > self.real_ms_ssim.item() + self.collapse_margin)
        metrics["diversity/collapse"] = torch.tensor(float(collapsed))
        if self.classifier is not None:
            counts = strategy.reduce(class_histogram(self._logits(fake, device), self.num_classes), reduce_op="sum")
            covered, kl = mode_statistics(counts.cpu(), self.real_counts)
            metrics["diversity/modes_covered"], metrics["diversity/kl_classes"] = covered, kl
        return metrics

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = self.evaluate(trainer, pl_module)
        log_scalars(trainer, pl_module, metrics)
        if bool(metrics["diversity/collapse"]):
            fake_ms_ssim = metrics["diversity/ms_ssim_fake"]
            step = int(getattr(pl_module, "generator_step", trainer.global_step))
            self.collapsed_at = self.collapsed_at if self.collapsed_at is not None else step
            rank_zero_warn(
                f"Possible mode collapse at generator step {step}: generated samples are more alike (MS-SSIM "
                f"{fake_ms_ssim.item():.3f}) than real ones ({self.real_ms_ssim.item():.3f})"
            )
            if self.stop_on_collapse:
                trainer.should_stop = True  # same decision on every rank: the value was reduced

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "real_ms_ssim": self.real_ms_ssim, "real_counts": self.real_counts,
                "collapsed_at": self.collapsed_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.real_ms_ssim, self.real_counts = state_dict.get("real_ms_ssim"), state_dict.get("real_counts")
        self.collapsed_at = state_dict.get("collapsed_at")


__all__ = ["DiversityMonitor", "class_histogram", "mode_statistics", "ms_ssim_settings", "pairwise_ms_ssim"]

"""The record of one training step that every loss and regularizer receives (a loss never re-reads the batch).

StyleGAN2-ADA's boundary: the engine's loop says *when* a network is updated, and builds one :class:`TrainingStep`
per update; a model's ``discriminator_loss(step)`` / ``generator_loss(step)`` say *what* is computed from it.

Example::

    >>> import torch
    >>> step = TrainingStep(real=torch.zeros(2, 1, 8, 8), labels=None, z=torch.zeros(2, 4), fake=torch.ones(2, 1, 8, 8))
    >>> step.batch_size
    2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor


@dataclass
class TrainingStep:
    """What one discriminator or generator update sees.

    Attributes:
        real: the real images of the batch (the same batch in a D update and the G update that follows it).
        labels: their class labels, or ``None`` for unlabelled data.
        z: the latents the fakes were generated from.
        fake: ``G(z)``: detached in a discriminator update, carrying G's graph in a generator update.
        fake_labels: the labels the fakes were generated for (conditional models), else ``None``.
        real_output, fake_output: D's raw outputs on the real and fake images, recorded by the D forwards of this
            update (:meth:`~lit_gans.GAN.discriminate`) with their graph, for the regularizers and ADA.
        real_class_logits, fake_class_logits: the auxiliary classifier's logits on the real and fake images,
            recorded by the D forwards of this update (``auxiliary`` conditioning), else ``None``.
    """

    real: Tensor
    labels: Optional[Tensor]
    z: Tensor
    fake: Tensor
    fake_labels: Optional[Tensor] = None
    real_output: Optional[Tensor] = None
    fake_output: Optional[Tensor] = None
    real_class_logits: Optional[Tensor] = None
    fake_class_logits: Optional[Tensor] = None

    @property
    def batch_size(self) -> int:
        return self.real.shape[0]


def split_batch(batch: Any) -> tuple[Tensor, Optional[Tensor]]:
    """``(images, labels or None)`` of a batch that is a tensor or an ``(images, labels, ...)`` sequence; uint8
    images (a package dataset in a loader of the user's own, without its datamodule's conversion) as floats in
    [-1, 1]."""
    images, labels = (batch[0], batch[1] if len(batch) > 1 else None) if isinstance(batch, (list, tuple)) else (batch, None)
    if images.dtype == torch.uint8:
        from lit_gans.datamodules.base import uint8_to_unit_range

        images = uint8_to_unit_range(images)
    return images, labels


__all__ = ["TrainingStep", "split_batch"]

"""Latent-space tools: interpolation (linear and spherical), latent arithmetic, and rendering them as grids.

As in the DCGAN paper's figures (Radford et al. 2016, sec. 6): walks between two latent vectors, and "face
arithmetic" on codes averaged over a few exemplars ("smiling woman" - "neutral woman" + "neutral man").

Example::

    >>> import torch
    >>> z0, z1 = torch.randn(100), torch.randn(100)
    >>> interpolate(z0, z1, steps=8, method="spherical").shape
    torch.Size([8, 100])
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid

from lit_gans.validation import check_choice, check_int


def lerp(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """``steps`` points on the segment from ``z0`` to ``z1`` (both ends included), shape ``(steps, *z0.shape)``."""
    t = torch.linspace(0, 1, check_int("steps", steps, minimum=2), device=z0.device, dtype=z0.dtype)
    t = t.view(-1, *([1] * z0.dim()))
    return (1 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    r"""Spherical interpolation (White 2016, "Sampling Generative Networks"):

    .. math:: \mathrm{slerp}(z_0, z_1; t) = \frac{\sin((1-t)\Omega)}{\sin\Omega} z_0 + \frac{\sin(t\Omega)}{\sin\Omega} z_1,
              \quad \cos\Omega = \frac{z_0 \cdot z_1}{\lVert z_0\rVert \lVert z_1\rVert}

    Gaussian latents concentrate near a sphere; the chord of :func:`lerp` passes through low-norm points the
    generator rarely saw. Falls back to ``lerp`` for (anti)parallel vectors.
    """
    t = torch.linspace(0, 1, check_int("steps", steps, minimum=2), device=z0.device, dtype=z0.dtype)
    a, b = z0.flatten(), z1.flatten()
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    if torch.sin(omega).abs() < 1e-6:
        return lerp(z0, z1, steps)
    w0, w1 = torch.sin((1 - t) * omega) / torch.sin(omega), torch.sin(t * omega) / torch.sin(omega)
    return (w0[:, None] * a + w1[:, None] * b).view(steps, *z0.shape)


def interpolate(z0: Tensor, z1: Tensor, steps: int = 8, method: str = "spherical") -> Tensor:
    """:func:`lerp` (``method="linear"``) or :func:`slerp` (``"spherical"``)."""
    check_choice("method", method, ("linear", "spherical"))
    return lerp(z0, z1, steps) if method == "linear" else slerp(z0, z1, steps)


def latent_arithmetic(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """``mean(a) - mean(b) + mean(c)`` over the first dimension: the DCGAN paper's vector arithmetic on codes
    averaged over exemplars (it averaged three per concept, since single codes were unstable)."""
    return a.mean(0) - b.mean(0) + c.mean(0)


def render_grid(images: Tensor, nrow: int = 8, padding: int = 2) -> Tensor:
    """Images in [-1, 1] ``(N, C, H, W)`` as one grid ``(C', H', W')`` in [0, 1] (torchvision's ``make_grid``;
    1-channel images become 3-channel)."""
    images = images.detach().float().cpu().clamp(-1, 1)
    return make_grid(images, nrow=nrow, padding=padding, normalize=True, value_range=(-1, 1))


def to_uint8_image(grid: Tensor) -> np.ndarray:
    """A ``(C, H, W)`` grid in [0, 1] as an ``(H, W, C)`` uint8 array, converted explicitly so loggers never guess
    the value range (``wandb.Image`` does)."""
    return (grid * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def row_labels(model: Any, rows: int, labels: Optional[Union[Tensor, int]] = None) -> Optional[Tensor]:
    """One class per row of a grid of a class-conditional ``model`` (``None`` for an unconditional one):
    ``labels`` (one int for every row, or one per row), else the model's fixed ``sample_labels`` (``0, 1, 2, ...``).
    Never ``sample(labels=None)``, which draws them from the training noise stream: the picture would change at
    every call and training would not be the same with and without it."""
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if not num_classes:
        if labels is not None:
            raise ValueError("labels=... needs a conditional model (built with num_classes > 0)")
        return None
    if labels is None:
        fixed = getattr(model, "sample_labels", None)
        labels = fixed[:rows].cpu() if fixed is not None and len(fixed) >= rows else torch.arange(rows) % num_classes
    labels = torch.as_tensor(labels).long().cpu()
    return labels.expand(rows) if labels.dim() == 0 else labels


def _sample(model: Any, z: Tensor, labels: Optional[Tensor]) -> Tensor:
    return model.sample(z=z) if labels is None else model.sample(z=z, labels=labels.to(z.device))


def interpolation_grid(
    model: Any, z0: Tensor, z1: Tensor, steps: int = 8, method: str = "spherical",
    labels: Optional[Union[Tensor, int]] = None,
) -> Tensor:
    """``model.sample`` along an interpolation from ``z0`` to ``z1``, one row per pair if ``z0`` is a batch; a
    conditional model's rows keep one class each (``labels``, default :func:`row_labels`: fixed)."""
    if z0.dim() == 1:
        z0, z1 = z0[None], z1[None]
    z = torch.cat([interpolate(a, b, steps, method) for a, b in zip(z0, z1)])
    rows = row_labels(model, len(z0), labels)
    return render_grid(_sample(model, z, None if rows is None else rows.repeat_interleave(steps)), nrow=steps)


def arithmetic_grid(model: Any, a: Tensor, b: Tensor, c: Tensor, label: Optional[int] = None) -> Tensor:
    """One row: ``G(mean a)``, ``G(mean b)``, ``G(mean c)`` and ``G(mean a - mean b + mean c)``; for a
    conditional model all of class ``label`` (default: its first fixed label, :func:`row_labels`)."""
    z = torch.stack([a.mean(0), b.mean(0), c.mean(0), latent_arithmetic(a, b, c)])
    row = row_labels(model, 1, label)
    return render_grid(_sample(model, z, None if row is None else row.expand(4)), nrow=4)


__all__ = [
    "lerp",
    "slerp",
    "interpolate",
    "latent_arithmetic",
    "render_grid",
    "to_uint8_image",
    "interpolation_grid",
    "arithmetic_grid",
    "row_labels",
]

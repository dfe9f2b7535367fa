"""Differentiable augmentation of every image the discriminator sees (DiffAugment: Zhao et al. 2020,
"Differentiable Augmentation for Data-Efficient GAN Training"), for small datasets such as the cat faces.

The same random transform family is applied to real and generated images, in D's and in G's update, and it is
differentiable, so G is trained through it; D never sees un-augmented images and cannot learn the augmentation as
a feature of the data. The operations follow the paper's reference implementation (images in [-1, 1]):

* ``color``: brightness ``x + U(-0.5, 0.5)``, saturation ``(x - mean_c) * U(0, 2) + mean_c``, contrast
  ``(x - mean) * U(0.5, 1.5) + mean``, one factor per image;
* ``translation``: shift by up to 1/8 of the size in each direction, zero fill;
* ``cutout``: zero one square of half the size at a random centre.

Example::

    >>> import torch
    >>> x = torch.rand(4, 3, 32, 32) * 2 - 1
    >>> diff_augment(x, "color,translation,cutout").shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from lit_gans.ada import AdaptiveAugment

POLICIES = ("color", "translation", "cutout")


def check_policy(policy: str) -> list[str]:
    """The operations of a comma-separated policy; an unknown one is an error that names it."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"diff_augment={policy!r}: unknown operation {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    return names


def _device(x: Tensor, generator: Optional[torch.Generator]) -> torch.device:
    """Where random numbers are drawn: the generator's device if one is given (then moved to ``x``'s)."""
    return generator.device if generator is not None else x.device


def _uniform(x: Tensor, low: float, high: float, generator: Optional[torch.Generator]) -> Tensor:
    u = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=_device(x, generator))
    return (u.to(x.device, x.dtype) * (high - low)) + low


def color(x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Random brightness, saturation and contrast, one factor of each per image."""
    x = x + _uniform(x, -0.5, 0.5, generator)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0, generator) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5, generator) + mean


def translate(x: Tensor, shift_h: Tensor, shift_w: Tensor) -> Tensor:
    """Shift image ``i`` by ``(shift_h[i], shift_w[i])`` pixels (integers; content moves down/right for positive
    shifts), filling with zeros."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1) - shift_h.view(n, 1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - shift_w.view(n, 1, 1)
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).flatten(1)  # (n, h*w) source pixel of each target
    gathered = x.flatten(2).gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1)).view_as(x)
    return gathered * inside


def translation(x: Tensor, ratio: float = 0.125, generator: Optional[torch.Generator] = None) -> Tensor:
    """Random shifts of up to ``ratio`` of the height and width."""
    max_h, max_w = int(x.shape[2] * ratio + 0.5), int(x.shape[3] * ratio + 0.5)
    device = _device(x, generator)
    shift_h = torch.randint(-max_h, max_h + 1, (x.shape[0],), generator=generator, device=device).to(x.device)
    shift_w = torch.randint(-max_w, max_w + 1, (x.shape[0],), generator=generator, device=device).to(x.device)
    return translate(x, shift_h, shift_w)


def cut_out(x: Tensor, center_h: Tensor, center_w: Tensor, size_h: int, size_w: int) -> Tensor:
    """Zero a ``size_h x size_w`` square centred at ``(center_h[i], center_w[i])`` in image ``i`` (clipped at
    the borders)."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1) - (center_h.view(n, 1, 1) - size_h // 2)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - (center_w.view(n, 1, 1) - size_w // 2)
    hole = (rows >= 0) & (rows < size_h) & (cols >= 0) & (cols < size_w)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def cutout(x: Tensor, ratio: float = 0.5, generator: Optional[torch.Generator] = None) -> Tensor:
    """One random square of ``ratio`` of the size zeroed per image."""
    size_h, size_w = int(x.shape[2] * ratio + 0.5), int(x.shape[3] * ratio + 0.5)
    device = _device(x, generator)
    center_h = torch.randint(0, x.shape[2] + (1 - size_h % 2), (x.shape[0],), generator=generator, device=device)
    center_w = torch.randint(0, x.shape[3] + (1 - size_w % 2), (x.shape[0],), generator=generator, device=device)
    return cut_out(x, center_h.to(x.device), center_w.to(x.device), size_h, size_w)


OPERATIONS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: Tensor, policy: str, generator: Optional[torch.Generator] = None) -> Tensor:
    """Apply the operations of ``policy`` (comma-separated, in order) to a batch ``(N, C, H, W)``."""
    return _apply(x, check_policy(policy), generator)


def _apply(x: Tensor, names: list[str], generator: Optional[torch.Generator] = None) -> Tensor:
    for name in names:
        x = OPERATIONS[name](x, generator=generator)
    return x


class DiffAugmentHook:
    """A forward pre-hook that augments a module's input while it is in training mode (a picklable object, so a
    model that carries it still works with ``ddp_spawn``)."""

    def __init__(self, policy: str) -> None:
        self.operations = check_policy(policy)  # parsed once, not at every D forward

    def __call__(self, module: nn.Module, args: tuple) -> Optional[tuple]:
        if not module.training:
            return None
        return (_apply(args[0], self.operations), *args[1:])


__all__ = ["POLICIES", "AdaptiveAugment", "DiffAugmentHook", "color", "cut_out", "cutout", "diff_augment", "translate", "translation"]

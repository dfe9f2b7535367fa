"""Least-squares GAN (Mao et al. 2017)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from lit_gans.models.dcgan import DCGAN
from lit_gans.objectives import LeastSquaresLoss


class LSGAN(DCGAN):
    """DCGAN networks with the least-squares objective (Mao et al. 2017, eq. 2):

    ``L_D = 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2]``, ``L_G = 1/2 E[(D(G(z)) - c)^2]``; D has a linear
    output. Presets (:attr:`PRESETS`): ``(0, 1, 1)`` (default, the 0-1 coding), ``(-1, 1, 0)`` (the paper's
    Pearson chi-square setting) and ``(0, 1, 0.5)`` (the references' variant with 0.5 as G's target). Adam
    lr 2e-4, beta1 0.5 as in the paper.

    Args:
        a: D's target on fakes.
        b: D's target on real images.
        c: G's target for D on fakes.
        **kwargs: any :class:`DCGAN` / :class:`~lit_gans.GAN` argument.

    Example::

        >>> from lit_gans import LSGAN
        >>> LSGAN(*LSGAN.PRESETS["pearson"]).objective
        LeastSquaresLoss(a=-1.0, b=1.0, c=0.0)
    """

    objective_is_argument = False  # built from a, b and c, which the checkpoint stores
    PRESETS: ClassVar[dict[str, tuple[float, float, float]]] = {
        "binary": (0.0, 1.0, 1.0),
        "pearson": (-1.0, 1.0, 0.0),
        "reference": (0.0, 1.0, 0.5),
    }

    def __init__(
        self, a: float = 0.0, b: float = 1.0, c: float = 1.0, image_shape: Sequence[int] = (1, 28, 28), **kwargs: Any
    ) -> None:
        if kwargs.get("objective") is not None:
            raise ValueError("LSGAN's objective is set by a, b and c; use DCGAN(objective=...) for another one")
        kwargs.pop("objective", None)
        super().__init__(image_shape=image_shape, objective=LeastSquaresLoss(a, b, c), **kwargs)
        self.a, self.b, self.c = float(a), float(b), float(c)


__all__ = ["LSGAN"]

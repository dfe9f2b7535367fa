"""Differentiable augmentation of every image the discriminator sees, for small datasets such as the cat faces:
DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training") with a fixed policy,
and ADA, whose probability adapts to D's overfitting. A model takes either as ``augment=``.

DiffAugment (:class:`DiffAugment`, ``diff_augment="..."``): the same random transform family is applied to real and
generated images, in D's and in G's update, and it is differentiable, so G is trained through it; D never sees un-
augmented images and cannot learn the augmentation as a feature of the data. The operations follow the paper's
reference implementation (images in [-1, 1]):

* ``color``: brightness ``x + U(-0.5, 0.5)``, saturation ``(x - mean_c) * U(0, 2) + mean_c``, contrast
  ``(x - mean) * U(0.5, 1.5) + mean``, one factor per image;
* ``translation``: shift by up to 1/8 of the size in each direction, zero fill;
* ``cutout``: zero one square of half the size at a random centre.

**Adaptive discriminator augmentation** (:class:`AdaptiveAugment`: Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data"): the pipeline of NVlabs/stylegan2-ada-pytorch ``training/augment.py`` (its
``bgc`` set) and the adjustment of its ``training/training_loop.py``. Every image D sees, real or generated, in D's
and G's updates, goes through the same random pipeline; each operation is applied to each image with probability
``p``:

* geometric (composed into one inverse affine matrix per image, executed as one differentiable resampling: reflect
  padding, 2x up-sampling with the ``sym6`` wavelet low-pass filter, bilinear ``grid_sample``, filtered 2x
  down-sampling): ``xflip``, ``rotate90`` (multiples of 90 degrees), ``xint`` (integer translation up to 1/8 of the
  size), ``scale`` (isotropic, log2-normal with std 0.2), ``rotate`` (uniform angle, as a pre- and a post-rotation
  each with probability ``1 - sqrt(1 - p)``), ``aniso`` (anisotropic, log2 std 0.2), ``xfrac`` (fractional
  translation, std 1/8 of the size);
* colour (one 4x4 matrix per image on the RGB values, a grayscale image uses the mean of its rows):
  ``brightness`` (additive, std 0.2), ``contrast`` (log2 std 0.5), ``lumaflip`` (Householder reflection about the
  luma axis), ``hue`` (rotation about it), ``saturation`` (log2 std 1); hue and saturation only change RGB images.

``p`` adapts: D's sign on the real images it scores, ``r_t = E[sign(D(x_real))]``, is accumulated over
``interval`` D steps and summed over DDP ranks; then ``p += sign(r_t - target) * N / speed_images`` where ``N`` is
the number of real images scored in the interval (all ranks), so that p can move from 0 to 1 in ``speed_images``
images; p is clamped to [0, 1]. ``r_t`` near 1 means D is confident on every real image, the sign of overfitting.

The heuristic assumes a D like the paper's (no BatchNorm), whose confidence on real images stays near the target
until it memorizes them. A DCGAN D with BatchNorm is confident on every real digit early in training, seen or unseen,
so p rises when D is not overfitting and costs convergence. Measured on 5,000 MNIST digits: with BatchNorm in D, p
reaches 0.13 and ADA ends 40% behind plain training after 16 minutes. With ``discriminator_norm="none"``, p stays
below 0.01 and ADA is level with plain training (README, Small data). Give ADA a D without BatchNorm.

Example::

    >>> import torch
    >>> x = torch.rand(4, 3, 32, 32) * 2 - 1
    >>> diff_augment(x, "color,translation,cutout").shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gans.validation import build_from_config, check_float, check_int


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


class Augment(nn.Module):
    """What augments every image D sees in training, real or generated, in D's and G's updates (the engine calls
    it on D's input while D is in training mode): :class:`DiffAugment` or :class:`AdaptiveAugment`. A model stores
    it in its checkpoint as :meth:`to_config`'s plain dictionary, and its state as buffers."""

    def forward(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """``images`` augmented, the random numbers drawn from ``generator`` (``None``: the global RNG)."""
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        args = {k: list(v) if isinstance(v, tuple) else v for k, v in self.init_args().items()}
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": args}

    def init_args(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def from_config(config: Union["Augment", str, dict[str, Any]]) -> "Augment":
        """An augmentation from :meth:`to_config`'s dictionary, a DiffAugment policy string, or itself."""
        if isinstance(config, str):
            return DiffAugment(config)
        return build_from_config(config, Augment, "augment")


class DiffAugment(Augment):
    """DiffAugment with a fixed ``policy`` (comma-separated operations of :data:`POLICIES`, applied in order to
    every image; module docstring). ``diff_augment="color,translation,cutout"`` is the shorthand.

    Example::

        >>> DiffAugment("translation,cutout")(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, policy: str = "color,translation,cutout") -> None:
        super().__init__()
        self.operations = check_policy(policy)  # parsed once, not at every D forward
        if not self.operations:
            raise ValueError("DiffAugment(policy=''): name at least one operation, or leave augment unset")
        self.policy = ",".join(self.operations)

    def init_args(self) -> dict[str, Any]:
        return {"policy": self.policy}

    def forward(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return _apply(images, self.operations, generator)


class AugmentHook:
    """The forward pre-hook that puts D's training inputs through an :class:`Augment`, drawing its random numbers
    from ``random_numbers()`` (the model's per-rank noise generator, which checkpoints keep: a resumed run augments
    exactly as an uninterrupted one, and each DDP rank differently). A picklable object, so that a model that
    carries it still works with ``ddp_spawn``."""

    def __init__(self, augment: Augment, random_numbers: Optional[Any] = None) -> None:
        self.augment, self.random_numbers = augment, random_numbers

    def __call__(self, module: nn.Module, args: tuple) -> Optional[tuple]:
        if not module.training:
            return None
        generator = self.random_numbers() if self.random_numbers is not None else None
        return (self.augment(args[0], generator=generator), *args[1:])


# ---------------------------------------------------------------------------------------------- ADA
GEOMETRIC_OPS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR_OPS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
#: ADA's ``bgc`` pipeline, the paper's default
DEFAULT_OPS = GEOMETRIC_OPS + COLOR_OPS

# the low-pass filter of the geometric resampling (Daubechies symlet 6), as in the reference
_SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633, 0.4910559419267466,
    0.787641141030194, 0.3379294217276218, -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
    0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip


def check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    ops = tuple(ops)
    unknown = [op for op in ops if op not in DEFAULT_OPS]
    if unknown:
        raise ValueError(f"ops: unknown operation {unknown[0]!r}; choose from {', '.join(DEFAULT_OPS)}")
    return ops


# ---------------------------------------------------------------------------------------------- matrices
def _matrix(rows: list[list[Any]], like: Tensor) -> Tensor:
    """A batch of matrices ``(N, R, C)`` from rows whose entries are scalars or ``(N,)`` tensors."""
    constants: dict[float, Tensor] = {}  # one tensor per distinct scalar: fewer small ops

    def entry(e: Any) -> Tensor:
        if isinstance(e, Tensor):
            return e
        if float(e) not in constants:
            constants[float(e)] = torch.full_like(like, float(e))
        return constants[float(e)]

    entries = [entry(e) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(like.shape[0], len(rows), len(rows[0]))


def _inverse_geometric(
    flip: Tensor, quarter_turns: Tensor, shift: Tensor, scale: Tensor, theta_pre: Tensor, aniso: Tensor,
    theta_post: Tensor, frac: Tensor,
) -> Tensor:
    """Output pixel -> input pixel of the chain xflip, rotate90, xint, scale, rotate, aniso, rotate, xfrac, as
    ``(N, 3, 3)`` matrices: the reference's product ``F R(k pi/2) T(-xint) S(1/s) R(a) A(1/r, r) R(b) T(-xfrac)``
    multiplied out. Its linear part is ``F R(k pi/2 + a) A R(b) / s`` (the translation between changes only
    the offset), its offset ``F R(k pi/2) (-xint) + L (-xfrac)``. About fifty element-wise operations instead of eight
    stacked matrices and seven batched products: at ADA's small p the pipeline's cost is its count of small ops.
    ``shift`` and ``frac`` are in pixels, ``(N, 2)`` as (x, y)."""
    f = 1 - 2 * flip
    phi = quarter_turns * (math.pi / 2)
    alpha = phi + theta_pre
    ca, sa, cb, sb = torch.cos(alpha), torch.sin(alpha), torch.cos(theta_post), torch.sin(theta_post)
    cp, sp = torch.cos(phi), torch.sin(phi)
    x, y = 1 / (aniso * scale), aniso / scale  # A(1/r, r) / s
    l00 = (ca * cb * x - sa * sb * y) * f
    l01 = -(ca * sb * x + sa * cb * y) * f
    l10 = sa * cb * x + ca * sb * y
    l11 = ca * cb * y - sa * sb * x
    tx = (sp * shift[:, 1] - cp * shift[:, 0]) * f - l00 * frac[:, 0] - l01 * frac[:, 1]
    ty = -sp * shift[:, 0] - cp * shift[:, 1] - l10 * frac[:, 0] - l11 * frac[:, 1]
    zero = torch.zeros_like(f)
    return torch.stack([l00, l01, tx, l10, l11, ty, zero, zero, zero + 1], dim=-1).view(-1, 3, 3)


def _translate3d(t: Tensor) -> Tensor:
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def _scale3d(s: Tensor) -> Tensor:
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def _rotate3d(v: Tensor, theta: Tensor) -> Tensor:
    """Rotation by ``theta`` about the unit axis ``v`` (Rodrigues), homogeneous 4x4."""
    vx, vy, vz = (float(c) for c in v[:3])
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix(
        [
            [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
            [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
            [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
            [0, 0, 0, 1],
        ],
        theta,
    )


# ---------------------------------------------------------------------------------------------- filtering
@functools.lru_cache(maxsize=1024)
def _filter_operator(length: int, up: bool) -> Tensor:
    """The matrix of the sym6 filter's 2x resampling along one axis of ``length`` samples: ``(out, length)``,
    float64, so that an image ``x`` resamples as ``rows @ x @ cols.t()``.

    Separable 2x up-sampling (zero insertion, then the sym6 filter with gain 2) or filtered 2x down-sampling (the
    filter, then every second sample), each keeping the signal centred, as the reference's ``upsample2d`` and
    ``downsample2d(flip_filter=True)``. As a matrix, one axis of a batch is one matmul, whose backward is also
    one: on a CPU far cheaper than a single-channel convolution's backward."""
    taps = torch.tensor(_SYM6, dtype=torch.float64) / sum(_SYM6)
    k = taps.numel()
    x = torch.eye(length, dtype=torch.float64).unsqueeze(1)  # each basis signal as a batch entry
    if up:
        x = F.pad(x.unsqueeze(-1), [0, 1]).reshape(length, 1, 2 * length)
        weight, pad = taps.flip(0) * 2, [(k + 1) // 2, (k - 2) // 2]
    else:
        weight, pad = taps, [(k - 1) // 2, (k - 2) // 2]
    x = F.conv1d(F.pad(x, pad), weight.view(1, 1, k)).squeeze(1)
    return (x if up else x[:, ::2]).t().contiguous()


@functools.lru_cache(maxsize=1024)
def _padded_upsample_operator(length: int, before: int, after: int) -> Tensor:
    """Reflect padding by ``before`` and ``after`` samples, then :func:`_filter_operator`'s 2x up-sampling, as one
    ``(2 * (length + before + after), length)`` matrix: the padding is a selection of samples, so folding it in
    multiplies the small image instead of the padded one (a quarter of the work when the padding is as wide as the
    image, as rotations need)."""
    source = torch.arange(-before, length + after).abs()
    source = torch.where(source >= length, 2 * (length - 1) - source, source)  # F.pad's "reflect"
    return _filter_operator(length + before + after, up=True) @ torch.eye(length, dtype=torch.float64)[source]


def _affine_grid(theta: Tensor, h: int, w: int) -> Tensor:
    """``F.affine_grid(theta, [N, C, h, w], align_corners=False)`` as broadcast products. ``affine_grid`` multiplies
    an ``(h * w, 3)`` grid by each matrix in a batched matmul with an inner size of 3, which on a CPU costs ten times
    as much (1.0 against 0.1 ms for 40 images of 68 x 68, a 2x up-sampled 28-pixel digit): at ADA's small p, 40% of
    the pipeline's time."""
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1  # pixel centres in [-1, 1]
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    t = theta[:, :, :, None, None]
    return torch.stack([t[:, i, 0] * xs + t[:, i, 1] * ys[:, None] + t[:, i, 2] for i in (0, 1)], dim=-1)


@functools.lru_cache(maxsize=4096)
def _operator(
    length: int, a: int, b: int, device: torch.device, dtype: torch.dtype, up: bool = True
) -> Tensor:
    """The resampling matrices in the images' device and dtype, cached: ``up``, :func:`_padded_upsample_operator`
    ``(length, before=a, after=b)``; else the 2x down-sampling of ``length`` samples, only the ``b`` rows from ``a``
    that the crop keeps."""
    matrix = _padded_upsample_operator(length, a, b) if up else _filter_operator(length, up=False)[a : a + b]
    return matrix.to(device, dtype)


class AdaptiveAugment(Augment):
    """ADA's augmentation pipeline with its adaptive probability ``p`` (module docstring).

    Args:
        target: the value of ``r_t`` that p steers towards (0.6, the paper's).
        interval: D steps between two adjustments of p (4).
        speed_images: real images over which p can move by 1 (500,000: the reference's ``ada_kimg=500``).
        p: the starting probability.
        adaptive: ``False`` keeps p fixed at ``p``.
        ops: the operations, any of :data:`DEFAULT_OPS` (all by default: ADA's ``bgc``). Leave out ``xflip``
            (and ``rotate90``) for data whose orientation carries meaning, such as text.

    ``p``, the accumulated ``r_t`` sums and the last ``r_t`` are buffers: saved in checkpoints and, updated from
    values summed over the ranks, equal on every DDP rank.

    Example::

        >>> import torch
        >>> ada = AdaptiveAugment(p=1.0, ops=("xflip", "brightness"))
        >>> ada(torch.rand(4, 3, 16, 16) * 2 - 1).shape
        torch.Size([4, 3, 16, 16])
    """

    def __init__(
        self,
        target: float = 0.6,
        interval: int = 4,
        speed_images: int = 500_000,
        p: float = 0.0,
        adaptive: bool = True,
        ops: Sequence[str] = DEFAULT_OPS,
    ) -> None:
        super().__init__()
        self.target = check_float("target", target, minimum=-1.0, inclusive=True)
        self.interval = check_int("interval", interval)
        self.speed_images = check_int("speed_images", speed_images)
        self.adaptive = bool(adaptive)
        self.ops = check_ops(ops)
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p={p}: the augmentation probability must be in [0, 1]")
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("rt", torch.tensor(0.0))  # the last r_t
        self.register_buffer("sign_sum", torch.zeros((), dtype=torch.float64))  # this interval's, this rank
        self.register_buffer("sign_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # D steps since the last adjustment
        # host copies, so that no call reads the device: set here, after each adjustment and after a load
        self._p_value, self._steps_value = float(p), 0
        self.register_load_state_dict_post_hook(_sync_host_copy_after_load)

    def _sync_host_copy(self) -> None:
        self._p_value, self._steps_value = float(self.p), int(self.steps)

    def init_args(self) -> dict[str, Any]:
        return {
            "target": self.target, "interval": self.interval, "speed_images": self.speed_images,
            "p": self._p_value, "adaptive": self.adaptive, "ops": list(self.ops),
        }  # fmt: skip

    # ------------------------------------------------------------------ the pipeline
    def forward(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Augment ``(N, C, H, W)`` images (C = 1 or 3); with p = 0 they pass through untouched."""
        if self._p_value == 0.0:
            return images
        if images.shape[1] not in (1, 3):
            raise ValueError(f"AdaptiveAugment takes 1- or 3-channel images, got {images.shape[1]} channels")
        dtype = images.dtype
        with torch.autocast(images.device.type, enabled=False):  # the reference's float32 resampling
            images = self._geometric(images.float(), generator)
            return self._color(images, generator).to(dtype)

    def _draw(self, images: Tensor, shape: tuple[int, ...], generator: Optional[torch.Generator], kind: str) -> Tensor:
        device = generator.device if generator is not None else images.device
        draw = torch.rand if kind == "uniform" else torch.randn
        return draw(shape, generator=generator, device=device).to(images.device)

    def _geometric(self, images: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        n, _, h, w = images.shape
        p, ops = self._p_value, self.ops
        if not any(op in ops for op in GEOMETRIC_OPS):
            return images
        p_rot = 1 - math.sqrt(max(0.0, 1 - p))  # P(pre- or post-rotation) = p
        # one draw for every operation and image: at ADA's small p the fixed cost of many tiny ops dominates
        stages = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "rotate", "xfrac")
        probability = [(p_rot if op == "rotate" else p) if op in ops else 0.0 for op in stages]
        chosen = self._draw(images, (n, 8), generator, "uniform") < torch.tensor(probability, device=images.device)
        u = self._draw(images, (n, 6), generator, "uniform")
        z = self._draw(images, (n, 4), generator, "normal")
        if not chosen.any():  # common at ADA's small p: nothing to build
            return images
        flip = torch.where(chosen[:, 0], torch.floor(u[:, 0] * 2), 0.0)
        quarter_turns = torch.where(chosen[:, 1], torch.floor(u[:, 1] * 4), 0.0)
        shift = torch.where(chosen[:, 2:3], (u[:, 2:4] * 2 - 1) * 0.125, 0.0)
        scale = torch.where(chosen[:, 3], torch.exp2(z[:, 0] * 0.2), 1.0)
        theta_pre = torch.where(chosen[:, 4], (u[:, 4] * 2 - 1) * math.pi, 0.0)
        aniso = torch.where(chosen[:, 5], torch.exp2(z[:, 1] * 0.2), 1.0)
        theta_post = torch.where(chosen[:, 6], (u[:, 5] * 2 - 1) * math.pi, 0.0)
        frac = torch.where(chosen[:, 7:8], z[:, 2:4] * 0.125, 0.0)
        size = torch.tensor([w, h], device=images.device)
        g_inv = _inverse_geometric(
            flip, quarter_turns, torch.round(shift * size), scale, theta_pre, aniso, theta_post, frac * size
        )
        # only the images some operation chose are resampled: at small p (ADA's start) the pipeline costs little
        chosen = (g_inv - torch.eye(3, device=images.device)).abs().amax(dim=(1, 2)) > 0
        index = chosen.nonzero().flatten()
        if len(index) == n:
            return self._resample(images, g_inv)
        if len(index) == 0:
            return images
        out = images.clone()
        out[index] = self._resample(images[index], g_inv[index]).to(out.dtype)
        return out

    def _resample(self, images: Tensor, g_inv: Tensor) -> Tensor:
        """Apply the inverse transforms ``g_inv`` (pixel coordinates centred on the image) in one resampling."""
        n, c, h, w = images.shape
        pad = len(_SYM6) // 4
        # reflect-pad far enough that every sampled position lies inside the padded image
        cx, cy = (w - 1) / 2, (h - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=images.device)
        reach = (g_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # (xy, n * 4)
        margin = torch.cat([-reach, reach]).max(dim=1).values
        margin = margin + torch.tensor([pad * 2 - cx, pad * 2 - cy] * 2, device=images.device)
        limit = torch.tensor([w - 1, h - 1] * 2, device=images.device, dtype=margin.dtype)
        mx0, my0, mx1, my1 = (int(m) for m in margin.clamp(min=0).minimum(limit).ceil().tolist())
        rows = _operator(h, my0, my1, images.device, images.dtype)
        cols = _operator(w, mx0, mx1, images.device, images.dtype)
        images = rows @ images @ cols.t()  # reflect-padded, 2x up-sampled
        up_h, up_w = images.shape[2:]
        out_h, out_w = (h + pad * 2) * 2, (w + pad * 2) * 2
        # the same per-axis maps for every image, x -> a x + b: grid_sample's normalized output coordinates onto
        # the 2x grid (pixel centres at half-integers) and halved; then, after g_inv, shifted into the padded image,
        # doubled onto its 2x grid and normalized as grid_sample's input
        before = torch.tensor([
            [4 / up_w, 0.0, 2 / up_w * (mx0 - mx1 - 0.5)], [0.0, 4 / up_h, 2 / up_h * (my0 - my1 - 0.5)], [0.0, 0.0, 1.0]
        ], device=images.device)  # fmt: skip
        after = torch.tensor([[out_w / 4, 0.0, 0.25], [0.0, out_h / 4, 0.25], [0.0, 0.0, 1.0]], device=images.device)
        g_inv = before @ g_inv @ after
        grid = _affine_grid(g_inv[:, :2, :], out_h, out_w)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # filtered 2x down-sampling of only the rows and columns that survive the crop
        rows = _operator(out_h, pad, h, images.device, images.dtype, up=False)
        cols = _operator(out_w, pad, w, images.device, images.dtype, up=False)
        return rows @ images @ cols.t()

    def _color(self, images: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        n, c, h, w = images.shape
        p = self._p_value

        def draw(kind: str) -> Tensor:
            return self._draw(images, (n,), generator, kind)

        # each operation's value, its identity, and which images it applies to, drawn before anything is built:
        # at ADA's small p often no image is chosen
        values = {
            "brightness": lambda: (draw("normal") * 0.2, 0.0),
            "contrast": lambda: (torch.exp2(draw("normal") * 0.5), 1.0),
            "lumaflip": lambda: (torch.floor(draw("uniform") * 2), 0.0),
            "hue": lambda: ((draw("uniform") * 2 - 1) * math.pi, 0.0),
            "saturation": lambda: (torch.exp2(draw("normal") * 1.0), 1.0),
        }
        drawn = {}
        for op, value in values.items():
            if op in self.ops and (c > 1 or op not in ("hue", "saturation")):
                drawn[op] = (*value(), draw("uniform") < p)
        if not drawn or not torch.stack([chosen for *_, chosen in drawn.values()]).any():
            return images
        eye = torch.eye(4, device=images.device)
        luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=images.device) / math.sqrt(3)
        luma_outer = torch.outer(luma, luma)
        m = eye.expand(n, 4, 4)
        for op, (value, identity, chosen) in drawn.items():
            v = torch.where(chosen, value, torch.full_like(value, identity))
            if op == "brightness":
                m = _translate3d(v) @ m
            elif op == "contrast":
                m = _scale3d(v) @ m
            elif op == "lumaflip":
                m = (eye - 2 * luma_outer * v.view(n, 1, 1)) @ m
            elif op == "hue":
                m = _rotate3d(luma, v) @ m
            else:
                m = (luma_outer + (eye - luma_outer) * v.view(n, 1, 1)) @ m
        flat = images.reshape(n, c, h * w)
        if c == 3:
            flat = m[:, :3, :3] @ flat + m[:, :3, 3:]
        else:  # grayscale: the mean of the RGB rows acting on (x, x, x)
            rows = m[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * rows[:, :, :3].sum(dim=2, keepdim=True) + rows[:, :, 3:]
        return flat.reshape(n, c, h, w)

    # ------------------------------------------------------------------ adapting p
    def accumulate(self, real_output: Tensor) -> None:
        """Add D's raw outputs on this step's real images to the interval's ``r_t`` (on the device; no sync)."""
        if self.adaptive:
            out = real_output.detach().flatten()
            self.sign_sum.add_(torch.sign(out).sum().to(self.sign_sum.dtype))
            self.sign_count.add_(out.numel())

    def after_discriminator_step(self, reduce: Optional[Any] = None) -> bool:
        """Count one D step; every ``interval`` steps, move p from ``r_t`` summed over the ranks (``reduce`` sums a
        tensor across processes; ``None``: one process). Returns whether p was adjusted."""
        if not self.adaptive:
            return False
        self._steps_value += 1
        self.steps.fill_(self._steps_value)
        if self._steps_value < self.interval:
            return False
        totals = torch.stack([self.sign_sum, self.sign_count])
        if reduce is not None:
            totals = reduce(totals)
        sign_sum, count = (float(v) for v in totals)
        self._steps_value = 0
        self.steps.zero_()
        self.sign_sum.zero_()
        self.sign_count.zero_()
        if count == 0:
            return False
        rt = sign_sum / count
        adjust = math.copysign(1.0, rt - self.target) * count / self.speed_images if rt != self.target else 0.0
        self.rt.fill_(rt)
        self.p.fill_(min(max(self._p_value + adjust, 0.0), 1.0))
        self._sync_host_copy()
        return True


def _sync_host_copy_after_load(module: AdaptiveAugment, incompatible_keys: Any) -> None:
    module._sync_host_copy()  # a module-level function, so that models pickle (ddp_spawn)


__all__ = [
    "COLOR_OPS", "DEFAULT_OPS", "GEOMETRIC_OPS", "POLICIES", "AdaptiveAugment", "Augment", "AugmentHook", "DiffAugment",
    "color", "cut_out", "cutout", "diff_augment", "translate", "translation",
]

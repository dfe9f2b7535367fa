"""ADA's pipeline (stylegan2-ada-pytorch training/augment.py) and its adaptive probability: each operation against
what it must do, gradients through every one, untouched images at p = 0, and p's rule and state."""

from __future__ import annotations

import math

import pytest
import torch

from lit_gans.augment import COLOR_OPS, DEFAULT_OPS, GEOMETRIC_OPS, AdaptiveAugment


def images(channels=3, n=8, size=16, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_p_zero_passes_the_images_through_untouched():
    x = images()
    assert AdaptiveAugment()(x) is x


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", DEFAULT_OPS)
def test_every_operation_at_p_one_keeps_gradients_flowing(op, channels):
    x = images(channels).requires_grad_(True)
    y = AdaptiveAugment(p=1.0, ops=(op,))(x, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape and torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all()
    if channels == 3 or op not in ("hue", "saturation"):
        assert x.grad.abs().sum() > 0 and not torch.equal(y, x)


def test_hue_and_saturation_leave_grayscale_images_alone():
    x = images(1)
    assert torch.equal(AdaptiveAugment(p=1.0, ops=("hue", "saturation"))(x), x)


def smooth_images(n=32, size=16, seed=0):
    """Off-centre Gaussian blobs: low-frequency images, which the pipeline's band-limited resampling keeps."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, generator=g) * size * 0.25 + size * 0.1  # far from the centre: no symmetry
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    d2 = (xs - centres[:, 0, None, None]) ** 2 + (ys - centres[:, 1, None, None]) ** 2
    return (torch.exp(-d2 / (2 * (size / 6) ** 2)) * 2 - 1).unsqueeze(1).expand(n, 3, size, size).contiguous()


def test_xflip_and_rotate90_move_the_pixels_as_asked():
    x = smooth_images()
    flipped = AdaptiveAugment(p=1.0, ops=("xflip",))(x, generator=torch.Generator().manual_seed(0))
    # within the sub-pixel shift that the asymmetric sym6 filter gives a mirrored image (the reference's too)
    choices = [[torch.allclose(y, c, atol=0.08) for c in (x[i], x[i].flip(-1))] for i, y in enumerate(flipped)]
    assert all(sum(c) == 1 for c in choices) and {c.index(True) for c in choices} == {0, 1}
    rotated = AdaptiveAugment(p=1.0, ops=("rotate90",))(x, generator=torch.Generator().manual_seed(0))
    ks = [[k for k in range(4) if torch.allclose(y, torch.rot90(x[i], k, (1, 2)), atol=0.08)] for i, y in enumerate(rotated)]
    assert all(len(k) == 1 for k in ks) and {k[0] for k in ks} == {0, 1, 2, 3}
    # integer translation: exactly a shift by whole pixels (the borders are reflected)
    moved = AdaptiveAugment(p=1.0, ops=("xint",))(x, generator=torch.Generator().manual_seed(0))
    shifts = [
        [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
         if torch.allclose(y[:, 3:-3, 3:-3], torch.roll(x[i], (dy, dx), (1, 2))[:, 3:-3, 3:-3], atol=1e-5)]
        for i, y in enumerate(moved)
    ]  # fmt: skip
    assert all(len(s) == 1 for s in shifts) and len({s[0] for s in shifts}) > 5


def test_brightness_adds_one_offset_per_image_and_contrast_scales():
    x = images()
    y = AdaptiveAugment(p=1.0, ops=("brightness",))(x, generator=torch.Generator().manual_seed(0))
    offsets = (y - x).flatten(1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-5)
    assert 0.05 < offsets[:, 0].std() < 0.5  # N(0, 0.2)
    y = AdaptiveAugment(p=1.0, ops=("contrast",))(x, generator=torch.Generator().manual_seed(0))
    ratios = (y / x).flatten(1)
    assert torch.allclose(ratios, ratios[:, :1].expand_as(ratios), rtol=1e-4)


def test_probability_p_applies_each_operation_to_that_share_of_images():
    x = images(n=2000, size=8)
    y = AdaptiveAugment(p=0.3, ops=("brightness",))(x, generator=torch.Generator().manual_seed(0))
    changed = ((y - x).abs().flatten(1).max(1).values > 0).float().mean()
    assert abs(changed - 0.3) < 0.04


def test_p_moves_towards_the_target_by_the_references_rule():
    ada = AdaptiveAugment(target=0.6, interval=4, speed_images=1000)
    confident = torch.ones(16)  # every real image scored positive: r_t = 1 > 0.6, D overfits
    for step in range(4):
        ada.accumulate(confident)
        adjusted = ada.after_discriminator_step()
        assert adjusted == (step == 3)
    assert ada.p.item() == pytest.approx(64 / 1000) and ada.rt.item() == 1.0  # sign(1 - 0.6) * 4 * 16 / 1000
    unsure = torch.tensor([1.0, -1.0] * 8)  # r_t = 0 < 0.6
    for _ in range(8):
        ada.accumulate(unsure)
        ada.after_discriminator_step()
    assert ada.p.item() == 0.0 and ada.rt.item() == 0.0  # down by 2 * 64 / 1000, clamped at 0
    fixed = AdaptiveAugment(p=0.2, adaptive=False)
    for _ in range(8):
        fixed.accumulate(confident)
        fixed.after_discriminator_step()
    assert fixed.p.item() == pytest.approx(0.2)


def test_the_adjustment_uses_the_totals_over_ranks():
    ada = AdaptiveAugment(interval=1, speed_images=100)
    ada.accumulate(torch.ones(4))
    # another rank scored 12 images, all negative: r_t = (4 - 12) / 16 < 0.6 although this rank's is 1
    ada.after_discriminator_step(reduce=lambda t: t + torch.tensor([-12.0, 12.0], dtype=t.dtype))
    assert ada.rt.item() == pytest.approx(-0.5) and ada.p.item() == 0.0


def test_state_survives_a_checkpoint_round_trip():
    ada = AdaptiveAugment(interval=4, speed_images=100)
    for _ in range(5):
        ada.accumulate(torch.ones(8))
        ada.after_discriminator_step()
    restored = AdaptiveAugment(interval=4, speed_images=100)
    restored.load_state_dict(ada.state_dict())
    assert restored.p.item() == ada.p.item() > 0 and restored._p_value == ada._p_value
    assert restored.steps.item() == 1 and restored.sign_sum.item() == 8
    x = images()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(restored(x, generator=g()), ada(x, generator=g()))


def test_unknown_operations_and_bad_probabilities_are_refused():
    with pytest.raises(ValueError, match="unknown operation 'mirror'"):
        AdaptiveAugment(ops=("xflip", "mirror"))
    with pytest.raises(ValueError, match="p=1.5"):
        AdaptiveAugment(p=1.5)
    assert set(GEOMETRIC_OPS) | set(COLOR_OPS) == set(DEFAULT_OPS) and not math.isnan(0.0)


def test_at_small_p_the_images_no_operation_chose_pass_through_bitwise():
    x = images(n=64)
    ada = AdaptiveAugment(p=0.1, ops=GEOMETRIC_OPS)
    y = ada(x, generator=torch.Generator().manual_seed(0))
    same = [torch.equal(a, b) for a, b in zip(x, y)]
    assert 0 < sum(not s for s in same) < 64  # some were resampled, the others untouched


def separable_reference(x, up):
    """upsample2d: zero insertion, then the flipped sym6 taps x 2 with padding (k + 1) // 2, (k - 2) // 2;
    downsample2d(flip_filter=True): the taps with padding (k - 1) // 2, (k - 2) // 2, then every second sample."""
    from lit_gans.augment import _SYM6

    taps = torch.tensor(_SYM6, dtype=torch.float64) / sum(_SYM6)
    k = len(_SYM6)
    n, c, h, w = x.shape
    y = x.double()
    if up:
        y = torch.zeros(n, c, 2 * h, 2 * w, dtype=torch.float64)
        y[:, :, ::2, ::2] = x.double()
        weight, pad = taps.flip(0) * 2, [(k + 1) // 2, (k - 2) // 2]
    else:
        weight, pad = taps, [(k - 1) // 2, (k - 2) // 2]
    y = torch.nn.functional.pad(y, pad * 2).reshape(n * c, 1, *[s + sum(pad) for s in y.shape[2:]])
    y = torch.nn.functional.conv2d(torch.nn.functional.conv2d(y, weight.view(1, 1, 1, k)), weight.view(1, 1, k, 1))
    y = y.reshape(n, c, *y.shape[2:])
    return y if up else y[:, :, ::2, ::2]


@pytest.mark.parametrize("up", [True, False])
def test_the_resampling_filter_equals_the_references_separable_convolution(up):
    from lit_gans.augment import _filter_operator

    x = images(channels=3, n=2, size=10)[:, :, :, :7].double()  # a non-square image
    y = _filter_operator(10, up) @ x @ _filter_operator(7, up).t()
    assert torch.allclose(y, separable_reference(x, up), atol=1e-12)


@pytest.mark.parametrize("margins", [(0, 0, 0, 0), (3, 5, 2, 6), (9, 9, 6, 6)])
def test_the_padded_upsampling_equals_reflect_padding_then_the_references_filter(margins):
    from lit_gans.augment import _padded_upsample_operator

    top, bottom, left, right = margins
    x = images(channels=3, n=2, size=10)[:, :, :, :7].double()
    y = _padded_upsample_operator(10, top, bottom) @ x @ _padded_upsample_operator(7, left, right).t()
    padded = torch.nn.functional.pad(x, [left, right, top, bottom], mode="reflect")
    assert torch.allclose(y, separable_reference(padded, up=True), atol=1e-12)


def test_the_inverse_transform_equals_the_references_product_of_matrices():
    """augment.py's G_inv: translate2d_inv, scale2d_inv, rotate2d_inv applied in the pipeline's order, one 3x3
    matrix at a time, against the multiplied-out form the pipeline builds."""
    from lit_gans.augment import _inverse_geometric

    g = torch.Generator().manual_seed(0)
    n = 64
    draw = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    on = lambda value, identity: torch.where(draw(n) < 0.5, value, identity)  # noqa: E731 (some ops left out)
    flip, quarter_turns = on(torch.floor(draw(n) * 2), 0.0), on(torch.floor(draw(n) * 4), 0.0)
    shift, frac = torch.round((draw(n, 2) * 2 - 1) * 4), draw(n, 2) * 6 - 3
    scale, aniso = on(torch.exp2(draw(n) - 0.5), 1.0), on(torch.exp2(draw(n) - 0.5), 1.0)
    theta_pre, theta_post = on((draw(n) * 2 - 1) * math.pi, 0.0), on((draw(n) * 2 - 1) * math.pi, 0.0)

    def matrix(rows):
        return torch.tensor(rows, dtype=torch.float64)

    def rotate(t):
        return matrix([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])

    def scale2d(sx, sy):
        return matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])

    def translate(tx, ty):
        return matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]])

    expected = torch.stack([
        scale2d(1 - 2 * flip[i].item(), 1) @ rotate(quarter_turns[i].item() * math.pi / 2)
        @ translate(-shift[i, 0].item(), -shift[i, 1].item()) @ scale2d(1 / scale[i].item(), 1 / scale[i].item())
        @ rotate(theta_pre[i].item()) @ scale2d(1 / aniso[i].item(), aniso[i].item()) @ rotate(theta_post[i].item())
        @ translate(-frac[i, 0].item(), -frac[i, 1].item())
        for i in range(n)
    ])  # fmt: skip
    got = _inverse_geometric(flip, quarter_turns, shift, scale, theta_pre, aniso, theta_post, frac)
    assert torch.allclose(got, expected, atol=1e-12)
    untouched = _inverse_geometric(*(torch.zeros(n) for _ in range(2)), torch.zeros(n, 2), torch.ones(n),
                                   torch.zeros(n), torch.ones(n), torch.zeros(n), torch.zeros(n, 2))  # fmt: skip
    assert torch.equal(untouched.abs(), torch.eye(3).expand(n, 3, 3))  # exactly: no resampling of unchosen images


@pytest.mark.parametrize("size", [(68, 68), (40, 26)])
def test_the_sampling_grid_equals_torchs_affine_grid(size):
    from lit_gans.augment import _affine_grid

    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.nn.functional.affine_grid(theta, [5, 1, *size], align_corners=False)
    assert torch.allclose(_affine_grid(theta, *size), expected, atol=1e-12)

"""Interpolation, latent arithmetic and grids."""

import numpy as np
import pytest
import torch

from lit_gans import DCGAN
from lit_gans.latent import arithmetic_grid, interpolate, interpolation_grid, latent_arithmetic, lerp, render_grid, slerp, to_uint8_image


def test_lerp_hits_both_ends_and_the_midpoint():
    z0, z1 = torch.randn(10), torch.randn(10)
    path = lerp(z0, z1, 5)
    assert path.shape == (5, 10)
    assert torch.allclose(path[0], z0) and torch.allclose(path[-1], z1) and torch.allclose(path[2], (z0 + z1) / 2)


def test_slerp_follows_the_great_circle():
    z0, z1 = torch.randn(50), torch.randn(50)
    z1 = z1 / z1.norm() * z0.norm()  # equal norms: every point keeps that norm
    path = slerp(z0, z1, 9)
    assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    assert torch.allclose(path.norm(dim=1), torch.full((9,), z0.norm().item()), rtol=1e-4)
    # equal angular steps
    cos = [torch.dot(path[i], path[i + 1]) / path[i].norm() ** 2 for i in range(8)]
    assert torch.allclose(torch.stack(cos), cos[0].expand(8), atol=1e-5)
    # lerp cuts inside the sphere
    assert lerp(z0, z1, 9)[4].norm() < path[4].norm()


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    z = torch.randn(8)
    assert torch.allclose(slerp(z, 2 * z, 3), lerp(z, 2 * z, 3))


def test_interpolate_dispatches_and_validates():
    z0, z1 = torch.randn(4), torch.randn(4)
    assert torch.equal(interpolate(z0, z1, 3, "linear"), lerp(z0, z1, 3))
    with pytest.raises(ValueError, match="method='cubic'"):
        interpolate(z0, z1, 3, "cubic")


def test_latent_arithmetic_on_averaged_codes():
    a, b, c = torch.randn(3, 6), torch.randn(3, 6), torch.randn(3, 6)
    assert torch.allclose(latent_arithmetic(a, b, c), a.mean(0) - b.mean(0) + c.mean(0))


def test_grids_from_a_model():
    m = DCGAN(generator_width=4, discriminator_width=4)
    grid = interpolation_grid(m, torch.randn(2, 100), torch.randn(2, 100), steps=6)
    assert grid.shape == (3, 2 * 30 + 2, 6 * 30 + 2)  # two rows of six 28 px images, 2 px padding
    row = arithmetic_grid(m, torch.randn(3, 100), torch.randn(3, 100), torch.randn(3, 100))
    assert row.shape == (3, 32, 4 * 30 + 2)


def test_render_grid_maps_minus_one_one_to_uint8():
    images = torch.stack([-torch.ones(1, 4, 4), torch.ones(1, 4, 4)])
    img = to_uint8_image(render_grid(images, nrow=2, padding=0))
    assert img.dtype == np.uint8 and img.shape == (4, 8, 3)
    assert img[:, :4].max() == 0 and img[:, 4:].min() == 255


def test_grids_of_a_conditional_model_use_fixed_labels_not_the_training_noise():
    m = DCGAN(num_classes=10, latent_dim=8, generator_width=4, discriminator_width=4, noise_seed=0)
    z0, z1 = m.sample_noise[0:3], m.sample_noise[3:6]
    stream = m._noise_generator().get_state()
    grid = interpolation_grid(m, z0, z1, steps=4)
    assert torch.equal(m._noise_generator().get_state(), stream)  # no label was drawn from the training stream
    assert torch.equal(grid, interpolation_grid(m, z0, z1, steps=4))
    path = torch.cat([interpolate(a, b, 4) for a, b in zip(z0, z1)])
    rows = m.sample_labels[:3].repeat_interleave(4)  # one fixed class per row: 0, 1, 2
    assert torch.equal(grid, render_grid(m.sample(z=path, labels=rows), nrow=4))
    sevens = interpolation_grid(m, z0, z1, steps=4, labels=7)
    assert torch.equal(sevens, render_grid(m.sample(z=path, labels=7), nrow=4))
    a, b, c = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8)
    assert torch.equal(arithmetic_grid(m, a, b, c, label=2), arithmetic_grid(m, a, b, c, label=2))
    assert torch.equal(m._noise_generator().get_state(), stream)
    with pytest.raises(ValueError, match="needs a conditional model"):
        interpolation_grid(DCGAN(generator_width=4, discriminator_width=4), torch.randn(100), torch.randn(100), labels=1)

"""DiffAugment: each operation against a per-image computation, differentiability, and the engine option."""

import pytest
import torch
from gan_testing import RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer

from lit_gans import DCGAN, WGANGP, InfoGAN
from lit_gans.augment import color, cut_out, cutout, diff_augment, translate, translation


def test_translate_matches_a_per_image_zero_padded_shift():
    x = torch.randn(3, 2, 6, 5)
    dh, dw = torch.tensor([2, -1, 0]), torch.tensor([-3, 1, 5])
    out = translate(x, dh, dw)
    for i in range(3):
        padded = torch.nn.functional.pad(x[i], (6, 6, 6, 6))  # enough zeros around for any shift here
        expected = padded[:, 6 - dh[i] : 12 - dh[i], 6 - dw[i] : 11 - dw[i]]
        assert torch.equal(out[i], expected)


def test_cut_out_zeroes_exactly_one_square_per_image():
    x = torch.ones(2, 3, 8, 8)
    out = cut_out(x, torch.tensor([0, 5]), torch.tensor([3, 7]), 4, 4)
    expected = torch.ones(2, 3, 8, 8)
    expected[0, :, 0:2, 1:5] = 0  # centre (0, 3): rows -2..1, cols 1..4, clipped at the border
    expected[1, :, 3:7, 5:8] = 0  # centre (5, 7): rows 3..6, cols 5..8
    assert torch.equal(out, expected)


def test_color_factors_are_per_image_and_in_the_papers_ranges():
    x = torch.zeros(256, 3, 4, 4)  # brightness alone moves a black image: by U(-0.5, 0.5)
    shifts = color(x)[:, 0, 0, 0]
    assert shifts.min() >= -0.5 and shifts.max() <= 0.5 and shifts.std() > 0.2


def test_random_operations_keep_shape_and_let_gradients_through():
    x = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_(True)
    for op in (color, translation, cutout):
        assert op(x).shape == x.shape
    out = diff_augment(x, "color,translation,cutout", generator=torch.Generator().manual_seed(0))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    again = diff_augment(x.detach(), "color,translation,cutout", generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.detach(), again)  # reproducible from a generator


def test_engine_option_augments_every_training_input_of_d_and_nothing_in_eval():
    model = DCGAN(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4,
                  diff_augment="translation,cutout", max_generator_steps=2)  # fmt: skip
    seen = []
    model.discriminator.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))  # after it
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=16, batch_size=4))
    # cutout zeroes a 4x4 square of each 8x8 image that D sees: real and fake, in D's and G's updates
    forwards_per_batch = 2 if model.joint_discriminator_forward else 3  # D update (1 or 2) + G update
    assert len(seen) == 2 * forwards_per_batch and all(((x == 0).flatten(1).sum(1) >= 4).all() for x in seen)
    model.discriminator.eval()
    seen.clear()
    x = torch.rand(2, 1, 8, 8) + 1  # no zeros
    model.discriminator(x)
    assert torch.equal(seen[0], x)


def test_gradient_penalty_trains_through_the_augmentation_and_bad_policies_are_named():
    model = WGANGP(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4, n_critic=1,
                   diff_augment="color,translation,cutout", max_generator_steps=2)  # fmt: skip
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=16, batch_size=4))
    assert model.generator_step == 2 and int(model.nonfinite_steps) == 0
    with pytest.raises(ValueError, match="diff_augment='color,flip'.*'flip'"):
        DCGAN(diff_augment="color,flip")
    with pytest.raises(ValueError, match="not supported for InfoGAN"):
        InfoGAN(diff_augment="color")

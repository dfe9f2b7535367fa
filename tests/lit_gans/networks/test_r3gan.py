"""R3GAN's networks: every resolution, the block's shape and its identity start, the variance scaling, no
normalization, bilinear resampling, projection conditioning, and the DCGAN family's architecture='r3gan'."""

import math

import pytest
import torch
from torch import nn

from lit_gans import DCGAN
from lit_gans.networks import R3GANDiscriminator, R3GANGenerator, resolution_stages
from lit_gans.networks.r3gan import ACTIVATION_GAIN, R3GANBlock, _antialiased_downsample


@pytest.mark.parametrize("size", [28, 32, 64, 128])
def test_every_resolution_has_one_stage_per_scale(size):
    channels = 1 if size == 28 else 3
    g = R3GANGenerator(8, (channels, size, size), width=16, blocks_per_stage=1)
    d = R3GANDiscriminator((channels, size, size), width=16, blocks_per_stage=1)
    base, n = resolution_stages(size)
    assert len(g.stages) == len(d.stages) == n + 1 and g.basis.shape == (16, base, base)
    x = g(torch.randn(2, 8))
    assert x.shape == (2, channels, size, size) and d(x).shape == (2,)
    for net in (g, d):  # no normalization layer anywhere
        assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)) for m in net.modules())


def test_block_is_an_inverted_bottleneck_that_starts_as_the_identity():
    block = R3GANBlock(32, num_blocks=8, expansion=2, channels_per_group=16)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.groups) for c in (block.expand, block.spatial, block.project)] == [
        (32, 64, (1, 1), 1), (64, 64, (3, 3), 4), (64, 32, (1, 1), 1)
    ]
    x = torch.randn(4, 32, 8, 8)
    assert torch.equal(block(x), x)  # the last convolution is zero
    # the fix-up scaling: N(0, (gain * L^(-1/4))^2 / fan_in) with L = 8 blocks
    big = R3GANBlock(256, num_blocks=8)
    expected = ACTIVATION_GAIN * 8 ** -0.25 / math.sqrt(256)
    assert big.expand.weight.std().item() == pytest.approx(expected, rel=0.02)
    with pytest.raises(ValueError, match="channels_per_group=16"):
        R3GANBlock(12, num_blocks=1, expansion=1)


def test_downsampling_is_the_bilinear_four_tap_filter():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 3] = 1.0
    y = _antialiased_downsample(x)
    # output j averages inputs 2j-1 .. 2j+2 with weights (1, 3, 3, 1) / 8 per axis: the impulse at (3, 3) reaches outputs 1 and 2 with weights 3/8 and 1/8 per axis
    assert y[0, 0, 1, 1].item() == pytest.approx((3 / 8) ** 2) and y[0, 0, 2, 2].item() == pytest.approx((1 / 8) ** 2)
    assert y[0, 0, 1, 2].item() == pytest.approx(3 / 64) and y[0, 0, 0, 0].item() == 0
    ramp = torch.arange(8.0).expand(1, 1, 8, 8)  # away from the zero padding, a linear ramp stays linear
    assert torch.allclose(_antialiased_downsample(ramp)[0, 0, 1, 1:3], torch.tensor([2.5, 4.5]))


def test_the_networks_train_under_bf16_autocast():
    g = R3GANGenerator(8, (1, 28, 28), width=16, blocks_per_stage=1)
    d = R3GANDiscriminator((1, 28, 28), width=16, blocks_per_stage=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = d(g(torch.randn(2, 8)))
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and all(p.grad is not None for p in g.parameters())


def test_projection_conditioning_in_both_networks():
    torch.manual_seed(0)
    g = R3GANGenerator(8, (1, 28, 28), width=16, blocks_per_stage=1, num_classes=5)
    d = R3GANDiscriminator((1, 28, 28), width=16, blocks_per_stage=1, num_classes=5)
    z, x = torch.randn(3, 8), torch.randn(3, 1, 28, 28)
    y = torch.tensor([0, 1, 4])
    assert not torch.allclose(g(z, y), g(z, (y + 1) % 5))
    features = {}
    d.head.register_forward_hook(lambda m, i, out: features.__setitem__("psi", out))
    out = d(x, y)
    assert torch.allclose(out, (features["psi"] * d.label_embedding.weight[y]).sum(1), atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        d(x)


def test_dcgan_family_builds_r3gan_and_refuses_what_it_lacks():
    model = DCGAN(architecture="r3gan", generator_width=16, discriminator_width=16, num_classes=4)
    assert isinstance(model.generator, R3GANGenerator) and isinstance(model.discriminator, R3GANDiscriminator)
    assert model.sample(2, labels=torch.tensor([0, 3])).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="projection only"):
        DCGAN(architecture="r3gan", num_classes=4, conditioning="auxiliary")
    with pytest.raises(ValueError, match="no normalization layers"):
        DCGAN(architecture="r3gan", discriminator_norm="layer")
    with pytest.raises(ValueError, match="upsample='nearest' is a DCGAN-network option"):
        DCGAN(architecture="r3gan", upsample="nearest")

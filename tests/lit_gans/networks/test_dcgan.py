"""The DCGAN family: every resolution from one class, the paper's layer rules, the SELU and Keras variants."""

import pytest
import torch
from torch import nn

from lit_gans.networks import DCGANDiscriminator, DCGANGenerator, resolution_stages


@pytest.mark.parametrize("size,stages", [(28, 2), (32, 3), (64, 4), (128, 5)])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_at_every_resolution(size, stages, channels):
    g = DCGANGenerator(16, (channels, size, size), width=4)
    d = DCGANDiscriminator((channels, size, size), width=4)
    x = g(torch.randn(2, 16))
    assert x.shape == (2, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (2,)
    assert resolution_stages(size)[1] == stages
    # one more stride-2 stage per doubling
    assert sum(isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2) for m in g.modules()) == stages
    assert sum(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in d.modules()) == stages


def test_mnist_generator_is_the_reference_shape():
    # 100 -> 128x7x7 -> 64x14x14 -> 1x28x28 (the plain-loop benchmark's network)
    g = DCGANGenerator(100, (1, 28, 28), width=64)
    shapes = []
    x = torch.randn(2, 100).view(2, 100, 1, 1)
    for m in g.net:
        x = m(x)
        if isinstance(m, nn.ConvTranspose2d):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(128, 7, 7), (64, 14, 14), (1, 28, 28)]


@pytest.mark.parametrize("size", [0, 30, 48, 100])
def test_unsupported_resolution_names_the_size(size):
    with pytest.raises(ValueError, match=f"image_size={size}"):
        DCGANGenerator(8, (1, size, size))


def test_batchnorm_everywhere_but_generator_output_and_discriminator_input():
    g, d = DCGANGenerator(8, (3, 32, 32), width=4), DCGANDiscriminator((3, 32, 32), width=4)
    g_layers, d_layers = list(g.net), list(d.trunk)
    assert isinstance(g_layers[-1], nn.Tanh) and isinstance(g_layers[-2], nn.ConvTranspose2d)
    assert isinstance(d_layers[0], nn.Conv2d) and isinstance(d_layers[1], nn.LeakyReLU)  # no BN on D's input
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 2
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in [*g.modules(), *d.modules()])


def test_dcgan_init_draws_from_n_0_002():
    g = DCGANGenerator(100, (1, 64, 64), width=32)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(w.mean().item()) < 1e-3 and w.std().item() == pytest.approx(0.02, rel=0.05)


def test_selu_variant_has_no_batchnorm_and_self_normalizes():
    g = DCGANGenerator(100, (3, 128, 128), width=8, norm="none", activation="selu")
    d = DCGANDiscriminator((3, 128, 128), width=8, norm="none", activation="selu")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in [*g.modules(), *d.modules()])
    assert sum(isinstance(m, nn.SELU) for m in g.modules()) == 5
    # LeCun-normal init keeps activations near zero mean / unit variance through the SELU stack
    x = torch.randn(64, 3, 128, 128)
    h = d.trunk(x)
    assert abs(h.mean().item()) < 0.3 and 0.5 < h.std().item() < 1.5


def test_upsampling_generator_and_dropout_options():
    g = DCGANGenerator(100, (1, 28, 28), width=8, upsample="nearest", dropout=0.4)
    assert any(isinstance(m, nn.Upsample) for m in g.modules())
    assert not any(isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2) for m in g.modules())
    assert any(isinstance(m, nn.Dropout) and m.p == 0.4 for m in g.modules())
    assert g(torch.randn(3, 100)).shape == (3, 1, 28, 28)
    d = DCGANDiscriminator((1, 28, 28), width=8, dropout=0.4)
    d.eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(d(x), d(x))  # dropout off in eval mode


@pytest.mark.parametrize("norm,layer", [("layer", nn.GroupNorm), ("instance", nn.InstanceNorm2d)])
def test_critic_norms_are_per_sample(norm, layer):
    d = DCGANDiscriminator((1, 32, 32), width=4, norm=norm)
    assert any(isinstance(m, layer) for m in d.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    x = torch.randn(4, 1, 32, 32)
    # a sample's score does not depend on the rest of the batch
    assert torch.allclose(d(x)[:1], d(x[:1]), atol=1e-5)


def test_bad_option_names_the_parameter():
    with pytest.raises(ValueError, match="upsample='pixel'"):
        DCGANGenerator(8, (1, 28, 28), upsample="pixel")
    with pytest.raises(ValueError, match="norm='group'"):
        DCGANDiscriminator((1, 28, 28), norm="group")

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


def pre_activation_variances(net, x):
    """Variance of the input of every activation (SELU, and G's output tanh) in one forward pass, by hooks."""
    variances = []
    hooks = [
        m.register_forward_pre_hook(lambda m, args: variances.append(args[0].var().item()))
        for m in net.modules()
        if isinstance(m, (nn.SELU, nn.Tanh))
    ]
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    return variances


@pytest.mark.parametrize("size", [64, 128])
def test_selu_init_gives_unit_variance_pre_activations_at_every_layer(size):
    # LeCun-normal init is N(0, 1/fan_in) with the fan-in a unit really has: for the 1x1 -> 4x4 projection
    # and the stride-2 transposed convolutions that is far less than in * k * k
    torch.manual_seed(0)
    g = DCGANGenerator(100, (3, size, size), width=8, norm="none", activation="selu")
    d = DCGANDiscriminator((3, size, size), width=8, norm="none", activation="selu")
    stages = resolution_stages(size)[1]
    g_vars = pre_activation_variances(g, torch.randn(16, 100))
    d_vars = pre_activation_variances(d, torch.randn(16, 3, size, size))
    assert len(g_vars) == stages + 1 and len(d_vars) == stages  # every layer of both networks was measured
    for layer, variance in enumerate(g_vars + d_vars):
        assert 0.7 < variance < 1.4, (layer, g_vars, d_vars)


def test_effective_fan_in_counts_the_taps_that_reach_one_output_pixel():
    from lit_gans.networks.layers import effective_fan_in

    def taps(layer, input_size):  # brute force: which inputs move one output pixel, averaged over the pixels
        counts = []
        x = torch.zeros(1, 1, *input_size, requires_grad=True)
        with torch.no_grad():
            layer.weight.fill_(1.0)
        out = layer(x)
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                (grad,) = torch.autograd.grad(out[0, 0, i, j], x, retain_graph=True)
                counts.append(float(grad.sum()))
        return sum(counts) / len(counts)

    for layer, size in [
        (nn.ConvTranspose2d(1, 1, 4, 1, 0, bias=False), (1, 1)),  # DCGAN's projection: one tap per pixel
        (nn.ConvTranspose2d(1, 1, 4, 2, 1, bias=False), (4, 4)),
        (nn.ConvTranspose2d(1, 1, 4, 2, 1, bias=False), (16, 16)),
        (nn.Conv2d(1, 1, 4, 2, 1, bias=False), (8, 8)),
        (nn.Conv2d(1, 1, 3, 1, 1, bias=False), (5, 5)),
        (nn.Conv2d(1, 1, 4, 1, 0, bias=False), (4, 4)),
    ]:
        expected = taps(layer, size)
        assert effective_fan_in(layer, size) == pytest.approx(expected), (layer, size)
        wide = type(layer)(6, 2, layer.kernel_size, layer.stride, layer.padding, bias=False)
        assert effective_fan_in(wide, size) == pytest.approx(6 * expected)
    assert effective_fan_in(nn.Linear(7, 3)) == 7


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

"""The references' MLP GAN networks."""

import torch
from torch import nn

from lit_gans.networks import MLPDiscriminator, MLPGenerator


def test_reference_mlp_is_100_128_784():
    g, d = MLPGenerator(100, (1, 28, 28), (128,)), MLPDiscriminator((1, 28, 28), (128,))
    g_lin = [(m.in_features, m.out_features) for m in g.modules() if isinstance(m, nn.Linear)]
    d_lin = [(m.in_features, m.out_features) for m in d.modules() if isinstance(m, nn.Linear)]
    assert g_lin == [(100, 128), (128, 784)] and d_lin == [(784, 128), (128, 1)]
    assert any(isinstance(m, nn.ReLU) for m in g.modules()) and isinstance(g.net[-1], nn.Tanh)
    x = g(torch.randn(5, 100))
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1
    assert d(x).shape == (5,)


def test_width_and_depth_are_configurable():
    g = MLPGenerator(10, (3, 8, 8), (32, 64, 32))
    assert [m.out_features for m in g.modules() if isinstance(m, nn.Linear)] == [32, 64, 32, 192]
    assert g(torch.randn(2, 10)).shape == (2, 3, 8, 8)

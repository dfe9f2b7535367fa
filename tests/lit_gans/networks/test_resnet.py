"""The ResNet family (WGAN-GP / SNGAN): every resolution from one class, the documented channel rule, the
pre-activation blocks, the SNGAN initialization, critic norms and class conditioning."""

import math

import pytest
import torch
from torch import nn

from lit_gans.networks import ResNetDiscriminator, ResNetGenerator, resolution_stages, spectral_norm_
from lit_gans.networks.conditional import ConditionalBatchNorm, LabelEmbedding
from lit_gans.networks.resnet import ResNetDiscriminatorBlock, ResNetGeneratorBlock, ResNetOptimizedBlock


def block_output_shapes(blocks, x, labels=None):
    shapes = []
    for block in blocks:
        x = block(x, labels) if getattr(block, "takes_labels", False) else block(x)
        shapes.append(tuple(x.shape[1:]))
    return shapes


@pytest.mark.parametrize("size,stages", [(28, 2), (32, 3), (64, 4), (128, 5)])
def test_compact_layout_shapes_and_block_counts_at_every_resolution(size, stages):
    torch.manual_seed(0)
    channels = 1 if size == 28 else 3
    g = ResNetGenerator(16, (channels, size, size), width=4, layout="compact")
    d = ResNetDiscriminator((channels, size, size), width=4, layout="compact")
    x = g(torch.randn(2, 16))
    assert x.shape == (2, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (2,)
    base, n = resolution_stages(size)
    assert n == stages
    assert sum(isinstance(m, ResNetGeneratorBlock) for m in g.modules()) == n
    assert sum(isinstance(m, ResNetOptimizedBlock) for m in d.modules()) == 1
    d_blocks = [m for m in d.modules() if isinstance(m, ResNetDiscriminatorBlock)]
    assert [any(isinstance(l, nn.AvgPool2d) for l in b.residual) for b in d_blocks] == [True] * (n - 1) + [False]
    # the documented channels: G halves from c0 = width * 2**(n-1) down to width; D doubles from width
    h = g.linear(torch.randn(2, 16)).view(2, -1, base, base)
    expected_g = [(4 * 2 ** max(n - 2 - i, 0), base * 2 ** (i + 1), base * 2 ** (i + 1)) for i in range(n)]
    assert h.shape[1] == 4 * 2 ** (n - 1)
    assert block_output_shapes(g.blocks, h) == expected_g
    expected_d = [(4 * 2**i, size // 2 ** (i + 1), size // 2 ** (i + 1)) for i in range(n)]
    expected_d.append(expected_d[-1])  # the last block keeps resolution and channels
    assert block_output_shapes(list(d.trunk)[:-1], x) == expected_d
    assert d.feature_dim == 4 * 2 ** (n - 1) and d.feature_size == base


# SNGAN's networks (pfnet-research/sngan_projection), block by block: (gen_models, dis_models) at their defaults
SNGAN_WALKS = {
    # resnet_32 (ch=256) / snresnet_32 (ch=128): one width, D keeps 8x8 for its last two blocks
    32: (256, 128, [(256, 4, 4), (256, 8, 8), (256, 16, 16), (256, 32, 32)],
         [(128, 16, 16), (128, 8, 8), (128, 8, 8), (128, 8, 8)]),
    # resnet_64 / snresnet_64 (ch=64): D ends at 1024 channels on 2x2 after five down-sampling blocks
    64: (64, 64, [(1024, 4, 4), (512, 8, 8), (256, 16, 16), (128, 32, 32), (64, 64, 64)],
         [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (1024, 2, 2)]),
    # resnet (ImageNet 128) / snresnet_128 (ch=64): G keeps 1024 through 8x8, D adds a block at 4x4
    128: (64, 64, [(1024, 4, 4), (1024, 8, 8), (512, 16, 16), (256, 32, 32), (128, 64, 64), (64, 128, 128)],
          [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4), (1024, 4, 4)]),
    # snresnet_256: widths ch * (1, 2, 4, 8, 8, 16, 16)
    256: (64, 64, None, [(64, 128, 128), (128, 64, 64), (256, 32, 32), (512, 16, 16), (512, 8, 8), (1024, 4, 4),
                         (1024, 4, 4)]),
}


@pytest.mark.parametrize("size", sorted(SNGAN_WALKS))
def test_default_layout_has_sngans_shapes(size):
    g_width, d_width, g_walk, d_walk = SNGAN_WALKS[size]
    with torch.device("meta"):  # shapes only
        g, d = ResNetGenerator(128, (3, size, size), g_width), ResNetDiscriminator((3, size, size), d_width)
        if g_walk is not None:
            h = g.linear(torch.randn(2, 128)).view(2, g.widths[0], 4, 4)
            assert [tuple(h.shape[1:])] + block_output_shapes(g.blocks, h) == g_walk
            assert g(torch.randn(2, 128)).shape == (2, 3, size, size)
        x = torch.randn(2, 3, size, size)
        assert block_output_shapes(list(d.trunk)[:-1], x) == d_walk
        assert (d.feature_dim, d.feature_size, d.feature_size) == d_walk[-1] and d(x).shape == (2,)


def test_sngan_layout_at_28_px_follows_the_32_px_networks():
    g, d = ResNetGenerator(16, (1, 28, 28), 8), ResNetDiscriminator((1, 28, 28), 8)
    h = g.linear(torch.randn(2, 16)).view(2, g.widths[0], 7, 7)
    assert block_output_shapes(g.blocks, h) == [(8, 14, 14), (8, 28, 28)]
    assert block_output_shapes(list(d.trunk)[:-1], torch.randn(2, 1, 28, 28)) == [(8, 14, 14), (8, 7, 7)] + [(8, 7, 7)] * 2


def test_conditional_generator_output_batchnorm_is_plain_as_sngans():
    g = ResNetGenerator(8, (3, 32, 32), width=4, num_classes=3)
    assert type(g.output[0]) is nn.BatchNorm2d  # SNGAN's b5: L.BatchNormalization
    assert all(isinstance(m, ConditionalBatchNorm) for b in g.blocks for m in b.residual if "Norm" in type(m).__name__)
    compact = ResNetGenerator(8, (3, 32, 32), width=4, num_classes=3, layout="compact")
    assert isinstance(compact.output[0], ConditionalBatchNorm)  # lit-gans 0.1's, whose checkpoints it loads


def xavier_std(layer, gain):
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def test_sngan_initialization():
    torch.manual_seed(0)
    g = ResNetGenerator(32, (3, 32, 32), width=16, num_classes=5)
    d = ResNetDiscriminator((3, 32, 32), width=16, num_classes=5, conditioning="auxiliary")
    kinds = (ResNetGeneratorBlock, ResNetDiscriminatorBlock, ResNetOptimizedBlock)
    blocks = [m for m in [*g.modules(), *d.modules()] if isinstance(m, kinds)]
    residual = [m for b in blocks for m in b.residual if isinstance(m, nn.Conv2d)]
    shortcut = [m for b in blocks for m in b.shortcut.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) for c in residual) and all(c.kernel_size == (1, 1) for c in shortcut)
    gain_one = shortcut + [g.linear, g.output[-2], d.head[1], d.conditioning.classifier]
    for layers, gain in [(residual, math.sqrt(2.0)), (gain_one, 1.0)]:
        # weights / their xavier-uniform std, pooled: U(-sqrt(3), sqrt(3)), std 1
        w = torch.cat([(m.weight / xavier_std(m, gain)).flatten() for m in layers])
        assert w.std().item() == pytest.approx(1.0, rel=0.03)
        assert abs(w.mean().item()) < 0.03 and w.abs().max().item() <= math.sqrt(3) + 1e-5
    every = [m for m in [*g.modules(), *d.modules()] if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(m.bias is None or not m.bias.any() for m in every)
    cbns = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm)]
    assert cbns and all((m.gain.weight == 0).all() and (m.bias.weight == 0).all() for m in cbns)  # gains 1, biases 0
    plain = ResNetGenerator(32, (3, 32, 32), width=4)
    bns = [m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2 * 3 + 1 and all((m.weight == 1).all() and (m.bias == 0).all() for m in bns)


def execution_order(module, *args):
    """Types of the leaf modules of ``module`` in the order a forward pass runs them."""
    order = []
    leaves = [m for m in module.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(type(m))) for m in leaves]
    module(*args)
    for hook in hooks:
        hook.remove()
    return order


def test_blocks_are_pre_activation():
    g = ResNetGenerator(8, (3, 32, 32), width=4)
    block = g.blocks[1]
    assert [type(m) for m in block.residual] == [
        nn.BatchNorm2d, nn.ReLU, nn.Upsample, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d
    ]
    assert [type(m) for m in block.shortcut] == [nn.Upsample, nn.Conv2d]
    assert block.residual[2].mode == "nearest" and block.residual[2].scale_factor == 2
    order = execution_order(block.residual, torch.randn(2, 4, 8, 8))
    assert order == [type(m) for m in block.residual]
    assert [type(m) for m in g.output] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.Tanh]

    d = ResNetDiscriminator((3, 32, 32), width=4)
    first, down, last = d.trunk[0], d.trunk[1], d.trunk[3]
    assert [type(m) for m in first.residual] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.AvgPool2d]  # no act. on the image
    assert [type(m) for m in first.shortcut] == [nn.AvgPool2d, nn.Conv2d]
    assert [type(m) for m in down.residual] == [nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d, nn.AvgPool2d]
    assert [type(m) for m in down.shortcut] == [nn.Conv2d, nn.AvgPool2d]
    assert [type(m) for m in last.residual] == [nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert isinstance(last.shortcut, nn.Identity) and isinstance(d.trunk[-1], nn.ReLU)
    # a block is shortcut + residual, and the shortcut still sees the block's input (no in-place activation on it)
    x = torch.randn(2, 4, 16, 16)
    assert torch.allclose(down(x), down.shortcut(x) + down.residual(x))
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(last(x), x + last.residual(x))


def test_discriminator_has_no_batchnorm_and_layer_norm_is_per_sample():
    plain = ResNetDiscriminator((3, 32, 32), width=4)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in plain.modules())
    d = ResNetDiscriminator((3, 32, 32), width=4, norm="layer")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    groups = [m for m in d.modules() if isinstance(m, nn.GroupNorm)]
    assert len(groups) == 1 + 2 * 3 and all(m.num_groups == 1 for m in groups)
    assert [type(m) for m in d.trunk[1].residual] == [
        nn.GroupNorm, nn.ReLU, nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.Conv2d, nn.AvgPool2d
    ]
    assert [type(m) for m in d.trunk[0].residual] == [nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.Conv2d, nn.AvgPool2d]
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(d(x)[:1], d(x[:1]), atol=1e-5)  # a score does not depend on the rest of the batch
    g = ResNetGenerator(8, (3, 32, 32), width=4, norm="none")
    assert not any(isinstance(m, (nn.BatchNorm2d, ConditionalBatchNorm)) for m in g.modules())
    assert g(torch.randn(2, 8)).shape == (2, 3, 32, 32)


def test_discriminator_sum_pools_and_shares_its_trunk():
    d = ResNetDiscriminator((1, 28, 28), width=4)
    x = torch.randn(3, 1, 28, 28)
    h = d.trunk(x)
    assert h.shape == (3, d.feature_dim, d.feature_size, d.feature_size) == (3, 4, 7, 7)
    assert torch.allclose(d.features(x), h.sum(dim=(2, 3)))  # sum, not mean
    assert torch.allclose(d.head(h).flatten(), d(x))  # what InfoGAN's shared-trunk head does


@pytest.mark.parametrize("conditioning", ["projection", "auxiliary"])
def test_batchnorm_conditional_generator(conditioning):
    torch.manual_seed(0)
    g = ResNetGenerator(8, (3, 32, 32), width=4, num_classes=3, conditioning=conditioning)
    cbns = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm)]
    # each block's two BatchNorms are conditional; the output BatchNorm is plain (SNGAN's)
    assert len(cbns) == 2 * 3 and type(g.output[0]) is nn.BatchNorm2d
    assert sum(isinstance(m, nn.BatchNorm2d) and m.affine for m in g.modules()) == 1
    assert g.label_embedding is None and g.linear.in_features == 8
    with torch.no_grad():  # new CBN layers are plain BN: give the classes their own gains and biases
        for m in cbns:
            m.gain.weight.normal_(1.0, 0.5)
            m.bias.weight.normal_(0.0, 0.5)
    z = torch.randn(2, 8)
    a, b = g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1]))
    assert a.shape == (2, 3, 32, 32) and not torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="labels"):
        g(z)


@pytest.mark.parametrize(
    "kwargs,dim",
    [({"conditioning": "concat"}, 3), ({"conditioning": "concat", "label_embedding_dim": 5}, 5), ({"norm": "none"}, 3)],
)
def test_embedding_conditional_generator(kwargs, dim):
    torch.manual_seed(0)
    g = ResNetGenerator(8, (1, 28, 28), width=4, num_classes=3, **kwargs)
    assert isinstance(g.label_embedding, LabelEmbedding) and g.label_embedding.dim == dim
    assert g.linear.in_features == 8 + dim
    assert not any(isinstance(m, ConditionalBatchNorm) for m in g.modules())
    z = torch.randn(2, 8)
    assert not torch.allclose(g(z, torch.tensor([0, 0])), g(z, torch.tensor([2, 2])), atol=1e-4)
    with pytest.raises(ValueError, match="labels"):
        g(z)


def test_projection_discriminator_adds_embed_y_dot_phi():
    torch.manual_seed(0)
    d = ResNetDiscriminator((3, 32, 32), width=4, num_classes=4, conditioning="projection")
    captured = {}
    d.trunk.register_forward_hook(lambda m, i, o: captured.update(h=o.detach()))
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 3, 1])
    out = d(x, y)
    assert out.shape == (3,)
    phi = captured["h"].sum(dim=(2, 3))  # SNGAN: global sum pooling
    unconditional = phi @ d.head[1].weight.detach().t() + d.head[1].bias.detach()
    projection = (d.conditioning.embed.weight.detach()[y] * phi).sum(1)
    assert projection.abs().min() > 1e-4  # the check below is not vacuous
    assert torch.allclose(out - unconditional.flatten(), projection, atol=1e-5)
    with pytest.raises(ValueError, match="labels"):
        d(x)


def test_auxiliary_and_concat_discriminators():
    d = ResNetDiscriminator((3, 32, 32), width=4, num_classes=5, conditioning="auxiliary")
    x = torch.randn(2, 3, 32, 32)
    out, logits = d(x, torch.tensor([1, 4]))
    assert out.shape == (2,) and logits.shape == (2, 5)
    assert d.conditioning.classifier.in_features == d.feature_dim

    d = ResNetDiscriminator((1, 28, 28), width=4, num_classes=5, conditioning="concat")
    first = d.trunk[0]
    assert first.residual[0].in_channels == 2 and first.shortcut[1].in_channels == 2
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        d.conditioning.label_map.weight.normal_()
    assert d(x, torch.tensor([0, 0])).shape == (2,)
    assert not torch.allclose(d(x, torch.tensor([0, 0])), d(x, torch.tensor([3, 3])))
    with pytest.raises(ValueError, match="labels"):
        d(x)


def test_invalid_arguments_are_refused():
    for size in (30, 48):
        with pytest.raises(ValueError, match=f"image_size={size}"):
            ResNetGenerator(8, (3, size, size))
        with pytest.raises(ValueError, match=f"image_size={size}"):
            ResNetDiscriminator((3, size, size))
    with pytest.raises(ValueError, match="square"):
        ResNetDiscriminator((3, 32, 16))
    with pytest.raises(ValueError, match="norm='layer'"):
        ResNetGenerator(8, (3, 32, 32), norm="layer")
    with pytest.raises(ValueError, match="norm='batch'"):
        ResNetDiscriminator((3, 32, 32), norm="batch")
    with pytest.raises(ValueError, match="conditioning"):
        ResNetDiscriminator((3, 32, 32), num_classes=3, conditioning="bogus")
    with pytest.raises(ValueError, match="num_classes=1"):
        ResNetGenerator(8, (3, 32, 32), num_classes=1)


@pytest.mark.parametrize("num_classes", [0, 3])
def test_spectral_norm_and_gradient_penalty_backward(num_classes):
    torch.manual_seed(0)
    d = spectral_norm_(ResNetDiscriminator((3, 32, 32), width=4, num_classes=num_classes))
    weighted = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert weighted and all(hasattr(m, "weight_orig") for m in weighted)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    labels = torch.tensor([0, 2]) if num_classes else None
    out = d(x, labels)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)  # WGAN-GP's penalty needs double backward
    (out.mean() + grad.flatten(1).norm(dim=1).sub(1).pow(2).mean()).backward()
    assert all(m.weight_orig.grad is not None and m.weight_orig.grad.abs().sum() > 0 for m in weighted)

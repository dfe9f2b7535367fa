"""Class-conditional GANs: the conditioning layers against their formulas, the engine's label plumbing, every
objective and option with labels, checkpoints, refusals, and a conditional DCGAN that obeys its labels on MNIST."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from gan_testing import TINY, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer, seed_everything

from lit_gans import DCGAN, GAN, WGANGP, InfoGAN, VanillaGAN
from lit_gans.networks import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from lit_gans.networks.conditional import ConditionalBatchNorm
from lit_gans.objectives import HingeLoss, LeastSquaresLoss, RaHingeLoss, RaLSGANLoss, RaSGANLoss, RSGANLoss
from lit_gans.step import TrainingStep

K = 4
LABELLED = dict(n=32, num_classes=K)


def fit(model, **trainer_kwargs):
    data = RandomImages(image_shape=model.image_shape, **LABELLED)
    Trainer(**tiny_trainer_kwargs(**trainer_kwargs)).fit(model, data)
    return model


# ---------------------------------------------------------------------------------------------- layers
def test_conditional_batchnorm_applies_the_labels_gain_and_bias():
    bn = ConditionalBatchNorm(3, num_classes=K, embedding_dim=5)
    x, y = torch.randn(8, 3, 4, 4), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
    normalized = (x - mean) / torch.sqrt(var + 1e-5)
    assert torch.allclose(bn(x, y), normalized, atol=1e-5)  # starts as plain BatchNorm
    with torch.no_grad():
        bn.gain.weight.normal_()
        bn.bias.weight.normal_()
    e = bn.embedding.weight[y]  # each image's class embedding
    gain, bias = 1 + e @ bn.gain.weight.T, e @ bn.bias.weight.T  # one (gain, bias) per class
    assert torch.allclose(bn(x, y), normalized * gain[:, :, None, None] + bias[:, :, None, None], atol=1e-5)
    assert torch.equal(gain[0], gain[7]) and not torch.allclose(gain[0], gain[1])


def test_projection_term_equals_the_class_embedding_dot_the_features():
    d = DCGANDiscriminator((1, 16, 16), width=4, norm="none", num_classes=K, conditioning="projection")
    captured = {}
    d.trunk.register_forward_hook(lambda m, i, out: captured.__setitem__("phi", out))
    x, y = torch.randn(5, 1, 16, 16), torch.tensor([0, 1, 2, 3, 1])
    out = d(x, y)
    phi = captured["phi"].flatten(1)
    unconditional = d.head(captured["phi"]).flatten()
    embedding = d.conditioning.embed.weight  # (K, F): the class embeddings
    assert torch.allclose(out - unconditional, torch.einsum("nf,nf->n", embedding[y], phi), atol=1e-5)
    assert not torch.allclose(d(x, (y + 1) % K), out)  # the label changes the score


@pytest.mark.parametrize("architecture", ["dcgan", "resnet"])
def test_spectral_norm_bounds_the_projection_embedding(architecture):
    # SNGAN's projection D normalizes its class embedding (SNEmbedID): scaling the embedding cannot scale D's output
    model = DCGAN(
        image_shape=(1, 16, 16), generator_width=4, discriminator_width=4, num_classes=K, conditioning="projection",
        discriminator_spectral_norm=True, discriminator_norm="none", architecture=architecture,
    )
    d = model.discriminator.eval()
    x, y = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 1, 0])
    out = d(x, y)
    embedding = {n: p for n, p in d.named_parameters() if n.startswith("conditioning.embed.")}
    assert list(embedding) == ["conditioning.embed.weight_orig"]
    with torch.no_grad():
        embedding["conditioning.embed.weight_orig"].mul_(100)
    torch.testing.assert_close(d(x, y), out, rtol=1e-4, atol=1e-5)


def test_a_checkpoint_with_an_unnormalized_projection_embedding_still_loads():
    kwargs = dict(
        image_shape=(1, 16, 16), generator_width=4, discriminator_width=4, num_classes=K, conditioning="projection",
        discriminator_spectral_norm=True, discriminator_norm="none",
    )
    saved = DCGAN(**kwargs).state_dict()
    for suffix in ("_u", "_v"):
        del saved[f"discriminator.conditioning.embed.weight{suffix}"]
    weight = saved.pop("discriminator.conditioning.embed.weight_orig")
    saved["discriminator.conditioning.embed.weight"] = weight  # how lit-gans 0.1 saved it
    model = DCGAN(**kwargs)
    with pytest.warns(UserWarning, match="saved without spectral normalization"):
        model.load_state_dict(saved)
    assert torch.equal(model.discriminator.conditioning.embed.weight_orig, weight)
    d = model.discriminator.eval()
    d(torch.randn(2, 1, 16, 16), torch.tensor([0, 1]))  # the forward computes the normalized weight
    torch.testing.assert_close(d.conditioning.embed.weight, weight / torch.linalg.matrix_norm(weight, ord=2))
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items() if k.startswith("generator."))


def test_concat_conditioning_joins_the_label_to_both_inputs():
    g = DCGANGenerator(8, (1, 16, 16), width=4, num_classes=K, conditioning="concat")
    assert g.net[0].in_channels == 8 + K  # z and the label embedding
    d = DCGANDiscriminator((1, 16, 16), width=4, num_classes=K, conditioning="concat")
    assert d.trunk[0].in_channels == 2  # the image and one label map
    mlp = MLPDiscriminator((1, 4, 4), (8,), num_classes=K, conditioning="concat")
    assert mlp.trunk[1].in_features == 2 * 16


@pytest.mark.parametrize("network", ["dcgan", "mlp"])
def test_a_conditional_generator_obeys_its_label_and_needs_one(network):
    torch.manual_seed(0)
    if network == "dcgan":
        g = DCGANGenerator(8, (1, 16, 16), width=4, num_classes=K)
        assert any(isinstance(m, ConditionalBatchNorm) for m in g.modules()) and g.label_embedding is None
    else:
        g = MLPGenerator(8, (1, 4, 4), (8, 8), norm="batch", num_classes=K)
    for m in g.modules():  # distinct class gains, so labels matter at initialization too
        if isinstance(m, ConditionalBatchNorm):
            torch.nn.init.normal_(m.gain.weight, 0, 0.5)
    g.eval()
    z = torch.randn(2, 8)
    assert not torch.allclose(g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="needs labels"):
        g(z)


def test_a_generator_without_batchnorm_takes_the_label_at_its_input():
    g = DCGANGenerator(8, (1, 16, 16), width=4, norm="none", activation="selu", num_classes=K, conditioning="projection")
    assert g.label_embedding is not None and not any(isinstance(m, ConditionalBatchNorm) for m in g.modules())


# ---------------------------------------------------------------------------------------------- the engine's losses
def auxiliary_model(**kwargs):
    return DCGAN(num_classes=K, conditioning="auxiliary", auxiliary_weight=0.7, discriminator_norm="none", **TINY, **kwargs)


def test_acgan_class_terms_equal_a_hand_computation_in_both_losses():
    torch.manual_seed(0)
    model = auxiliary_model()
    real, fake = torch.rand(6, 1, 8, 8) * 2 - 1, torch.rand(6, 1, 8, 8) * 2 - 1
    labels, fake_labels = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 3, 2, 1, 0, 0])
    d_loss, logs = model.regularized_discriminator_loss(TrainingStep(real, labels, torch.zeros(6, 4), fake, fake_labels))
    (real_out, real_cls), (fake_out, fake_cls) = model.discriminator(real, labels), model.discriminator(fake, fake_labels)
    bce = F.binary_cross_entropy_with_logits
    adversarial = bce(real_out, torch.ones(6)) + bce(fake_out, torch.zeros(6))
    class_terms = F.cross_entropy(real_cls, labels) + F.cross_entropy(fake_cls, fake_labels)
    assert d_loss.item() == pytest.approx((adversarial + 0.7 * class_terms).item(), rel=1e-5)
    assert logs["class_loss_real"].item() == pytest.approx(F.cross_entropy(real_cls, labels).item(), rel=1e-5)

    g_loss, g_logs = model.regularized_generator_loss(TrainingStep(real, labels, torch.zeros(6, 4), fake, fake_labels))
    expected = bce(fake_out, torch.ones(6)) + 0.7 * F.cross_entropy(fake_cls, fake_labels)  # no real term for G
    assert g_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert "class_loss_real" not in g_logs


def test_acgan_without_the_fake_term_in_d_trains_its_classifier_on_real_images_only():
    torch.manual_seed(0)
    model = auxiliary_model(auxiliary_classify_fakes=False)
    real, fake = torch.rand(6, 1, 8, 8) * 2 - 1, torch.rand(6, 1, 8, 8) * 2 - 1
    labels, fake_labels = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 3, 2, 1, 0, 0])
    step = TrainingStep(real, labels, torch.zeros(6, 4), fake, fake_labels)
    d_loss, logs = model.regularized_discriminator_loss(step)
    (real_out, real_cls), (fake_out, fake_cls) = model.discriminator(real, labels), model.discriminator(fake, fake_labels)
    bce = F.binary_cross_entropy_with_logits
    expected = bce(real_out, torch.ones(6)) + bce(fake_out, torch.zeros(6)) + 0.7 * F.cross_entropy(real_cls, labels)
    assert d_loss.item() == pytest.approx(expected.item(), rel=1e-5) and "class_loss_fake" not in logs
    g_loss, _ = model.regularized_generator_loss(TrainingStep(real, labels, torch.zeros(6, 4), fake, fake_labels))
    assert g_loss.item() == pytest.approx((bce(fake_out, torch.ones(6)) + 0.7 * F.cross_entropy(fake_cls, fake_labels)).item(), rel=1e-5)


class LabelSpy(DCGAN):
    """Records the labels each network sees in each update."""

    def setup(self, stage):
        super().setup(stage)
        self.seen = []
        self.generator.register_forward_pre_hook(lambda m, args: self.seen.append(("G", args[1].clone())))
        self.discriminator.register_forward_pre_hook(lambda m, args: self.seen.append(("D", args[1].clone())))

    def training_step(self, batch, batch_idx):
        self.seen.append(("batch", batch[1].clone()))
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("reuse", [False, True])
def test_the_labels_d_sees_are_the_real_ones_and_those_the_fakes_were_generated_for(reuse):
    seed_everything(0)
    bn = dict(TINY, image_shape=(1, 16, 16))  # 16 px: D has BatchNorm, so real and fake get a forward each
    model = fit(LabelSpy(num_classes=K, max_generator_steps=3, reuse_fake_for_generator=reuse, **bn))
    events = model.seen
    starts = [i for i, (who, _) in enumerate(events) if who == "batch"]
    for start, end in zip(starts, [*starts[1:], len(events)]):
        batch = events[start][1]
        (_, g_labels), (_, d_real), (_, d_fake), *g_step = events[start + 1 : end]  # BatchNorm D: two forwards
        assert torch.equal(d_real, batch)  # real images with their labels
        assert torch.equal(d_fake, g_labels)  # fakes with the labels they were generated for
        assert torch.equal(torch.sort(g_labels).values, torch.sort(batch).values)  # the batch's labels, reordered
        if reuse:
            [(_, g_step_d)] = g_step  # the fake batch is reused: D scores it with its labels again
            assert torch.equal(g_step_d, g_labels)
        else:
            [(_, g_step_g), (_, g_step_d)] = g_step  # fresh fakes for the G update
            assert torch.equal(g_step_d, g_step_g)
    orders = [labels for who, labels in events if who == "G"]
    assert any(not torch.equal(o, events[starts[0]][1]) for o in orders)  # the order is shuffled


OBJECTIVES = [None, HingeLoss(), LeastSquaresLoss(), RSGANLoss(), RaSGANLoss(), RaLSGANLoss(), RaHingeLoss()]


@pytest.mark.parametrize("conditioning", ["concat", "projection", "auxiliary"])
@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: type(o).__name__)
def test_every_objective_trains_with_every_conditioning(conditioning, objective):
    seed_everything(0)
    model = DCGAN(num_classes=K, conditioning=conditioning, objective=objective, max_generator_steps=2, **TINY)
    before = [p.clone() for p in model.generator.parameters()]
    fit(model)
    assert model.generator_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))


@pytest.mark.parametrize(
    "options",
    [
        dict(discriminator_spectral_norm=True, objective=HingeLoss(), discriminator_norm="none"),
        dict(r1_penalty_weight=1.0, discriminator_norm="none", reuse_fake_for_generator=True),
        dict(diff_augment="color,translation", generator_ema_decay=0.9),
        dict(architecture="resnet"),
        dict(architecture="resnet", conditioning="auxiliary", discriminator_norm="layer", channels_last=True),
    ],
    ids=["sn-hinge", "r1-fast-path", "diffaugment-ema", "resnet", "resnet-acgan"],
)
def test_conditioning_with_the_engines_options(options):
    seed_everything(0)
    fit(DCGAN(num_classes=K, max_generator_steps=2, **dict(TINY, **options)))


@pytest.mark.parametrize("conditioning", ["concat", "projection", "auxiliary"])
def test_conditioning_under_bf16_mixed_precision(conditioning):
    seed_everything(0)
    model = fit(DCGAN(num_classes=K, conditioning=conditioning, max_generator_steps=2, **TINY), precision="bf16-mixed")
    assert model.generator_step == 2 and int(model.nonfinite_steps) == 0


def test_wgan_gp_penalizes_the_conditional_critic_with_the_real_labels():
    seed_everything(0)
    model = WGANGP(num_classes=K, max_generator_steps=2, n_critic=2, **TINY)
    calls = []
    model.discriminator.register_forward_pre_hook(lambda m, args: calls.append(args[1].clone()))
    real, fake = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    labels, fake_labels = torch.tensor([0, 1, 2, 3]), torch.tensor([3, 2, 1, 0])
    model._noise_rng = torch.Generator().manual_seed(0)
    model.regularized_discriminator_loss(TrainingStep(real, labels, torch.zeros(4, 4), fake, fake_labels))
    # one joint forward (LayerNorm critic) of real + fake with their labels, then the interpolates with the real ones
    assert [c.tolist() for c in calls] == [[0, 1, 2, 3, 3, 2, 1, 0], [0, 1, 2, 3]]
    fit(model)


def test_vanilla_mlp_gan_is_conditional_too():
    seed_everything(0)
    fit(VanillaGAN(num_classes=K, image_shape=(1, 8, 8), hidden_dims=(16,), conditioning="concat", max_generator_steps=2))


# ---------------------------------------------------------------------------------------------- sampling, checkpoints
def test_sample_with_labels_fixed_labels_and_the_datas_class_frequencies():
    model = DCGAN(num_classes=K, **TINY)
    assert model.sample_labels[:6].tolist() == [0, 1, 2, 3, 0, 1]  # the fixed grid's labels
    z = torch.randn(3, 4)
    assert torch.equal(model.sample(z=z, labels=2), model.sample(z=z, labels=torch.tensor([2, 2, 2])))
    assert model.sample(labels=torch.tensor([0, 1])).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 4\)"):
        model.sample(2, labels=4)
    with pytest.raises(ValueError, match="one label per image"):
        model.sample(3, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs a conditional model"):
        DCGAN(**TINY).sample(2, labels=1)

    class Skewed(RandomImages):  # 3 of 4 images are class 1
        def setup(self, stage=None):
            super().setup(stage)
            labels = self.train_set.tensors[1]
            labels[labels != 1] = torch.where(torch.arange(len(labels))[labels != 1] % 3 == 0, 0, 1)

    model.hparams.max_generator_steps = model.max_generator_steps = 1
    Trainer(**tiny_trainer_kwargs()).fit(model, Skewed(**LABELLED))
    assert model.class_frequencies[1] > 0.6 and model.class_frequencies[2] == 0 == model.class_frequencies[3]
    drawn = model.draw_labels(4000, torch.Generator().manual_seed(0))
    assert torch.allclose(torch.bincount(drawn, minlength=K) / 4000.0, model.class_frequencies, atol=0.03)


def test_a_conditional_checkpoint_reloads_and_samples_by_label(tmp_path):
    seed_everything(0)
    model = fit(DCGAN(num_classes=K, conditioning="auxiliary", max_generator_steps=2, **TINY))
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    loaded = DCGAN.load_from_checkpoint(tmp_path / "c.ckpt", weights_only=True)
    assert (loaded.num_classes, loaded.conditioning) == (K, "auxiliary")
    z = torch.randn(3, 4)
    assert torch.equal(loaded.sample(z=z, labels=torch.tensor([0, 1, 3])), model.sample(z=z, labels=torch.tensor([0, 1, 3])))
    assert torch.equal(loaded.class_frequencies, model.class_frequencies)


# ---------------------------------------------------------------------------------------------- refusals
def test_what_cannot_combine_is_refused_naming_both_options():
    with pytest.raises(ValueError, match="InfoGAN with num_classes/conditioning"):
        InfoGAN(num_classes=10, generator_width=8, discriminator_width=8)
    with pytest.raises(ValueError, match="conditioning='concat' needs num_classes > 0"):
        DCGAN(conditioning="concat", **TINY)
    with pytest.raises(ValueError, match="conditioning"):
        DCGAN(num_classes=K, conditioning="film", **TINY)
    with pytest.raises(ValueError, match="num_classes=1 is not conditional"):
        DCGAN(num_classes=1, **TINY)
    with pytest.raises(ValueError, match="upsample='nearest' is a DCGAN-network option"):
        DCGAN(architecture="resnet", upsample="nearest", **TINY)


def test_data_and_model_class_counts_must_agree():
    with pytest.raises(ValueError, match="model's num_classes=3 does not match the datamodule's num_classes=4"):
        Trainer(**tiny_trainer_kwargs()).fit(DCGAN(num_classes=3, max_generator_steps=1, **TINY), RandomImages(**LABELLED))


def test_unlabelled_batches_and_out_of_range_labels_are_refused():
    gen, disc = MLPGenerator(4, (1, 8, 8), (8,), num_classes=K), MLPDiscriminator((1, 8, 8), (8,), num_classes=K)
    model = GAN(gen, disc, latent_dim=4, num_classes=K, max_generator_steps=1)
    unlabelled = RandomImages(n=32)
    unlabelled.train_dataloader = lambda: torch.utils.data.DataLoader(torch.rand(32, 1, 8, 8), batch_size=8)
    with pytest.raises(ValueError, match="needs labelled batches"):
        Trainer(**tiny_trainer_kwargs()).fit(model, unlabelled)
    model = GAN(gen, disc, latent_dim=4, num_classes=K, max_generator_steps=1)
    with pytest.raises(ValueError, match="holds label 5"):
        Trainer(**tiny_trainer_kwargs()).fit(model, _Relabelled())


class _Relabelled(RandomImages):
    """Labels up to 5 while the datamodule does not say how many classes it has."""

    def __init__(self):
        super().__init__(n=32)

    def setup(self, stage=None):
        super().setup(stage)
        self.train_set.tensors[1].copy_(torch.arange(32) % 6)


# ---------------------------------------------------------------------------------------------- real MNIST
def test_a_conditional_dcgan_on_real_mnist_obeys_its_labels(mnist_dir):
    from lit_gans.callbacks.features import MNISTClassifier
    from lit_gans.datamodules import MNISTDataModule

    seed_everything(0)
    dm = MNISTDataModule(mnist_dir, download=False, batch_size=64)
    # concat (Mirza & Osindero): the label reaches G's input directly, the fastest to take hold in a short run;
    # projection and AC-GAN condition G through BatchNorm gains, which take longer (benchmarks/quality.py)
    model = DCGAN(num_classes=10, conditioning="concat", generator_width=16, discriminator_width=16, latent_dim=32,
                  max_generator_steps=400)  # fmt: skip
    Trainer(**tiny_trainer_kwargs()).fit(model, dm)
    labels = torch.arange(10).repeat_interleave(20)
    classifier = MNISTClassifier.pretrained().eval()
    with torch.no_grad():
        predicted = classifier.logits(model.sample(labels=labels)).argmax(1)
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy > 0.4, accuracy  # chance is 0.1; about 0.6 here

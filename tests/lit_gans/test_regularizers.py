"""Weight clipping and the gradient penalty against independent computations."""

import pytest
import torch
from torch import nn

from lit_gans.networks import DCGANDiscriminator
from lit_gans.regularizers import clip_weights_, fraction_at_clip_bound, gradient_penalty, interpolate_real_fake, r1_penalty


def critic(channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return DCGANDiscriminator((channels, 16, 16), width=4, norm="layer")


@pytest.mark.parametrize("channels", [1, 3])  # Mimicry's GP hard-codes 3 channels and fails on MNIST
def test_penalty_equals_a_per_sample_loop(channels):
    d = critic(channels).double()
    real, fake = torch.randn(5, channels, 16, 16).double(), torch.randn(5, channels, 16, 16).double()
    eps = torch.rand(5).double()
    x_hat = eps.view(5, 1, 1, 1) * real + (1 - eps.view(5, 1, 1, 1)) * fake
    penalty, norms = gradient_penalty(d, real, fake, x_hat=x_hat)

    expected = []
    for i in range(5):  # independent: one sample at a time, plain backward, no create_graph
        x = x_hat[i : i + 1].clone().requires_grad_(True)
        d(x).sum().backward()
        expected.append((x.grad.norm() - 1) ** 2)
        d.zero_grad()
    assert penalty.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)
    assert norms.shape == (5,)


def test_penalty_gradient_reaches_every_critic_weight():
    d = critic()
    penalty, _ = gradient_penalty(d, torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16))
    penalty.backward()
    grads = {n: p.grad for n, p in d.named_parameters()}
    # biases before piecewise-linear activations move no input gradient (zero second derivative); every weight
    # must receive a gradient from the penalty
    missing = [n for n, g in grads.items() if (g is None or g.abs().sum() == 0) and not n.endswith("bias")]
    assert len(grads) == 7  # two convolutions, the layer norm, the head
    assert missing == []


def test_interpolation_draws_one_epsilon_per_sample():
    real, fake = torch.ones(6, 3, 4, 4), torch.zeros(6, 3, 4, 4)
    x_hat = interpolate_real_fake(real, fake, torch.Generator().manual_seed(0))
    per_sample = x_hat.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))  # one eps within a sample
    assert per_sample[:, 0].unique().numel() == 6 and (per_sample >= 0).all() and (per_sample <= 1).all()


def test_penalty_is_zero_for_a_unit_gradient_critic():
    w = torch.randn(16)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 1, bias=False))
    with torch.no_grad():
        lin[1].weight.copy_(w / w.norm())
    penalty, norms = gradient_penalty(lin, torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4))
    assert penalty.item() == pytest.approx(0, abs=1e-10) and torch.allclose(norms, torch.ones(3))


def test_clip_weights_bounds_every_parameter():
    d = DCGANDiscriminator((1, 8, 8), width=4)  # BatchNorm weights start near 1: they are clipped too
    clip_weights_(d, 0.01)
    assert all(p.abs().max() <= 0.01 for p in d.parameters())
    assert fraction_at_clip_bound(d, 0.01) > 0.5


def test_r1_penalty_equals_a_per_sample_loop():
    d = critic(3).double()
    real = torch.randn(4, 3, 16, 16).double()
    penalty, norms = r1_penalty(d, real)
    expected = []
    for i in range(4):  # independent: one sample at a time, plain backward
        x = real[i : i + 1].clone().requires_grad_(True)
        d(x).sum().backward()
        expected.append(x.grad.pow(2).sum())
        d.zero_grad()
    assert penalty.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)
    torch.testing.assert_close(norms.double(), torch.stack(expected).sqrt(), rtol=1e-5, atol=0)


def test_r1_weight_adds_half_gamma_times_the_penalty_to_the_discriminator_step():
    import copy

    from gan_testing import RandomImages, tiny_trainer_kwargs
    from lightning.pytorch import Callback, Trainer

    from lit_gans import DCGAN
    from lit_gans.objectives import bce_discriminator_loss

    gamma = 10.0
    model = DCGAN(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4,
                  discriminator_norm="none", r1_penalty_weight=gamma, n_critic=2, max_generator_steps=1,
                  discriminator_optimizer=lambda p: torch.optim.SGD(p, lr=1.0))  # fmt: skip
    seen = {}
    original = model.discriminator_loss

    def recording(step):
        seen.setdefault("inputs", (step.real.clone(), step.fake.clone()))
        return original(step)

    model.discriminator_loss = recording

    class FirstDStep(Callback):  # the first batch is a D step only (k=2)
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                seen["before"] = copy.deepcopy(pl_module.discriminator)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 0:
                seen["after"] = [p.detach().clone() for p in pl_module.discriminator.parameters()]

    Trainer(callbacks=[FirstDStep()], **tiny_trainer_kwargs()).fit(model, RandomImages(n=8, batch_size=4))
    d, (real, fake) = seen["before"], seen["inputs"]
    loss = bce_discriminator_loss(d(real), d(fake)) + gamma / 2 * r1_penalty(d, real)[0]
    grads = torch.autograd.grad(loss, list(d.parameters()))
    for p0, g, p1 in zip(d.parameters(), grads, seen["after"]):  # SGD with lr 1: after = before - gradient
        torch.testing.assert_close(p1, p0.detach() - g, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="without BatchNorm"):
        DCGAN(r1_penalty_weight=1.0, discriminator_width=4, generator_width=4)
    with pytest.raises(ValueError, match="r1_penalty_weight=-1.0"):
        DCGAN(r1_penalty_weight=-1.0, discriminator_norm="none", discriminator_width=4, generator_width=4)


def fp16_trainer(**kwargs):
    """A Trainer whose precision plugin is real float16 AMP with a loss scaler. On CPU, ``precision="16-mixed"``
    becomes bf16 (with a warning), so the plugin is built explicitly, as on a GPU."""
    from gan_testing import tiny_trainer_kwargs
    from lightning.pytorch import Trainer
    from lightning.pytorch.plugins import MixedPrecision

    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    return Trainer(plugins=[plugin], **tiny_trainer_kwargs(**kwargs))


def test_float16_is_refused_for_wgan_gp_and_r1_naming_the_option_and_precision():
    from gan_testing import TINY, RandomImages

    from lit_gans import DCGAN, WGANGP

    trainer = fp16_trainer()
    assert trainer.precision == "16-mixed" and trainer.precision_plugin.scaler is not None
    wgan_gp = WGANGP(max_generator_steps=1, **TINY)
    with pytest.raises(ValueError, match=r"gradient_penalty_weight=10\.0.*precision='16-mixed'.*bf16-mixed") as err:
        trainer.fit(wgan_gp, RandomImages(n=16))
    assert wgan_gp.generator_step == 0 and "underflow" in str(err.value)
    # R1 (the engine's option): refused at the start of the fit too, before any data is prepared
    r1 = DCGAN(discriminator_norm="none", r1_penalty_weight=1.0, max_generator_steps=1, **TINY)
    with pytest.raises(ValueError, match=r"r1_penalty_weight=1\.0.*precision='16-mixed'.*bf16-mixed"):
        fp16_trainer().fit(r1, RandomImages(n=16))
    assert r1.generator_step == 0


def test_float16_refusal_where_the_penalty_is_computed_and_bfloat16_is_fine():
    d = critic()
    real, fake = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    for fn in (lambda: gradient_penalty(d, real, fake), lambda: r1_penalty(d, real)):
        with torch.autocast("cpu", dtype=torch.float16), pytest.raises(ValueError, match="float16 autocast"):
            fn()
    with pytest.raises(ValueError, match="float16 tensors"):
        r1_penalty(critic().half(), real.half())
    expected, _ = gradient_penalty(d, real, fake, x_hat=real)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty, _ = gradient_penalty(d, real, fake, x_hat=real)
    assert penalty.dtype == torch.float32 and penalty.item() == pytest.approx(expected.item(), rel=0.05)


def test_bf16_mixed_trains_wgan_gp():
    from gan_testing import TINY, RandomImages, tiny_trainer_kwargs
    from lightning.pytorch import Trainer

    from lit_gans import WGANGP

    model = WGANGP(max_generator_steps=1, n_critic=1, **TINY)
    Trainer(precision="bf16-mixed", **tiny_trainer_kwargs()).fit(model, RandomImages(n=16))
    assert model.generator_step == 1 and int(model.nonfinite_steps) == 0


# ---------------------------------------------------------------------------------------------- Regularizer parts
class _Model:
    """What a regularizer asks of a model: D as a function of the images, and the per-rank noise generator."""

    def __init__(self, d):
        self.discriminator, self._trainer = d, None
        self.rng = torch.Generator().manual_seed(7)

    def critic_of(self, labels):
        return lambda images: self.discriminator(images)

    def _noise_generator(self):
        return self.rng


def test_r2_penalty_is_r1s_contract_on_the_fakes():
    from lit_gans.regularizers import r2_penalty

    d = critic().double()
    fake = torch.randn(4, 1, 16, 16).double()
    penalty, norms = r2_penalty(d, fake)
    expected = []
    for i in range(4):  # independent: one sample at a time, plain backward
        x = fake[i : i + 1].clone().requires_grad_(True)
        d(x).sum().backward()
        expected.append(x.grad.square().sum())
        d.zero_grad()
    assert penalty.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)  # summed in float32
    assert torch.allclose(norms.double(), torch.stack(expected).sqrt(), rtol=1e-6)


def test_r1_r2_and_the_gradient_penalty_as_regularizers():
    from lit_gans.regularizers import R1, R2, GradientPenalty, r2_penalty
    from lit_gans.step import TrainingStep

    d = critic()
    model = _Model(d)
    step = TrainingStep(real=torch.randn(4, 1, 16, 16), labels=None, z=torch.zeros(4, 2), fake=torch.randn(4, 1, 16, 16))
    term, logs = R1(gamma=3.0).discriminator_term(model, step)
    assert torch.allclose(term, 1.5 * r1_penalty(d, step.real)[0]) and torch.equal(logs["r1_penalty"], term.detach() / 1.5)
    term, logs = R2(gamma=3.0).discriminator_term(model, step)
    assert torch.allclose(term, 1.5 * r2_penalty(d, step.fake)[0]) and "r2_penalty" in logs
    term, logs = GradientPenalty(weight=10.0).discriminator_term(model, step)
    expected, norms = gradient_penalty(d, step.real, step.fake, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(term, 10 * expected) and torch.allclose(logs["gradient_norm"], norms.mean())
    assert R1(1.0).generator_term(model, step) is None


def test_lecam_equals_the_references_formula_with_its_debiased_averages():
    from lit_gans.regularizers import LeCam
    from lit_gans.step import TrainingStep

    lecam, decay = LeCam(weight=0.3, decay=0.9), 0.9
    biased_real = biased_fake = 0.0
    g = torch.Generator().manual_seed(0)
    for t in range(1, 6):
        real_out, fake_out = torch.randn(8, generator=g) + 1, torch.randn(8, generator=g) - 1
        step = TrainingStep(torch.zeros(8, 1, 2, 2), None, torch.zeros(8, 2), torch.zeros(8, 1, 2, 2))
        step.real_output, step.fake_output = real_out, fake_out
        term, logs = lecam.discriminator_term(None, step)
        # lecam_loss.py: assign_moving_average(zero_debias=True) before the loss, then the two hinge-squares
        biased_real = decay * biased_real + (1 - decay) * real_out.mean().item()
        biased_fake = decay * biased_fake + (1 - decay) * fake_out.mean().item()
        ema_real, ema_fake = biased_real / (1 - decay**t), biased_fake / (1 - decay**t)
        expected = (torch.relu(real_out - ema_fake) ** 2).mean() + (torch.relu(ema_real - fake_out) ** 2).mean()
        assert term.item() == pytest.approx(0.3 * expected.item(), rel=1e-5)
        assert logs["lecam_ema_real"].item() == pytest.approx(ema_real, rel=1e-5)
    restored = LeCam(weight=0.3, decay=0.9)
    restored.load_state_dict(lecam.state_dict())  # the averages survive a checkpoint
    assert restored.updates.item() == 5 and restored.biased_real.item() == pytest.approx(biased_real)


def test_lazy_regularization_counts_its_own_steps():
    from lit_gans.regularizers import R1

    r1 = R1(gamma=1.0, interval=4)
    due = []
    for _ in range(9):
        due.append(r1.due("discriminator"))
        r1.step_done("discriminator")
    assert due == [True, False, False, False, True, False, False, False, True]
    restored = R1(gamma=1.0, interval=4)
    restored.load_state_dict(r1.state_dict())
    assert restored.due("discriminator") is False and restored.discriminator_steps.item() == 9


def test_regularizers_rebuild_from_their_config_and_nothing_else_does():
    from lit_gans.regularizers import LeCam, R1, Regularizer

    for reg in (R1(2.0, interval=16), LeCam(0.3, decay=0.95)):
        rebuilt = Regularizer.from_config(reg.to_config())
        assert type(rebuilt) is type(reg) and rebuilt.init_args() == reg.init_args()
    with pytest.raises(ValueError, match="does not name a lit_gans.regularizers.Regularizer class"):
        Regularizer.from_config({"class_path": "os.system", "init_args": {}})

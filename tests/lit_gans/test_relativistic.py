"""The engine's step contract with the relativistic objectives: the G step's extra D forward only when the objective
needs it, the G update depending on the real batch exactly then, every model option, real MNIST, exact resume,
checkpoints that rebuild the objective, and critics as callables in the penalties."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from gan_testing import TINY, RandomImages, SaveAt, tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer, seed_everything

from lit_gans import DCGAN, InfoGAN
from lit_gans.objectives import HingeLoss, NonSaturatingLoss, RaHingeLoss, RaLSGANLoss, RaSGANLoss, RSGANLoss
from lit_gans.regularizers import gradient_penalty, r1_penalty

RELATIVISTIC = [RSGANLoss, RaSGANLoss, RaLSGANLoss, RaHingeLoss]


class CountDiscriminatorForwards(Callback):
    """D forwards of the first batch (one D update and the G update after it, with n_critic=1)."""

    def on_train_start(self, trainer, pl_module):
        self.calls = 0
        self.handle = pl_module.discriminator.register_forward_hook(self.count)

    def count(self, *args):
        self.calls += 1

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.handle.remove()
        trainer.should_stop = True


@pytest.mark.parametrize(
    "objective,discriminator_norm,expected",
    [
        (NonSaturatingLoss, "batch", 3),  # D update: D(real), D(fake); G update: D(fake)
        (RaSGANLoss, "batch", 4),  # and D(real) in the G update, separately: BatchNorm sees pure batches
        (HingeLoss, "none", 2),  # one joint D forward in the D update, one D(fake)
        (RaLSGANLoss, "none", 2),  # one joint forward in each update
    ],
)
def test_the_generator_step_runs_d_on_real_images_only_for_objectives_that_need_it(objective, discriminator_norm, expected):
    counter = CountDiscriminatorForwards()
    model = DCGAN(objective=objective(), discriminator_norm=discriminator_norm, **dict(TINY, image_shape=(1, 16, 16)))
    Trainer(**tiny_trainer_kwargs(callbacks=[counter])).fit(model, RandomImages(n=32, image_shape=(1, 16, 16)))
    assert model.generator_step == 1 and counter.calls == expected


class ScaledImages(RandomImages):
    """RandomImages times ``scale``: the same shapes and order, other real images."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def setup(self, stage=None):
        super().setup(stage)
        images, labels = self.train_set.tensors
        self._set_tensors(images * self.scale, labels)


def generator_after_one_step(objective, scale):
    seed_everything(0)
    frozen = lambda p: torch.optim.SGD(p, lr=0.0)  # noqa: E731 - D unchanged by its update: only G's loss differs
    # no BatchNorm in D: it would normalize the scale of the real batch away
    model = DCGAN(objective=objective(), discriminator_optimizer=frozen, discriminator_norm="none", max_generator_steps=1, **TINY)
    Trainer(**tiny_trainer_kwargs()).fit(model, ScaledImages(scale, n=32))
    return torch.cat([p.detach().flatten() for p in model.generator.parameters()])


@pytest.mark.filterwarnings("ignore:discriminator_optimizer has lr=0")
@pytest.mark.parametrize("objective", [NonSaturatingLoss, HingeLoss, *RELATIVISTIC])
def test_the_generator_update_depends_on_the_real_batch_exactly_for_relativistic_losses(objective):
    # far-apart real batches: RaHinge's G gradient depends on D(real) only through which hinges are active
    a, b = generator_after_one_step(objective, 1.0), generator_after_one_step(objective, 1000.0)
    if objective.needs_real_output:
        assert not torch.equal(a, b)
    else:
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(discriminator_spectral_norm=True, discriminator_norm="none", r1_penalty_weight=1.0),
        dict(diff_augment="color,translation,cutout", generator_ema_decay=0.9),
        dict(reuse_fake_for_generator=True, channels_last=True, n_critic=2),
    ],
    ids=["plain", "spectral_norm+r1", "diff_augment+ema", "fast_path"],
)
@pytest.mark.parametrize("objective", RELATIVISTIC, ids=lambda c: c.__name__)
def test_relativistic_losses_train_with_every_option(objective, options):
    model = DCGAN(objective=objective(), max_generator_steps=3, **TINY, **options)
    before = {name: flat(getattr(model, name)) for name in ("generator", "discriminator")}
    Trainer(**tiny_trainer_kwargs(precision="bf16-mixed")).fit(model, RandomImages(n=64))
    assert model.generator_step == 3 and int(model.nonfinite_steps) == 0
    # both networks trained (not every parameter: a relativistic loss cancels D's output bias)
    assert all(not torch.equal(flat(getattr(model, name)), value) for name, value in before.items())


def flat(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


def test_a_relativistic_dcgan_trains_on_real_mnist(mnist_dir):
    from lit_gans.datamodules import MNISTDataModule

    seed_everything(0)
    model = DCGAN(objective=RaLSGANLoss(), max_generator_steps=40, generator_width=8, discriminator_width=8)
    Trainer(**tiny_trainer_kwargs()).fit(model, MNISTDataModule(mnist_dir, download=False, batch_size=64))
    samples = model.sample(64)
    assert samples.shape == (64, 1, 28, 28) and torch.isfinite(samples).all()
    assert samples.std(0).mean() > 0.05  # distinct samples, not one image
    assert int(model.nonfinite_steps) == 0


def test_infogan_takes_a_relativistic_objective():
    model = InfoGAN(objective=RaSGANLoss(), noise_dim=4, categorical_dim=3, continuous_dim=1, q_hidden_dim=8,
                    image_shape=(1, 8, 8), generator_width=4, discriminator_width=4, max_generator_steps=2)  # fmt: skip
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=32))
    assert model.generator_step == 2 and int(model.nonfinite_steps) == 0


def test_mid_epoch_resume_with_a_relativistic_objective_is_bitwise_exact(tmp_path, mnist_dir):
    from lit_gans.datamodules import MNISTDataModule

    def model():
        return DCGAN(objective=RaSGANLoss(), max_generator_steps=25, **dict(TINY, image_shape=(1, 28, 28)))

    def data():
        return MNISTDataModule(mnist_dir, download=False, batch_size=512, seed=3)

    seed_everything(0)
    straight = model()
    Trainer(**tiny_trainer_kwargs()).fit(straight, data())
    seed_everything(0)
    Trainer(callbacks=[SaveAt(tmp_path / "mid.ckpt", 6)], **tiny_trainer_kwargs()).fit(model(), data())
    seed_everything(123)
    resumed = DCGAN.load_from_checkpoint(tmp_path / "mid.ckpt", weights_only=True)  # the objective comes back
    assert isinstance(resumed.objective, RaSGANLoss)
    Trainer(**tiny_trainer_kwargs()).fit(resumed, data(), ckpt_path=tmp_path / "mid.ckpt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_checkpoint_rebuilds_any_objective_without_passing_it_again(tmp_path):
    from lit_gans.objectives import LeastSquaresLoss

    for objective in (RaHingeLoss(), LeastSquaresLoss(-1.0, 1.0, 0.0)):
        model = DCGAN(objective=objective, max_generator_steps=1, **TINY)
        trainer = Trainer(**tiny_trainer_kwargs())
        trainer.fit(model, RandomImages(n=16))
        trainer.save_checkpoint(tmp_path / "m.ckpt")
        assert torch.load(tmp_path / "m.ckpt", weights_only=True)["hyper_parameters"]["objective"]["class_path"]
        loaded = DCGAN.load_from_checkpoint(tmp_path / "m.ckpt")
        assert type(loaded.objective) is type(objective) and vars(loaded.objective) == vars(objective)


def test_penalties_take_any_critic_callable_such_as_one_bound_to_labels():
    torch.manual_seed(0)
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1), torch.nn.Flatten(0))
    scale = torch.tensor([1.0, 3.0])  # the label scales the input: the penalty must see it

    def conditional(x, labels):
        return d(x * scale[labels][:, None, None, None])

    real, fake, labels = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 1, 0])
    critic = partial(conditional, labels=labels)
    expected = []
    for i in range(4):  # per sample, by hand
        x = real[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(d(x * scale[labels[i]]).sum(), x)
        expected.append(g.pow(2).sum())
    r1, _ = r1_penalty(critic, real)
    assert r1.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    gp, norms = gradient_penalty(critic, real, fake, x_hat=real)
    assert gp.item() == pytest.approx(((torch.stack(expected).sqrt() - 1) ** 2).mean().item(), rel=1e-4)
    assert norms.shape == (4,)



@pytest.mark.parametrize("variant", ["VanillaGAN", "DCGANSELU", "WGAN", "WGANGP"])
def test_every_model_takes_a_relativistic_objective(variant):
    import lit_gans

    kwargs = dict(image_shape=(1, 8, 8), latent_dim=4, max_generator_steps=2)
    kwargs.update(hidden_dims=(16,)) if variant == "VanillaGAN" else kwargs.update(generator_width=4, discriminator_width=4)
    model = getattr(lit_gans, variant)(objective=RaLSGANLoss(), **kwargs)
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=64))
    assert model.generator_step == 2 and isinstance(model.objective, RaLSGANLoss) and int(model.nonfinite_steps) == 0

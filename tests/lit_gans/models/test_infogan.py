"""InfoGAN: codes, losses for G and Q, recovery of the categorical code after training on real MNIST."""

import math

import pytest
import torch
import torch.nn.functional as F
from gan_testing import RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer, seed_everything

from lit_gans import InfoGAN
from lit_gans.datamodules import MNISTDataModule
from lit_gans.step import TrainingStep


def test_latent_is_62_noise_10_categories_2_continuous():
    m = InfoGAN()
    assert (m.noise_dim, m.categorical_dim, m.continuous_dim, m.latent_dim) == (62, 10, 2, 74)
    assert (m.lambda_categorical, m.lambda_continuous) == (1.0, 0.1)
    z = m.sample_latent(500)
    one_hot = z[:, 62:72]
    assert torch.equal(one_hot.sum(1), torch.ones(500)) and set(one_hot.unique().tolist()) == {0.0, 1.0}
    assert z[:, 72:].abs().max() <= 1 and z[:, 72:].min() < -0.9
    categories, continuous = m.split_latent(z)
    assert torch.equal(categories, one_hot.argmax(1)) and torch.equal(continuous, z[:, 72:])


def test_information_loss_is_cross_entropy_plus_weighted_gaussian_nll():
    m = InfoGAN(generator_width=4, discriminator_width=4)
    z = m.sample_latent(8)
    logits, mean, log_var = torch.randn(8, 10), torch.randn(8, 2), torch.randn(8, 2) * 0.1
    loss, logs = m.information_loss(logits, mean, log_var, z)
    categories, continuous = m.split_latent(z)
    # -log Q(c'|x) of a factored Gaussian: a sum over the independent codes (as openai/InfoGAN), batch mean
    per_code = 0.5 * (log_var + (continuous - mean) ** 2 / log_var.exp() + math.log(2 * math.pi))
    nll = per_code.sum(dim=1).mean()
    assert loss.item() == pytest.approx((F.cross_entropy(logits, categories) + 0.1 * nll).item(), rel=1e-5)
    assert logs["info_continuous"].item() == pytest.approx(nll.item(), rel=1e-5)
    # with unit variance, lambda 0.1 on the summed NLL trains like the references' 0.1 * MSE over the 2 codes
    unit = torch.zeros(8, 2, requires_grad=True)
    means = mean.clone().requires_grad_(True)
    m.information_loss(logits, means, unit, z)[0].backward()
    mse_means = mean.clone().requires_grad_(True)
    (0.1 * F.mse_loss(mse_means, continuous)).backward()
    assert torch.allclose(means.grad, mse_means.grad, atol=1e-7)
    mse = InfoGAN(generator_width=4, discriminator_width=4, continuous_loss="mse")
    loss, _ = mse.information_loss(logits, mean, log_var, z)
    assert loss.item() == pytest.approx((F.cross_entropy(logits, categories) + 0.1 * F.mse_loss(mean, continuous)).item(), rel=1e-5)


def test_q_head_shares_the_trunk_and_learns_in_both_steps():
    m = InfoGAN(generator_width=4, discriminator_width=4)
    # Q is part of D's optimizer (learns in D steps); G's loss includes the information term (G learns it too)
    _, d_opt = m.configure_optimizers()
    d_params = {id(p) for g in d_opt.param_groups for p in g["params"]}
    assert {id(p) for p in m.discriminator.q_head.parameters()} <= d_params
    z = m.sample_latent(4)
    fake = m.generator(z)
    g_loss, logs = m.generator_loss(TrainingStep(fake.detach(), None, z, fake))
    assert g_loss > logs["g_loss"]  # adversarial + information
    g_loss.backward()
    assert all(p.grad is not None for p in m.generator.parameters())


def test_latent_dim_that_codes_do_not_fit_is_refused():
    with pytest.raises(ValueError, match=r"latent_dim=100 does not fit the InfoGAN codes.*62 \+ 10 \+ 2 = 74"):
        InfoGAN(latent_dim=100)


def test_traversal_grid_has_one_row_per_category():
    m = InfoGAN(generator_width=4, discriminator_width=4)
    images = m.traversal(continuous_index=1, steps=7)
    assert images.shape == (70, 1, 28, 28)
    grid = m.traversal_grid(steps=7)
    pad = 2
    assert grid.shape == (3, 10 * (28 + pad) + pad, 7 * (28 + pad) + pad)
    assert 0 <= grid.min() and grid.max() <= 1
    with pytest.raises(ValueError, match="continuous_index=2"):
        m.traversal(continuous_index=2)


def test_continuous_codes_only_train_sample_and_traverse():
    # categorical_dim=0 is documented as allowed: no categorical term, every sample of the one class 0
    seed_everything(0)
    m = InfoGAN(image_shape=(1, 8, 8), noise_dim=4, categorical_dim=0, continuous_dim=2, q_hidden_dim=8,
                generator_width=4, discriminator_width=4, max_generator_steps=2)
    assert m.latent_dim == 6
    z = m.sample_latent(5)
    categories, continuous = m.split_latent(z)
    assert torch.equal(categories, torch.zeros(5, dtype=torch.long)) and torch.equal(continuous, z[:, 4:])
    fake = m.generator(z)
    loss, logs = m.information_loss(*m.discriminator.forward_with_codes(fake)[1:], z)
    assert set(logs) == {"info_continuous"} and loss.item() == pytest.approx(0.1 * logs["info_continuous"].item())
    Trainer(**tiny_trainer_kwargs()).fit(m, RandomImages(n=32))
    assert m.generator_step == 2 and int(m.nonfinite_steps) == 0
    assert m.sample(3).shape == (3, 1, 8, 8)
    predicted, means = m.predict_codes(m.sample(z=z))
    assert torch.equal(predicted, torch.zeros(5, dtype=torch.long)) and means.shape == (5, 2)
    images = m.traversal(continuous_index=1, steps=4)
    assert images.shape == (4, 1, 8, 8)  # one row: no categorical code to vary
    assert m.traversal_grid(steps=4).shape[0] == 3


def test_q_recovers_the_categorical_code_after_short_training_on_mnist(mnist_dir):
    seed_everything(0)
    m = InfoGAN(generator_width=16, discriminator_width=16, max_generator_steps=150)
    Trainer(**tiny_trainer_kwargs()).fit(m, MNISTDataModule(mnist_dir, download=False, batch_size=32))
    z = m.sample_latent(1000)
    predicted, _ = m.predict_codes(m.sample(z=z))
    accuracy = (predicted == m.split_latent(z)[0]).float().mean().item()
    assert accuracy > 0.8, accuracy  # chance is 0.1; about 0.98 after these 150 steps

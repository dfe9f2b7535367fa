"""WGAN (clipping) and WGAN-GP: the papers' defaults, clipping after every critic update, the penalty in training."""

import pytest
import torch
from gan_testing import RandomImages, TINY, tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer
from torch import nn

from lit_gans import WGAN, WGANGP
from lit_gans.objectives import WassersteinLoss
from lit_gans.step import TrainingStep


def test_wgan_defaults_are_the_papers():
    m = WGAN()
    g_opt, d_opt = m.configure_optimizers()
    assert m.n_critic == 5 and m.clip_value == 0.01 and isinstance(m.objective, WassersteinLoss)
    assert all(isinstance(o, torch.optim.RMSprop) and o.defaults["lr"] == 5e-5 for o in (g_opt, d_opt))


def test_weights_stay_clipped_after_every_critic_update():
    seen = []

    class CheckClip(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(max(p.abs().max().item() for p in pl_module.discriminator.parameters()))

    m = WGAN(clip_value=0.02, n_critic=2, **TINY)
    # a large learning rate would push many weights far outside the box without clipping
    m.default_discriminator_optimizer = (torch.optim.RMSprop, {"lr": 0.05})
    Trainer(callbacks=[CheckClip()], **tiny_trainer_kwargs(max_epochs=1)).fit(m, RandomImages(n=48))
    assert len(seen) == 6 and max(seen) <= 0.02
    assert max(seen) == pytest.approx(0.02)  # the bound is active, so the check is not vacuous


def test_critic_that_scores_real_higher_has_lower_loss():
    m = WGAN(**TINY)
    real, fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    m.discriminator = nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))
    with torch.no_grad():
        m.discriminator[1].weight.fill_(0.01)
    loss_a, logs = m.discriminator_loss(TrainingStep(real + 3, None, None, fake - 3))  # real scored higher
    loss_b, _ = m.discriminator_loss(TrainingStep(real - 3, None, None, fake + 3))
    assert loss_a < loss_b
    assert logs["wasserstein_estimate"] == pytest.approx(-loss_a.item())


def test_paper_schedule_runs_100_critic_updates_early_and_every_500th():
    m = WGAN(paper_schedule=True)
    assert [m.critic_steps_for(g) for g in (0, 24, 25, 26, 499, 500, 501, 1000)] == [100, 100, 5, 5, 5, 100, 5, 100]
    assert WGAN().critic_steps_for(0) == 5


def test_wgan_gp_defaults_and_no_batchnorm():
    m = WGANGP()
    g_opt, d_opt = m.configure_optimizers()
    assert m.n_critic == 5 and m.gradient_penalty_weight == 10.0
    assert all(isinstance(o, torch.optim.Adam) and o.defaults["lr"] == 1e-4 and o.defaults["betas"] == (0.0, 0.9) for o in (g_opt, d_opt))
    assert not any(isinstance(l, nn.modules.batchnorm._BatchNorm) for l in m.discriminator.modules())
    ref = WGANGP(betas=(0.5, 0.9))  # the references' betas
    assert ref.configure_optimizers()[1].defaults["betas"] == (0.5, 0.9)
    with pytest.raises(ValueError, match="discriminator_norm='batch'"):
        WGANGP(discriminator_norm="batch")


def test_wgan_gp_loss_adds_the_weighted_penalty_and_logs_it():
    torch.manual_seed(0)
    m = WGANGP(**TINY)
    real, fake = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    m._noise_rng = torch.Generator().manual_seed(5)
    loss, logs = m.regularized_discriminator_loss(TrainingStep(real, None, None, fake))  # the penalty is a regularizer
    adversarial = m.discriminator(fake).mean() - m.discriminator(real).mean()
    assert loss.item() == pytest.approx((adversarial + 10 * logs["gradient_penalty"]).item(), rel=1e-5)
    assert logs["gradient_penalty"] > 0 and logs["gradient_norm"] > 0


def test_wgan_gp_trains_and_penalty_pulls_gradient_norms_toward_one():
    m = WGANGP(n_critic=1, max_generator_steps=40, gradient_penalty_weight=10.0, **TINY)
    m.default_discriminator_optimizer = (torch.optim.Adam, {"lr": 1e-2, "betas": (0.0, 0.9)})
    norms = []

    class Track(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            norms.append(trainer.callback_metrics["train/gradient_norm"].item())

    Trainer(callbacks=[Track()], **tiny_trainer_kwargs(log_every_n_steps=1)).fit(m, RandomImages(n=64))
    assert abs(sum(norms[-5:]) / 5 - 1) < abs(norms[0] - 1)

"""GradientNormMonitor: the logged norms equal a direct computation on the same optimizer step."""

from __future__ import annotations

import pytest
import torch
from gan_testing import RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer

from lit_gans import WGAN, DCGAN
from lit_gans.callbacks import GradientNormMonitor


class Direct(Callback):
    """Registered after the monitor: sees the same gradients in the same hook and records its own norms."""

    def __init__(self):
        self.pairs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        g_opt = pl_module.optimizers()[0].optimizer
        name, net = ("generator", pl_module.generator) if optimizer is g_opt else ("discriminator", pl_module.discriminator)
        direct = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in net.parameters() if p.grad is not None))
        logged = trainer.callback_metrics[f"grad_norm/{name}"]
        self.pairs.append((name, float(logged), float(direct)))


def test_logged_norms_equal_a_direct_computation():
    direct = Direct()
    model = DCGAN(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4, n_critic=2,
                  max_generator_steps=3)
    Trainer(**tiny_trainer_kwargs(callbacks=[GradientNormMonitor(every_n_generator_steps=1, per_layer=True), direct])).fit(
        model, RandomImages(n=64)
    )
    assert [n for n, _, _ in direct.pairs] == ["discriminator", "discriminator", "generator"] * 3
    for _, logged, computed in direct.pairs:
        assert logged == pytest.approx(computed, rel=1e-5)


def test_throttled_and_clipping_fraction_for_wgan(monkeypatch):
    import lit_gans.callbacks.gradients as gradients

    logged = []
    real = gradients.log_scalars
    monkeypatch.setattr(gradients, "log_scalars", lambda t, m, metrics: logged.append((m.generator_step, sorted(metrics))) or real(t, m, metrics))
    model = WGAN(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4, n_critic=1,
                 max_generator_steps=4)
    trainer = Trainer(**tiny_trainer_kwargs(callbacks=[GradientNormMonitor(every_n_generator_steps=2)]))
    trainer.fit(model, RandomImages(n=64))
    # optimizer steps happen at generator steps 0,0,1,1,2,2,3,3 (D then G): only the even ones are measured
    assert [step for step, _ in logged] == [0, 0, 2, 2]
    assert logged[0][1] == ["grad_norm/discriminator", "wgan/clipped_fraction"]
    assert logged[1][1] == ["grad_norm/generator"]
    assert 0 <= trainer.callback_metrics["wgan/clipped_fraction"] <= 1

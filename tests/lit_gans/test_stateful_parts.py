"""Regularizers and augmentation as parts of every model: lazy intervals, a regularizer of the user's own, ADA's p
from D's confidence (one process and two DDP ranks), state through checkpoints, and the shorthands
(``r1_penalty_weight``, ``diff_augment``, WGAN-GP's ``gradient_penalty_weight``) training exactly as before."""

from __future__ import annotations

import pytest
import torch
from gan_testing import (
    TINY,
    AugmentProbability,
    ConstantCritic,
    RandomImages,
    ResumableRandomImages,
    SaveAt,
    tiny_trainer_kwargs,
)
from lightning.pytorch import Trainer, seed_everything

from lit_gans import DCGAN, GAN, WGANGP
from lit_gans.augment import AdaptiveAugment, DiffAugment
from lit_gans.networks import MLPGenerator
from lit_gans.regularizers import R1, GradientPenalty, LeCam, Regularizer, r1_penalty

NO_BN = dict(TINY, discriminator_norm="none")


def fit(model, steps=None, **trainer_kwargs):
    if steps is not None:
        model.max_generator_steps = steps
    trainer = Trainer(**tiny_trainer_kwargs(**trainer_kwargs))
    trainer.fit(model, RandomImages(n=32, image_shape=model.image_shape, batch_size=4))
    return trainer


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_lazy_r1_acts_every_interval_steps_with_its_weight_times_the_interval():
    seed_everything(0)
    r1 = R1(gamma=2.0, interval=3)
    model = DCGAN(regularizers=[r1], **NO_BN)
    calls = []
    original = r1.discriminator_term
    r1.discriminator_term = lambda m, step: calls.append(r1._steps["discriminator"]) or original(m, step)
    fit(model, steps=7)
    assert calls == [0, 3, 6]  # D steps 0..6, every third from the first
    # on a due step the D loss is the adversarial loss plus 3 x gamma / 2 x R1
    from lit_gans.step import TrainingStep

    real, fake = torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 1, 8, 8) * 2 - 1
    r1._steps["discriminator"] = 9
    loss, logs = model.regularized_discriminator_loss(TrainingStep(real, None, torch.zeros(4, 4), fake))
    plain, _ = model.discriminator_loss(TrainingStep(real, None, torch.zeros(4, 4), fake))
    expected = plain + 3 * 1.0 * r1_penalty(model.critic_of(None), real)[0]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and "r1_penalty" in logs
    r1._steps["discriminator"] = 10
    loss, logs = model.regularized_discriminator_loss(TrainingStep(real, None, torch.zeros(4, 4), fake))
    assert loss.item() == pytest.approx(plain.item(), rel=1e-6) and "r1_penalty" not in logs


class GeneratorWeightNorm(Regularizer):
    """A penalty defined here, outside the package: G's squared weight norm in G's loss, with a running count."""

    def __init__(self, weight: float = 1e-3, interval: int = 1) -> None:
        super().__init__(interval)
        self.weight = weight
        self.register_buffer("terms", torch.zeros((), dtype=torch.long))

    def generator_term(self, model, step):
        norm = sum(p.square().sum() for p in model.generator.parameters())
        self.terms.add_(1)
        return self.weight * norm, {"generator_weight_norm": norm.detach()}


def test_a_regularizer_defined_in_a_test_file_trains_logs_and_keeps_its_state(tmp_path):
    seed_everything(0)
    model = DCGAN(regularizers=[GeneratorWeightNorm(1e-3, interval=2)], **TINY)
    trainer = fit(model, steps=5, log_every_n_steps=1)
    assert model.regularizers[0].terms.item() == 3  # G steps 0, 2, 4
    assert torch.isfinite(trainer.callback_metrics["train/generator_weight_norm"])
    trainer.save_checkpoint(tmp_path / "custom.ckpt")
    fresh = DCGAN(regularizers=[GeneratorWeightNorm(1e-3, interval=2)], **TINY)
    fresh.load_state_dict(torch.load(tmp_path / "custom.ckpt", weights_only=True)["state_dict"])
    assert fresh.regularizers[0].terms.item() == 3 and fresh.regularizers[0].due("generator") is False


def ada_model(score, p=0.0, **kwargs):
    generator = MLPGenerator(4, (1, 8, 8), (8,))
    return GAN(generator, ConstantCritic(score), latent_dim=4, image_shape=(1, 8, 8),
               augment=AdaptiveAugment(p=p, interval=2, speed_images=160, **kwargs))  # fmt: skip


def test_ada_p_rises_with_a_discriminator_that_overfits_and_falls_with_one_that_does_not():
    seed_everything(0)
    overfit = ada_model(score=5.0)
    fit(overfit, steps=8)  # 8 D steps of 4 images: 4 adjustments of +8/160
    assert overfit.augment.p.item() == pytest.approx(4 * 8 / 160) and overfit.augment.rt.item() == 1.0
    healthy = ada_model(score=-5.0, p=0.5)
    fit(healthy, steps=8)
    assert healthy.augment.p.item() == pytest.approx(0.5 - 4 * 8 / 160) and healthy.augment.rt.item() == -1.0
    fixed = ada_model(score=5.0, p=0.3, adaptive=False)
    fit(fixed, steps=8)
    assert fixed.augment.p.item() == pytest.approx(0.3)


def test_ada_p_is_equal_on_two_ranks_and_counts_both(tmp_path):
    model = ada_model(score=5.0)
    model.max_generator_steps = 8
    trainer = Trainer(**tiny_trainer_kwargs(devices=2, strategy="ddp_spawn", callbacks=[AugmentProbability(str(tmp_path))]))
    trainer.fit(model, RandomImages(n=64, image_shape=(1, 8, 8), batch_size=4))
    values = [(tmp_path / f"rank{r}.p").read_text() for r in (0, 1)]
    assert values[0] == values[1]
    p, rt = map(float, values[0].split())
    assert p == pytest.approx(4 * 16 / 160) and rt == 1.0  # 2 ranks x 4 images x 2 D steps per adjustment


def test_p_and_lecam_averages_survive_a_checkpoint_round_trip(tmp_path):
    seed_everything(0)
    model = DCGAN(augment=AdaptiveAugment(interval=1, speed_images=200), regularizers=[LeCam(0.3)], **NO_BN)
    trainer = fit(model, steps=4)
    assert model.augment.p.item() > 0 or model.augment.rt.item() != 0
    trainer.save_checkpoint(tmp_path / "parts.ckpt")
    loaded = DCGAN.load_from_checkpoint(tmp_path / "parts.ckpt", weights_only=True)
    assert isinstance(loaded.augment, AdaptiveAugment) and loaded.augment.init_args()["speed_images"] == 200
    assert isinstance(loaded.regularizers[0], LeCam) and loaded.regularizers[0].weight == 0.3
    for part in ("augment", "regularizers"):
        for (name, a), (_, b) in zip(getattr(model, part).named_buffers(), getattr(loaded, part).named_buffers()):
            assert torch.equal(a, b), name
    assert loaded.augment._p_value == model.augment.p.item()


def test_the_shorthands_train_exactly_as_the_parts_they_stand_for():
    pairs = [
        (lambda: DCGAN(r1_penalty_weight=4.0, **NO_BN), lambda: DCGAN(regularizers=[R1(4.0)], **NO_BN)),
        (lambda: DCGAN(diff_augment="color,translation", **TINY), lambda: DCGAN(augment=DiffAugment("color,translation"), **TINY)),
        (lambda: WGANGP(n_critic=2, **TINY),
         lambda: WGANGP(n_critic=2, gradient_penalty_weight=0.0, regularizers=[GradientPenalty(10.0)], **TINY)),
    ]  # fmt: skip
    for shorthand, explicit in pairs:
        runs = []
        for build in (shorthand, explicit):
            seed_everything(0)
            model = build()
            fit(model, steps=3)
            runs.append(weights(model))
        for key, value in runs[0].items():
            if key.startswith(("generator.", "discriminator.")):
                assert torch.equal(value, runs[1][key]), key
    assert "regularizers" not in DCGAN(r1_penalty_weight=4.0, **NO_BN).hparams  # rebuilt from r1_penalty_weight


def test_a_checkpoint_from_before_the_parts_had_state_still_loads(tmp_path):
    seed_everything(0)
    model = DCGAN(r1_penalty_weight=1.0, **NO_BN)
    trainer = fit(model, steps=2)
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    checkpoint = torch.load(tmp_path / "new.ckpt", weights_only=True)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("regularizers.")}
    torch.save(checkpoint, tmp_path / "old.ckpt")  # what lit-gans 0.1 wrote: R1 had no state
    loaded = DCGAN.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True)
    assert isinstance(loaded.regularizers[0], R1) and loaded.regularizers[0].due("discriminator")
    fit(loaded, steps=3)  # and it trains on


def test_parts_that_need_input_gradients_are_refused_with_batchnorm_and_compile():
    batchnorm = dict(TINY, image_shape=(1, 16, 16))  # D has BatchNorm from its second stage
    with pytest.raises(ValueError, match=r"R1\(gamma=1.0, interval=1\) needs a discriminator without BatchNorm"):
        DCGAN(regularizers=[R1(1.0)], **batchnorm)
    with pytest.raises(ValueError, match="r1_penalty_weight=1.0 needs a discriminator without BatchNorm"):
        DCGAN(r1_penalty_weight=1.0, **batchnorm)
    with pytest.raises(ValueError, match="compile=True is not supported with"):
        DCGAN(regularizers=[R1(1.0)], compile=True, **NO_BN)
    with pytest.raises(ValueError, match="diff_augment and augment both set"):
        DCGAN(diff_augment="color", augment=DiffAugment("cutout"), **TINY)


def test_a_run_with_ada_lecam_and_lazy_r1_resumes_mid_epoch_bitwise(tmp_path):
    def build():
        return DCGAN(
            augment=AdaptiveAugment(p=0.5, interval=2, speed_images=100), regularizers=[LeCam(0.3), R1(1.0, interval=3)],
            max_generator_steps=12, **NO_BN,
        )  # fmt: skip

    def data():
        return ResumableRandomImages(n=40, image_shape=(1, 8, 8), batch_size=4)  # 10 batches an epoch

    seed_everything(0)
    straight = build()
    Trainer(**tiny_trainer_kwargs()).fit(straight, data())
    seed_everything(0)
    first, ckpt = build(), tmp_path / "mid.ckpt"
    Trainer(callbacks=[SaveAt(ckpt, 4)], **tiny_trainer_kwargs()).fit(first, data())  # interrupted in epoch 0
    seed_everything(123)  # another global RNG: the augmentation draws from the checkpointed noise stream
    resumed = build()
    Trainer(**tiny_trainer_kwargs()).fit(resumed, data(), ckpt_path=ckpt)
    assert straight.augment.p.item() != 0.5  # p moved
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # weights, ADA's p and counters, LeCam's averages, R1's step count

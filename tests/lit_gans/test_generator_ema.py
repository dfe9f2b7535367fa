"""The weight-averaged generator (``generator_ema_decay``): the average itself, what uses it, checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch
from gan_testing import RandomImages, TINY, tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer, seed_everything

from lit_gans import DCGAN


class GeneratorHistory(Callback):
    """G's parameters and buffers after every generator step, and the average's after every batch."""

    def __init__(self) -> None:
        self.generator: list[list[torch.Tensor]] = []
        self.buffers: list[list[torch.Tensor]] = []
        self.last_step = 0

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if pl_module.generator_step > self.last_step:
            self.last_step = pl_module.generator_step
            self.generator.append([p.detach().clone() for p in pl_module.generator.parameters()])
            self.buffers.append([b.clone() for b in pl_module.generator.buffers()])


def fit(model, steps: int, callbacks=(), ckpt_path=None, n=32):
    model.max_generator_steps = steps
    trainer = Trainer(callbacks=list(callbacks), **tiny_trainer_kwargs())
    trainer.fit(model, RandomImages(n=n, image_shape=(1, 8, 8), batch_size=4), ckpt_path=ckpt_path)
    return trainer


def test_average_equals_an_independent_computation_with_a_copy_phase():
    seed_everything(0)
    decay, start = 0.8, 2
    model = DCGAN(n_critic=2, generator_ema_decay=decay, generator_ema_start=start, **TINY)
    history = GeneratorHistory()
    fit(model, 6, [history])
    expected = [p.clone() for p in history.generator[0]]
    for step, weights in enumerate(history.generator, start=1):
        for e, w in zip(expected, weights):
            e.copy_(w if step <= start else decay * e + (1 - decay) * w)
    averaged = list(model.generator_ema.module.parameters())
    for e, a, g in zip(expected, averaged, model.generator.parameters()):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(a, g) for a, g in zip(averaged, model.generator.parameters())), "not averaged"
    for b_ema, b in zip(model.generator_ema.module.buffers(), history.buffers[-1]):
        assert torch.equal(b_ema, b)  # buffers copied, not averaged (sample() re-estimates BatchNorm statistics)


def test_batchnorm_statistics_are_re_estimated_for_the_averaged_weights_before_use():
    seed_everything(1)
    model = DCGAN(generator_ema_decay=0.5, **TINY)
    fit(model, 4)
    net = model.generator_ema.module
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    copied = bn.running_mean.clone()
    seen = []
    hook = bn.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].detach().clone())))
    first = model.sample(z=torch.randn(2, 4))
    estimation = [x for training, x in seen if training]
    assert len(estimation) >= 4  # several batches of noise in train mode, then the sample itself in eval mode
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in estimation])
    torch.testing.assert_close(bn.running_mean, means.mean(0))  # the cumulative average over those batches
    assert not torch.allclose(bn.running_mean, copied)  # the raw generator's statistics were replaced
    seen.clear()
    again = model.sample(z=torch.randn(2, 4))
    assert [training for training, _ in seen] == [False]  # weights unchanged: no second estimation
    hook.remove()
    statistics = [b.clone() for b in net.buffers()]
    model._ema_statistics_stale = True  # the same fixed noise gives the same statistics (on every DDP rank too)
    model.sample(2)
    assert all(torch.equal(a, b) for a, b in zip(statistics, net.buffers()))
    assert first.shape == again.shape == (2, 1, 8, 8)


def test_average_is_outside_the_optimizers_and_the_discriminator_step():
    model = DCGAN(n_critic=3, generator_ema_decay=0.9, **TINY)
    averaged = set(model.generator_ema.parameters())
    assert all(not p.requires_grad for p in averaged)
    seen = []

    class BeforeAfterD(Callback):  # D-only batches (k=3) leave the average untouched
        def on_train_batch_start(self, trainer, pl_module, *args):
            self.before = [p.clone() for p in pl_module.generator_ema.parameters()]
            self.step = pl_module.generator_step

        def on_train_batch_end(self, trainer, pl_module, *args):
            unchanged = all(torch.equal(a, b) for a, b in zip(self.before, pl_module.generator_ema.parameters()))
            seen.append((pl_module.generator_step > self.step, unchanged))

    trainer = fit(model, 2, [BeforeAfterD()])
    assert not averaged & {p for o in trainer.optimizers for g in o.param_groups for p in g["params"]}
    assert (False, True) in seen and (True, False) in seen and (False, False) not in seen


def test_sample_uses_the_average_unless_asked_otherwise():
    model = DCGAN(generator_ema_decay=0.9, **TINY)
    with torch.no_grad():
        for p in model.generator_ema.parameters():
            p.add_(0.5)
    z = torch.randn(3, 4)
    model.generator_ema.module.eval(), model.generator.eval()
    assert torch.equal(model.sample(z=z), model.generator_ema.module(z))
    assert torch.equal(model.sample(z=z, ema=False), model.generator(z))
    assert not torch.equal(model.sample(z=z), model.sample(z=z, ema=False))
    with pytest.raises(ValueError, match="generator_ema_decay"):
        DCGAN(**TINY).sample(2, ema=True)


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, float("nan"), 1])
def test_bad_decay_is_refused_with_its_name(decay):
    with pytest.raises(ValueError, match="generator_ema_decay="):
        DCGAN(generator_ema_decay=decay, **TINY)


def test_resume_continues_the_average_exactly_and_load_from_checkpoint_samples_from_it(tmp_path):
    seed_everything(3)
    whole = DCGAN(generator_ema_decay=0.7, **TINY)
    resumed = copy.deepcopy(whole)
    fit(whole, 6, n=12)  # 3 batches an epoch: the checkpoint falls between epochs, where this plain loader resumes
    trainer = fit(resumed, 3, n=12)
    trainer.save_checkpoint(tmp_path / "three.ckpt")
    resumed = DCGAN(generator_ema_decay=0.7, **TINY)
    trainer = fit(resumed, 6, ckpt_path=tmp_path / "three.ckpt", n=12)
    for a, b in zip(whole.generator_ema.state_dict().values(), resumed.generator_ema.state_dict().values()):
        assert torch.equal(a, b)
    trainer.save_checkpoint(tmp_path / "six.ckpt")
    loaded = DCGAN.load_from_checkpoint(tmp_path / "six.ckpt")
    z = torch.randn(2, 4)
    assert torch.equal(loaded.sample(z=z), resumed.sample(z=z))


def test_turning_averaging_on_or_off_when_resuming(tmp_path):
    seed_everything(4)
    plain = DCGAN(**TINY)
    fit(plain, 2).save_checkpoint(tmp_path / "plain.ckpt")
    averaged = DCGAN.load_from_checkpoint(tmp_path / "plain.ckpt", generator_ema_decay=0.9)
    for a, g in zip(averaged.generator_ema.module.parameters(), plain.generator.parameters()):
        assert torch.equal(a, g)  # the average starts from the checkpoint's generator
    assert int(averaged.generator_ema.n_averaged) == 0
    fit(averaged, 3).save_checkpoint(tmp_path / "averaged.ckpt")
    back = DCGAN.load_from_checkpoint(tmp_path / "averaged.ckpt", generator_ema_decay=None)
    assert back.generator_ema is None and back.generator_step == 3


def test_averaging_leaves_training_bitwise_unchanged():
    runs = []
    for decay in (None, 0.9):
        seed_everything(5)
        model = DCGAN(n_critic=2, generator_ema_decay=decay, **TINY)
        fit(model, 3)
        model.sample(4)  # estimating the average's statistics draws from its own noise, not training's
        fit(model, 5)
        runs.append([p.detach().clone() for p in (*model.generator.parameters(), *model.discriminator.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*runs))

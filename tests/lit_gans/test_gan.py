"""The engine: k:1 schedule on real optimizer steps, isolation of G and D updates, budget, resume, sampling."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
from gan_testing import TINY, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy

from lit_gans import GAN, DCGAN
from lit_gans.trainer_plumbing import _require_ddp_unused_parameters
from lit_gans.networks import MLPDiscriminator, MLPGenerator


def tiny_gan(**kwargs) -> GAN:
    kwargs.setdefault("latent_dim", 4)
    z_dim = max(kwargs["latent_dim"], 1)  # so the engine's own check of latent_dim is what a bad value meets
    return GAN(MLPGenerator(z_dim, (1, 8, 8), (16,)), MLPDiscriminator((1, 8, 8), (16,)), **kwargs)


class StepRecorder(Callback):
    """Hooks the raw torch optimizers: records each real step, and G/D weights before and after it."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.violations: list[str] = []

    def on_train_start(self, trainer, pl_module) -> None:
        g_opt, d_opt = (o.optimizer for o in pl_module.optimizers())
        nets = {"G": pl_module.generator, "D": pl_module.discriminator}
        for name, opt in (("G", g_opt), ("D", d_opt)):
            opt.register_step_pre_hook(lambda o, a, k, name=name: self._before(name, nets))
            opt.register_step_post_hook(lambda o, a, k, name=name: self._after(name, nets))

    def _before(self, name, nets) -> None:
        self.snapshot = {k: [p.detach().clone() for p in n.parameters()] for k, n in nets.items()}

    def _after(self, name, nets) -> None:
        self.order.append(name)
        other = "D" if name == "G" else "G"
        if not all(torch.equal(a, b) for a, b in zip(self.snapshot[other], nets[other].parameters())):
            self.violations.append(f"{name} step changed {other}")
        if all(torch.equal(a, b) for a, b in zip(self.snapshot[name], nets[name].parameters())):
            self.violations.append(f"{name} step left {name} unchanged")


@pytest.mark.parametrize("k", [1, 3, 5])
def test_k_to_1_schedule_on_real_optimizer_steps(k):
    batches, recorder = 15, StepRecorder()
    model = tiny_gan(n_critic=k)
    trainer = Trainer(callbacks=[recorder], **tiny_trainer_kwargs(max_epochs=1))
    trainer.fit(model, RandomImages(n=batches * 8))
    assert recorder.order == (["D"] * k + ["G"]) * (batches // k)
    assert recorder.violations == []
    # the optimizers' own step counts agree
    g_opt, d_opt = (o.optimizer for o in model.optimizers())
    assert int(next(iter(d_opt.state.values()))["step"]) == batches
    assert int(next(iter(g_opt.state.values()))["step"]) == batches // k
    assert model.generator_step == int(model.generator_steps) == batches // k
    assert trainer.global_step == batches + batches // k  # Lightning counts both optimizers


def test_batchnorm_networks_keep_the_other_network_bitwise_unchanged():
    recorder = StepRecorder()
    model = DCGAN(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4, n_critic=2)
    Trainer(callbacks=[recorder], **tiny_trainer_kwargs(max_epochs=1)).fit(model, RandomImages(n=48))
    assert recorder.order.count("G") == 3 and recorder.violations == []


def test_generator_step_budget_stops_training():
    model = tiny_gan(n_critic=3, max_generator_steps=4)
    trainer = Trainer(**tiny_trainer_kwargs())  # max_epochs=-1: only the budget can stop it
    trainer.fit(model, RandomImages(n=16))
    assert model.generator_step == 4
    assert trainer.global_step == 4 * (3 + 1)


def test_checkpoint_resume_restores_both_optimizers_and_the_counter(tmp_path):
    seed_everything(1)
    model = tiny_gan(n_critic=2, max_generator_steps=5)
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(model, RandomImages(n=32))
    ckpt = tmp_path / "five.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)
    assert int(saved["state_dict"]["generator_steps"]) == 5

    class CheckRestored(Callback):
        def on_train_start(self, trainer, pl_module):
            self.step_at_start = pl_module.generator_step
            self.states = [copy.deepcopy(o.optimizer.state_dict()) for o in pl_module.optimizers()]

    check = CheckRestored()
    resumed = tiny_gan(n_critic=2, max_generator_steps=8)
    trainer2 = Trainer(callbacks=[check], **tiny_trainer_kwargs())
    trainer2.fit(resumed, RandomImages(n=32), ckpt_path=ckpt)
    assert check.step_at_start == 5
    for restored, original in zip(check.states, saved["optimizer_states"]):  # [generator, discriminator]
        assert restored["state"].keys() == original["state"].keys()
        for key, state in original["state"].items():
            for name, value in state.items():
                assert torch.equal(restored["state"][key][name], value), name
    assert resumed.generator_step == 8


def test_load_state_dict_restores_the_python_counter():
    a, b = tiny_gan(), tiny_gan()
    a.generator_steps.fill_(7)
    a.critic_steps_since_generator.fill_(1)
    b.load_state_dict(a.state_dict())
    assert b.generator_step == 7 and b._critic_steps == 1


def test_metrics_are_logged_against_the_generator_step(tmp_path):
    model = tiny_gan(n_critic=2, max_generator_steps=6)
    logger = CSVLogger(tmp_path, name="run")
    Trainer(**tiny_trainer_kwargs(logger=logger, log_every_n_steps=1)).fit(model, RandomImages(n=32))
    rows = list(csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")))
    keys = set().union(*rows)
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"} <= keys
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps) and max(steps) == 6  # the x-axis is the generator step, not optimizer steps
    assert {int(r["step"]) for r in rows if r.get("train/g_loss")} == {1, 2, 3, 4, 5, 6}
    probs = [float(r["train/d_real"]) for r in rows if r.get("train/d_real")]
    assert all(0 <= p <= 1 for p in probs)  # probabilities for the BCE objective


def test_sample_uses_eval_mode_and_restores_training_mode():
    model = DCGAN(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4)
    model.train()
    z = torch.randn(6, 4)
    out = model.sample(z=z)
    assert model.generator.training
    assert out.shape == (6, 1, 8, 8) and out.min() >= -1 and out.max() <= 1
    # eval-mode BatchNorm: a sample does not depend on the rest of its batch
    assert torch.allclose(model.sample(z=z[:1]), out[:1], atol=1e-6)
    assert torch.equal(model.sample(), model.sample())  # fixed noise buffer
    assert model.sample_noise.shape == (64, 4) and "sample_noise" in model.state_dict()
    assert model.sample(5).shape[0] == 5


def test_noise_is_uniform_in_minus_one_one_when_asked():
    z = tiny_gan(latent_distribution="uniform").sample_latent(1000)
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.9 and z.max() > 0.9


def test_noise_stream_depends_on_seed_and_rank():
    a, b = tiny_gan(noise_seed=3), tiny_gan(noise_seed=3)
    assert torch.equal(a.sample_latent(4), b.sample_latent(4))
    c = tiny_gan(noise_seed=4)
    assert not torch.equal(tiny_gan(noise_seed=3).sample_latent(4), c.sample_latent(4))


def test_gradient_clipping_by_value_reaches_the_optimizer():
    seen = []

    class Spy(Callback):
        def on_train_start(self, trainer, pl_module):
            for o in pl_module.optimizers():
                # post-hook: the clipped gradients are still there after the update (Lightning runs the closure,
                # and the clipping, inside optimizer.step, after any pre-hook)
                o.optimizer.register_step_post_hook(
                    lambda opt, a, k: seen.append(max(p.grad.abs().max().item() for g in opt.param_groups for p in g["params"] if p.grad is not None))
                )

    model = tiny_gan(gradient_clip_val=1e-4, gradient_clip_algorithm="value")
    Trainer(callbacks=[Spy()], **tiny_trainer_kwargs(max_epochs=1)).fit(model, RandomImages(n=32))
    assert seen and max(seen) <= 1e-4 + 1e-12


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_critic": 0}, "n_critic=0"),
        ({"latent_dim": -1}, "latent_dim=-1"),
        ({"latent_distribution": "cauchy"}, "latent_distribution='cauchy'"),
        ({"max_generator_steps": 0}, "max_generator_steps=0"),
        ({"gradient_clip_val": -1.0}, "gradient_clip_val=-1.0"),
    ],
)
def test_bad_arguments_are_rejected_with_their_name(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        tiny_gan(**kwargs)


def test_data_shape_mismatch_is_reported_at_setup():
    model = tiny_gan(image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match=r"image_shape=\(3, 8, 8\).*image_shape=\(1, 8, 8\)"):
        Trainer(**tiny_trainer_kwargs(max_epochs=1)).fit(model, RandomImages(n=16))


def test_ddp_strategy_is_made_safe_for_two_networks():
    strategy = DDPStrategy()
    _require_ddp_unused_parameters(strategy)
    assert strategy._ddp_kwargs["find_unused_parameters"] is True
    with pytest.raises(ValueError, match="static_graph"):
        _require_ddp_unused_parameters(DDPStrategy(static_graph=True))


def test_default_optimizers_are_adam_2e4_beta_05():
    g_opt, d_opt = tiny_gan().configure_optimizers()
    for opt in (g_opt, d_opt):
        assert isinstance(opt, torch.optim.Adam)
        assert opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5, 0.999)
    model = tiny_gan()
    g_opt, _ = model.configure_optimizers()
    assert {id(p) for g in g_opt.param_groups for p in g["params"]} == {id(p) for p in model.generator.parameters()}


def test_lr_schedulers_step_once_per_generator_step():
    model = tiny_gan(
        n_critic=2,
        max_generator_steps=3,
        generator_lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
        discriminator_lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
    )
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=32))
    for opt in model.optimizers():
        assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.5**3)


def test_fast_attribute_path_keeps_module_registration():
    # the engine bypasses nn.Module.__setattr__ only for Lightning's per-hook `_current_fx_name`
    model = tiny_gan()
    model._current_fx_name = "training_step"
    assert model._current_fx_name == "training_step" and "_current_fx_name" not in model._modules
    model.extra_head = torch.nn.Linear(2, 2)
    model.extra_weight = torch.nn.Parameter(torch.zeros(1))
    assert "extra_head" in model._modules and "extra_weight" in model._parameters


def test_uint8_batches_from_a_loader_of_ones_own_train_as_their_float_values():
    """A package dataset holds uint8 images; in a DataLoader of the user's own (no datamodule to convert them) the
    model trains on them exactly as on their floats in [-1, 1]."""
    from torch.utils.data import DataLoader, TensorDataset

    from lit_gans.datamodules.base import uint8_to_unit_range

    images = torch.randint(0, 256, (32, *TINY["image_shape"]), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    weights = []
    for data in (images, uint8_to_unit_range(images)):
        torch.manual_seed(0)
        model = DCGAN(**TINY, max_generator_steps=2)
        Trainer(**tiny_trainer_kwargs()).fit(model, DataLoader(TensorDataset(data), batch_size=16))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(*weights)

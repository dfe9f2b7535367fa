"""The fast-path options: joint discriminator forward, channels-last, compile, bf16 autocast, batched data."""

from __future__ import annotations

import copy

import pytest
import torch
from gan_testing import RandomImages, TINY, tiny_trainer_kwargs
from lightning.pytorch import Trainer, seed_everything

from lit_gans import DCGAN, GAN, WGANGP, VanillaGAN
from lit_gans.datamodules.base import InMemoryDataset, collate_batch
from lit_gans.networks import MLPDiscriminator, MLPGenerator
from lit_gans.step import TrainingStep


def tiny_gan(**kwargs) -> GAN:
    return GAN(MLPGenerator(4, (1, 8, 8), (16,)), MLPDiscriminator((1, 8, 8), (16,)), latent_dim=4, **kwargs)


def test_joint_forward_is_on_exactly_when_legal():
    assert WGANGP(**TINY).joint_discriminator_forward  # LayerNorm critic
    bn = dict(TINY, image_shape=(1, 16, 16))  # 16 px: a second stage, with BatchNorm
    assert not DCGAN(**bn).joint_discriminator_forward  # BatchNorm: real and fake must stay apart
    with pytest.raises(ValueError, match="joint_discriminator_forward=True needs a discriminator without BatchNorm"):
        DCGAN(joint_discriminator_forward=True, **bn)


def test_joint_forward_gives_the_same_outputs_as_two_forwards():
    joint = WGANGP(**TINY)
    separate = WGANGP(joint_discriminator_forward=False, **TINY)
    separate.load_state_dict(joint.state_dict())
    real, fake = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    step = TrainingStep(real, None, torch.zeros(6, 4), fake)
    for a, b in zip(joint.discriminate(step), separate.discriminate(step)):
        assert torch.allclose(a, b, atol=1e-6)


def test_channels_last_networks_and_batches():
    model = DCGAN(channels_last=True, max_generator_steps=2, generator_ema_decay=0.9, **TINY)
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=32))
    for net in (model.discriminator, model.generator, model.generator_ema):
        conv = next(m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.weight.shape[-1] > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.generator_step == 2


def test_wgan_gp_trains_under_bf16_autocast_with_a_finite_penalty():
    model = WGANGP(max_generator_steps=2, n_critic=2, **TINY)
    trainer = Trainer(**tiny_trainer_kwargs(precision="bf16-mixed", log_every_n_steps=1))
    trainer.fit(model, RandomImages(n=64))
    assert torch.isfinite(trainer.callback_metrics["train/gradient_penalty"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not bf16 weights


def test_compile_keeps_state_dict_keys_and_is_refused_for_gradient_penalties():
    model = VanillaGAN(image_shape=(1, 8, 8), latent_dim=4, hidden_dims=(16,), compile=True, max_generator_steps=2)
    keys = set(model.state_dict())
    Trainer(**tiny_trainer_kwargs()).fit(model, RandomImages(n=32))
    assert set(model.state_dict()) == keys and model.generator_step == 2
    with pytest.raises(ValueError, match="compile=True is not supported for WGANGP"):
        WGANGP(compile=True, **TINY)


def test_in_memory_dataset_reads_a_batch_with_one_index():
    images, labels = torch.randn(10, 1, 4, 4), torch.arange(10)
    ds = InMemoryDataset(images, labels)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_batch)
    x, y = next(iter(loader))
    assert torch.equal(x, images[:4]) and torch.equal(y, labels[:4])
    assert torch.equal(ds[3][0], images[3])  # single items still work


def _generator_forwards(model, batches: int) -> int:
    calls = []
    model.generator.register_forward_hook(lambda *_: calls.append(1))
    Trainer(**tiny_trainer_kwargs(max_steps=-1, limit_train_batches=batches, max_epochs=1)).fit(model, RandomImages(n=64))
    return len(calls)


@pytest.mark.parametrize("n_critic", [1, 3])
def test_reusing_the_fake_batch_saves_one_generator_forward_per_generator_step(n_critic):
    # 6 batches = 6 D steps and 6 / n_critic G steps; each G step normally runs its own generator forward
    plain = _generator_forwards(tiny_gan(n_critic=n_critic), 6)
    reused = _generator_forwards(tiny_gan(n_critic=n_critic, reuse_fake_for_generator=True), 6)
    assert plain == 6 + 6 // n_critic and reused == 6


def test_reused_fake_gives_the_generator_update_of_a_hand_written_step():
    """One batch, k=1: D steps on G(z).detach(), then G steps on the updated D's score of the very same G(z)."""
    seed_everything(0)
    model = tiny_gan(noise_seed=7, reuse_fake_for_generator=True, max_generator_steps=1)
    reference = copy.deepcopy(model)
    data = RandomImages(n=8, batch_size=8)
    Trainer(**tiny_trainer_kwargs()).fit(model, data)

    g_opt, d_opt = reference.configure_optimizers()
    G, D, objective = reference.generator, reference.discriminator, reference.objective
    real = data.train_set.tensors[0]
    z = torch.randn((8, 4), generator=torch.Generator().manual_seed(7))
    fake = G(z)
    d_loss = objective.discriminator_loss(D(real), D(fake.detach()))
    d_opt.zero_grad()
    d_loss.backward()
    d_opt.step()
    g_opt.zero_grad()
    objective.generator_loss(D(fake)).backward()
    g_opt.step()
    for name in ("generator", "discriminator"):
        for a, b in zip(getattr(model, name).parameters(), getattr(reference, name).parameters()):
            assert torch.allclose(a, b, atol=1e-6), name

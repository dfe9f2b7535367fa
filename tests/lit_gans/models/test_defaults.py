"""Each variant's default n_critic, objective and optimizers are the ones its docstring documents."""

import pytest
import torch

from lit_gans import DCGAN, DCGANSELU, LSGAN, WGAN, WGANGP, InfoGAN, VanillaGAN
from lit_gans import objectives as O

ADAM_DCGAN = (torch.optim.Adam, 2e-4, (0.5, 0.999))
EXPECTED = {
    # model: (n_critic, objective, generator optimizer, discriminator optimizer)
    VanillaGAN: (1, O.NonSaturatingLoss, ADAM_DCGAN, ADAM_DCGAN),
    DCGAN: (1, O.NonSaturatingLoss, ADAM_DCGAN, ADAM_DCGAN),
    DCGANSELU: (1, O.NonSaturatingLoss, ADAM_DCGAN, (torch.optim.Adam, 5e-5, (0.5, 0.999))),
    WGAN: (5, O.WassersteinLoss, (torch.optim.RMSprop, 5e-5, None), (torch.optim.RMSprop, 5e-5, None)),
    WGANGP: (5, O.WassersteinLoss, (torch.optim.Adam, 1e-4, (0.0, 0.9)), (torch.optim.Adam, 1e-4, (0.0, 0.9))),
    LSGAN: (1, O.LeastSquaresLoss, ADAM_DCGAN, ADAM_DCGAN),
    InfoGAN: (1, O.NonSaturatingLoss, (torch.optim.Adam, 1e-3, (0.5, 0.999)), ADAM_DCGAN),
}


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_documented_defaults(cls):
    n_critic, objective, *optimizers = EXPECTED[cls]
    kwargs = {} if cls is VanillaGAN else {"generator_width": 4, "discriminator_width": 4}
    model = cls(**kwargs)
    assert model.n_critic == n_critic and type(model.objective) is objective
    for opt, (opt_cls, lr, betas) in zip(model.configure_optimizers(), optimizers):
        assert type(opt) is opt_cls and opt.defaults["lr"] == lr
        if betas is not None:
            assert opt.defaults["betas"] == betas


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_checkpoint_of_a_python_built_model_resumes_with_weights_only(cls, tmp_path):
    # Lightning resumes with torch.load(weights_only=True): hparams must hold no objects (objective, networks)
    from gan_testing import RandomImages, tiny_trainer_kwargs
    from lightning.pytorch import Trainer

    kwargs = {"image_shape": (1, 8, 8), "max_generator_steps": 1}
    if cls is not VanillaGAN:
        kwargs.update(generator_width=4, discriminator_width=4, n_critic=1)
    if cls is LSGAN:
        kwargs.update(a=-1.0, b=1.0, c=0.0)  # the "pearson" preset: rebuilt from its own arguments
    trainer = Trainer(**tiny_trainer_kwargs())
    trainer.fit(cls(**kwargs), RandomImages(n=8, image_shape=(1, 8, 8), batch_size=4))
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    resumed = cls(**{**kwargs, "max_generator_steps": 2})
    Trainer(**tiny_trainer_kwargs()).fit(resumed, RandomImages(n=8, image_shape=(1, 8, 8), batch_size=4), ckpt_path=tmp_path / "one.ckpt")
    assert resumed.generator_step == 2
    assert type(cls.load_from_checkpoint(tmp_path / "one.ckpt").objective) is type(resumed.objective)
    if cls is LSGAN:
        assert cls.load_from_checkpoint(tmp_path / "one.ckpt").objective.a == -1.0

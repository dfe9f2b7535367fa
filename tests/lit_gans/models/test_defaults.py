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

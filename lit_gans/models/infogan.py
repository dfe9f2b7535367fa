"""InfoGAN (Chen et al. 2016): disentangled codes learned by maximizing their mutual information with G's output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gans.latent import render_grid
from lit_gans.models.dcgan import DCGAN
from lit_gans.networks import DCGANDiscriminator
from lit_gans.step import TrainingStep
from lit_gans.validation import check_choice, check_float, check_int


class InfoGANDiscriminator(nn.Module):
    """A DCGAN discriminator plus the Q head that shares its convolutional trunk.

    Q predicts the categorical code (logits) and a factored Gaussian over the continuous codes (mean and
    log-variance), as in the paper's appendix: FC 128, BatchNorm, LeakyReLU(0.2), FC out.
    """

    def __init__(self, base: DCGANDiscriminator, categorical_dim: int, continuous_dim: int, hidden_dim: int = 128):
        super().__init__()
        if not hasattr(base, "trunk"):
            raise ValueError(f"InfoGAN's Q head shares a trunk that {type(base).__name__} does not have: use architecture='dcgan' or 'resnet'")
        self.base = base
        self.categorical_dim, self.continuous_dim = categorical_dim, continuous_dim
        in_features = base.feature_dim * base.feature_size**2
        self.q_head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden_dim, categorical_dim + 2 * continuous_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x)

    def forward_with_codes(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """D's logits, Q's categorical logits, continuous means and log-variances, from one trunk pass."""
        h = self.base.trunk(x)
        q = self.q_head(h)
        c, k = self.categorical_dim, self.continuous_dim
        return self.base.head(h).flatten(), q[:, :c], q[:, c : c + k], q[:, c + k :].clamp(-10, 10)


class InfoGAN(DCGAN):
    """InfoGAN on the DCGAN networks: G's input is ``noise_dim`` noise + a ``categorical_dim``-way one-hot code +
    ``continuous_dim`` codes from U[-1, 1] (62 + 10 + 2 for MNIST, as in the paper and the references,
    README Sources 4).

    The information terms ``lambda_categorical * CE(Q_cat(G(z)), c)`` and ``lambda_continuous * NLL(c' | Q(G(z)))``
    (factored Gaussian NLL, or MSE with ``continuous_loss="mse"``) are added to *both* the D loss (so the Q head,
    part of D's optimizer, learns them) and the G loss (so G makes its codes recoverable). Logs
    ``train/info_categorical``, ``train/info_continuous`` and ``train/q_accuracy`` (how often Q recovers the
    categorical code of a fresh sample). Adam with the paper's MNIST rates, G lr 1e-3 and D (with Q) lr 2e-4,
    beta1 0.5; ``n_critic = 1``.

    The Gaussian NLL is **summed** over the continuous codes (and averaged over the batch), as openai/InfoGAN
    does (``Gaussian.logli``, summed again over the codes by ``Product``): the codes are independent, so
    ``-log Q(c'|x)`` of the factored Gaussian, the term of the paper's mutual-information lower bound, is a sum
    over them, and each code keeps its weight whatever their number. It also keeps the references' calibration
    of ``lambda_continuous=0.1``: at unit variance the summed NLL's gradient is that of
    ``0.1 * 0.5 * sum (c' - mean)**2``, which for the 2 MNIST codes equals the PyTorch references'
    ``0.1 * MSE`` (MSE averaged over the 2 codes); an average over the codes would halve it. ``continuous_loss
    ="mse"`` keeps the references' ``F.mse_loss`` (averaged over codes and batch).

    ``categorical_dim=0`` (continuous codes only) is allowed: every sample then belongs to the one class 0
    (:meth:`split_latent`, :meth:`predict_codes`), and :meth:`traversal` has a single row.

    Args:
        noise_dim: incompressible noise dimensions.
        categorical_dim: classes of the categorical code (0 for none).
        continuous_dim: number of continuous codes (0 for none).
        lambda_categorical: weight of the categorical term (1 in the paper).
        lambda_continuous: weight of the continuous term (0.1 in the references).
        continuous_loss: ``gaussian_nll`` (the paper's factored Gaussian) or ``mse``.
        q_hidden_dim: width of Q's hidden layer.
        latent_dim: optional; if given it must equal ``noise_dim + categorical_dim + continuous_dim``.
        **kwargs: any :class:`DCGAN` / :class:`~lit_gans.GAN` argument.

    Example::

        >>> from lit_gans import InfoGAN
        >>> m = InfoGAN(generator_width=8, discriminator_width=8)
        >>> m.latent_dim, m.traversal(steps=5).shape
        (74, torch.Size([50, 1, 28, 28]))
    """

    compile_unsupported = "its Q head runs the discriminator's trunk outside the compiled forward"
    default_generator_optimizer = (torch.optim.Adam, {"lr": 1e-3, "betas": (0.5, 0.999)})
    default_discriminator_optimizer = (torch.optim.Adam, {"lr": 2e-4, "betas": (0.5, 0.999)})

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        noise_dim: int = 62,
        categorical_dim: int = 10,
        continuous_dim: int = 2,
        lambda_categorical: float = 1.0,
        lambda_continuous: float = 0.1,
        continuous_loss: str = "gaussian_nll",
        q_hidden_dim: int = 128,
        latent_dim: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        check_int("noise_dim", noise_dim, minimum=0)
        check_int("categorical_dim", categorical_dim, minimum=0)
        check_int("continuous_dim", continuous_dim, minimum=0)
        total = noise_dim + categorical_dim + continuous_dim
        if latent_dim is not None and latent_dim != total:
            raise ValueError(
                f"latent_dim={latent_dim} does not fit the InfoGAN codes: it must equal noise_dim + categorical_dim "
                f"+ continuous_dim = {noise_dim} + {categorical_dim} + {continuous_dim} = {total}"
            )
        if categorical_dim + continuous_dim == 0:
            raise ValueError("categorical_dim=0 and continuous_dim=0: InfoGAN needs at least one code")
        if kwargs.get("num_classes") or kwargs.get("conditioning"):
            raise ValueError(
                "InfoGAN with num_classes/conditioning: InfoGAN learns its categorical code without labels; use "
                "categorical_dim for it, or DCGAN(num_classes=..., conditioning=...) for a class-conditional GAN"
            )
        for option in ("diff_augment", "augment"):  # Q reads D's trunk directly, past the augmentation hook
            if kwargs.get(option):
                raise ValueError(f"{option} is not supported for InfoGAN: its Q head would see un-augmented images")
        # Set before the engine's __init__, which draws the fixed sample noise through sample_latent.
        self.noise_dim, self.categorical_dim, self.continuous_dim = noise_dim, categorical_dim, continuous_dim
        self.q_hidden_dim = check_int("q_hidden_dim", q_hidden_dim)
        super().__init__(image_shape=image_shape, latent_dim=total, **kwargs)
        self.lambda_categorical = check_float("lambda_categorical", lambda_categorical, inclusive=True)
        self.lambda_continuous = check_float("lambda_continuous", lambda_continuous, inclusive=True)
        self.continuous_loss = check_choice("continuous_loss", continuous_loss, ("gaussian_nll", "mse"))

    def build_discriminator(self, *args: Any, **kwargs: Any) -> nn.Module:
        return InfoGANDiscriminator(super().build_discriminator(*args, **kwargs), self.categorical_dim, self.continuous_dim, self.q_hidden_dim)

    # ------------------------------------------------------------------ codes
    def sample_latent(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        gen = generator if generator is not None else self._noise_generator()
        categories = torch.randint(0, max(self.categorical_dim, 1), (n,), generator=gen, device=gen.device)
        continuous = torch.rand(n, self.continuous_dim, generator=gen, device=gen.device) * 2 - 1
        return self.compose_latent(self.draw_noise(n, self.noise_dim, gen), categories, continuous)

    def compose_latent(self, noise: Tensor, categories: Tensor, continuous: Tensor) -> Tensor:
        """``[noise | one_hot(categories) | continuous]``, the generator input."""
        one_hot = F.one_hot(categories.long(), self.categorical_dim).float() if self.categorical_dim else noise[:, :0]
        return torch.cat([noise, one_hot.to(noise), continuous.to(noise)], dim=1).to(self.device)

    def split_latent(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The categorical code (as class indices; all 0 without a categorical code) and the continuous codes of
        generator inputs ``z``."""
        start = self.noise_dim + self.categorical_dim
        if self.categorical_dim:
            categories = z[:, self.noise_dim : start].argmax(dim=1)
        else:
            categories = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        return categories, z[:, start:]

    def information_loss(self, cat_logits: Tensor, mean: Tensor, log_var: Tensor, z: Tensor) -> tuple[Tensor, dict]:
        """lambda_cat * CE + lambda_cont * (Gaussian NLL or MSE): a variational lower bound on I(c; G(z, c))."""
        categories, continuous = self.split_latent(z)
        logs: dict[str, Tensor] = {}
        loss = cat_logits.new_zeros(())
        if self.categorical_dim:
            ce = F.cross_entropy(cat_logits.float(), categories)
            loss = loss + self.lambda_categorical * ce
            logs["info_categorical"] = ce.detach()
            logs["q_accuracy"] = (cat_logits.argmax(1) == categories).float().mean()
        if self.continuous_dim:
            if self.continuous_loss == "mse":
                cont = F.mse_loss(mean.float(), continuous)
            else:  # negative log-likelihood of a factored Gaussian, constants included: summed over the codes
                var = log_var.float().exp()
                nll = F.gaussian_nll_loss(mean.float(), continuous.float(), var, full=True, reduction="none")
                cont = nll.sum(dim=1).mean()
            loss = loss + self.lambda_continuous * cont
            logs["info_continuous"] = cont.detach()
        return loss, logs

    # ------------------------------------------------------------------ losses
    def discriminator_loss(self, step: TrainingStep) -> tuple[Tensor, dict[str, Tensor]]:
        fake_out, cat_logits, mean, log_var = self.discriminator.forward_with_codes(step.fake)
        loss, logs = self.adversarial_discriminator_loss(self.discriminator(step.real), fake_out)
        info, info_logs = self.information_loss(cat_logits, mean, log_var, step.z)
        logs.update(info_logs)
        return loss + info, logs

    def generator_loss(self, step: TrainingStep) -> tuple[Tensor, dict[str, Tensor]]:
        fake_out, cat_logits, mean, log_var = self.discriminator.forward_with_codes(step.fake)
        real_out = self.discriminator(step.real) if self.objective.needs_real_output else None
        loss = self.objective.generator_loss(fake_out, real_out)
        info, _ = self.information_loss(cat_logits, mean, log_var, step.z)
        return loss + info, {"g_loss": loss}

    # ------------------------------------------------------------------ inspection
    @torch.no_grad()
    def predict_codes(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Q's categorical prediction (class indices; all 0 without a categorical code) and continuous means for
        ``images`` (D in eval mode)."""
        was_training = self.discriminator.training
        self.discriminator.eval()
        try:
            _, cat_logits, mean, _ = self.discriminator.forward_with_codes(images.to(self.device))
        finally:
            self.discriminator.train(was_training)
        if not self.categorical_dim:
            return torch.zeros(images.shape[0], dtype=torch.long, device=mean.device), mean
        return cat_logits.argmax(1), mean

    @torch.no_grad()
    def traversal(
        self,
        continuous_index: int = 0,
        steps: int = 10,
        low: float = -2.0,
        high: float = 2.0,
        noise: Optional[Tensor] = None,
    ) -> Tensor:
        """Images ``(categorical_dim * steps, C, H, W)``: one row per categorical value (one row without a
        categorical code), the continuous code ``continuous_index`` swept from ``low`` to ``high`` along the row
        (the paper's figure 2), one noise vector (``noise`` or a fixed one) and the other continuous codes at 0."""
        if self.continuous_dim and not 0 <= continuous_index < self.continuous_dim:
            raise ValueError(f"continuous_index={continuous_index} must be in [0, {self.continuous_dim})")
        rows = max(self.categorical_dim, 1)
        if noise is None:
            noise = self.draw_noise(1, self.noise_dim, torch.Generator().manual_seed(0))
        noise = noise.reshape(1, self.noise_dim).to(self.device).expand(rows * steps, -1)
        categories = torch.arange(rows, device=self.device).repeat_interleave(steps)
        continuous = torch.zeros(rows * steps, self.continuous_dim, device=self.device)
        if self.continuous_dim:
            continuous[:, continuous_index] = torch.linspace(low, high, steps, device=self.device).repeat(rows)
        return self.sample(z=self.compose_latent(noise, categories, continuous))

    def traversal_grid(self, continuous_index: int = 0, steps: int = 10, low: float = -2.0, high: float = 2.0) -> Tensor:
        """:meth:`traversal` rendered as one image grid ``(C, H', W')`` in [0, 1], ``steps`` images per row."""
        return render_grid(self.traversal(continuous_index, steps, low, high), nrow=steps)


__all__ = ["InfoGAN", "InfoGANDiscriminator"]

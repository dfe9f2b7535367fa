"""The engine: one LightningModule with manual optimization that every GAN variant of the package reuses.

The schedule
------------
One training batch is one discriminator (critic) update, so every D update sees a fresh real batch, as in the
WGAN algorithm (Arjovsky et al. 2017, algorithm 1) and Mimicry's trainer. After every ``n_critic``-th D update
the same batch also runs one generator update. An epoch therefore holds ``len(dataloader)`` D updates and
``len(dataloader) / n_critic`` G updates.

Lightning's ``trainer.global_step`` counts *every* optimizer step (D and G; Lightning-AI/pytorch-lightning#17958),
so the engine keeps its own counter, ``generator_step`` (a checkpointed buffer), takes its budget in generator
steps (``max_generator_steps``) and logs every metric against it (it logs the key ``step``, which Lightning uses
as the loggers' x-axis).

A variant is a choice of networks, :mod:`~lit_gans.objectives` objective, regularization (by overriding
:meth:`GAN.discriminator_loss` / :meth:`GAN.after_discriminator_step`), optimizers and ``n_critic``; it never
copies the loop. Every loss receives one :class:`~lit_gans.step.TrainingStep` (real images, labels, latents,
fakes) and never re-reads the batch.

Beside the loop, in their own modules: the divergence guard (:mod:`lit_gans.divergence`), the weight-averaged
generator (:mod:`lit_gans.averaging`) and what the engine arranges with the Trainer (:mod:`lit_gans.trainer_plumbing`:
DDP, process-group cleanup, atomic checkpoints, the SIGTERM save).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, ClassVar, Optional, Union

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.swa_utils import AveragedModel

from lit_gans.augment import AdaptiveAugment, Augment, AugmentHook
from lit_gans.averaging import AveragedGenerator, EMAUpdate, match_generator_ema
from lit_gans.console import console_callbacks
from lit_gans.divergence import DivergenceGuard, NonFiniteLossError
from lit_gans.hardware import warn_if_bf16_is_emulated
from lit_gans.loggers import WANDB_RUN_KEY, wandb_run_of
from lit_gans.networks.conditional import resolve_conditioning
from lit_gans.networks.layers import has_batchnorm, spectral_norm_
from lit_gans.objectives import NonSaturatingLoss, Objective
from lit_gans.preemption import training_loop_started
from lit_gans.regularizers import R1, Regularizer, check_penalty_precision
from lit_gans.step import TrainingStep, split_batch
from lit_gans.trainer_plumbing import (
    GENERATOR_STEP,
    StopOnSignal,
    preemption_checkpoint_path,
    prepare_trainer,
    save_and_stop,
    stop_requested,
)
from lit_gans.validation import check_choice, check_float, check_int

#: checkpoint keys naming the model's class and its classes' names, so that a checkpoint alone rebuilds the model
MODEL_CLASS_KEY = "lit_gans_model_class"
CLASS_NAMES_KEY = "lit_gans_class_names"

# The same types LightningCLI exposes as ``OptimizerCallable``/``LRSchedulerCallable``; spelled out here so the
# engine does not need jsonargparse at import time.
OptimizerCallable = Callable[[Iterable], Optimizer]
LRSchedulerCallable = Callable[[Optimizer], Any]

LATENT_DISTRIBUTIONS = ("normal", "uniform")


class GAN(DivergenceGuard, AveragedGenerator, LightningModule):
    """Base GAN: a generator, a discriminator (critic), an objective and two optimizers, trained k:1.

    Args:
        generator: maps ``(N, latent_dim)`` to images ``(N, C, H, W)`` in [-1, 1]; ``(z, labels)`` when
            conditional.
        discriminator: maps images to one raw output per sample, shape ``(N,)`` (logits or critic scores);
            ``(images, labels)`` when conditional, returning ``(output, class_logits)`` for ``auxiliary``
            conditioning.
        objective: the adversarial losses (an :class:`~lit_gans.objectives.Objective`, or its ``to_config()``
            dictionary); ``None`` takes the variant's :attr:`default_objective`
            (:class:`~lit_gans.objectives.NonSaturatingLoss` here). Stored in the checkpoint as that dictionary,
            so ``load_from_checkpoint(path)`` rebuilds it.
        latent_dim: size of the generator input.
        latent_distribution: ``normal`` (N(0, 1)) or ``uniform`` (U[-1, 1]) noise.
        n_critic: discriminator updates per generator update (k).
        generator_optimizer: factory ``params -> Optimizer`` for G; ``None`` takes the variant's documented
            default (:attr:`default_generator_optimizer`).
        discriminator_optimizer: the same for D.
        generator_lr_scheduler: optional factory ``optimizer -> LR scheduler``, stepped once per generator step.
        discriminator_lr_scheduler: the same for D, also stepped once per generator step.
        max_generator_steps: stop training after this many generator updates (``None``: no budget).
        gradient_clip_val: clip each network's gradients before its optimizer step (``None``: off).
        gradient_clip_algorithm: ``norm`` or ``value`` (the Keras reference clipped by value at 1.0).
        image_shape: ``(C, H, W)`` the generator produces; checked against the datamodule's at setup.
        num_sample_images: rows of the fixed visualization noise (the ``sample_noise`` buffer).
        noise_seed: seed of the per-rank latent noise generator; ``None`` derives it from the global seed
            (``seed_everything``). Rank ``r`` draws from ``noise_seed + r`` so DDP ranks never share noise.
        joint_discriminator_forward: score real and fake images in one discriminator forward (one larger batch
            instead of two). Only legal when D treats samples independently, so ``None`` (default) turns it on
            exactly when D has no BatchNorm; ``False`` forces two forwards.
        reuse_fake_for_generator: on a batch that also runs the generator update, generate the fake batch once,
            with G's graph: the D update sees it detached, the G update scores it again with the updated D (as
            PyTorch's DCGAN example does). Saves one generator forward per generator update (about 10% of a DCGAN
            iteration, see ``benchmarks/``); the G update then uses the noise of the last D update instead of fresh
            noise, and G's activations are held through the D update.
        channels_last: keep both networks and the real batches in channels-last memory format (faster convolutions
            on CPUs with oneDNN and on tensor-core GPUs; see ``benchmarks/``).
        compile: ``torch.compile`` both networks' forwards in place (state-dict keys unchanged); pays off on long
            runs, costs tens of seconds of compilation at the start.
        discriminator_spectral_norm: spectral normalization (Miyato et al. 2018) of every convolution and linear
            layer of D (:func:`~lit_gans.networks.spectral_norm_`); SNGAN pairs it with ``HingeLoss`` and a
            discriminator without BatchNorm. Under DDP, PyTorch then prints "Grad strides do not match bucket
            view strides" once: the gradient of D's one-channel output layer differs only in the stride of that
            size-1 dimension, the same memory layout, so it is harmless.
        augment: what every image D sees in training, real or generated, in both updates, goes through
            (:mod:`lit_gans.augment`; for small datasets): :class:`~lit_gans.augment.DiffAugment` (a fixed policy)
            or :class:`~lit_gans.augment.AdaptiveAugment` (ADA: its probability ``p`` adapts to D's overfitting,
            logged as ``augment/p`` and ``augment/rt``), or its ``to_config()`` dictionary; stored in the checkpoint.
        diff_augment: shorthand for ``augment=DiffAugment(policy)``, e.g. ``"color,translation,cutout"`` (Zhao et
            al. 2020). ``""`` (default): off.
        regularizers: :class:`~lit_gans.regularizers.Regularizer` terms of the D and G losses (``R1``, ``R2``,
            ``GradientPenalty``, ``LeCam``, or a subclass of your own), or their ``to_config()`` dictionaries;
            each logs its values as ``train/<name>`` and may be lazy (``interval``). Stored in the checkpoint, so
            ``load_from_checkpoint(path)`` and ``--ckpt_path`` rebuild them with their state.
        r1_penalty_weight: shorthand for ``regularizers=[R1(gamma)]``, the R1 penalty (Mescheder et al. 2018)
            ``gamma / 2 * E[||grad D(x)||^2]`` on real images in every discriminator loss (logged as
            ``train/r1_penalty``); 0 (default): off. An input-gradient penalty needs a discriminator without
            BatchNorm and costs one more D forward and a double backward per D step it runs.
        generator_ema_decay: keep an exponential moving average of G's weights, ``G_ema <- decay * G_ema +
            (1 - decay) * G`` after every generator update (Karras et al. 2018; Yazici et al. 2019, "The Unusual
            Effectiveness of Averaging in GAN Training"). ``sample``, and so every monitoring callback, then uses
            the averaged generator (``sample(ema=False)``: the raw one); a BatchNorm generator's statistics are
            re-estimated for the averaged weights before it is used (BigGAN's "standing statistics", with
            ``torch.optim.swa_utils.update_bn`` on fixed noise), since the raw generator's statistics do not fit
            them. ``None`` (default): off.
        generator_ema_start: generator steps during which ``G_ema`` just copies G before averaging starts (early
            weights are far from the later ones; StudioGAN's ``start_iter``).
        check_finite: the divergence guard (:mod:`lit_gans.divergence`): check each loss before its optimizer step;
            a non-finite loss, or one beyond ``max_abs_value``, skips that step (counted in ``train/nonfinite_steps``,
            and said in a warning line, at most one a minute). Costs one host synchronization per optimizer step;
            turn it off for the last bit of GPU speed.
        max_nonfinite_steps: consecutive non-finite steps after which training stops with a
            :class:`NonFiniteLossError` saying which network, at which generator step, and the last finite losses.
        on_nonfinite: ``skip`` (then stop) or ``rollback``: after ``max_nonfinite_steps``, reload the newest valid
            checkpoint and multiply both learning rates by ``rollback_lr_factor`` instead of stopping.
        rollback_lr_factor: learning-rate factor applied at each rollback.
        max_rollbacks: rollbacks allowed in one run; one more divergence then stops with the error.
        max_abs_value: the guard's blow-up limit, for divergence that is not NaN yet: a loss whose magnitude exceeds
            it counts as non-finite, and a parameter or floating buffer (BatchNorm's running statistics included)
            beyond it, checked every 10 generator steps and before every checkpoint, stops or rolls back the run at
            once. Healthy runs stay below about 10 (weights near 1, BatchNorm statistics below 1, losses below 10 in
            the shipped MNIST DCGAN); ``lr=10`` reached 1e8 in 4 steps. ``None``: off (only NaN and inf are caught).
        num_classes: classes of a class-conditional GAN (the networks take labels); 0: unconditional. The fakes of
            a training step are generated for the real batch's labels in a random order (so for the data's class
            frequencies, a balanced sampler's included), a fresh order for the G update; D scores each image with
            the label it is real or was generated for (:attr:`TrainingStep.fake_labels`). The gradient penalty
            and R1 differentiate D with the real labels.
        conditioning: how the networks use the labels: ``concat``, ``projection`` or ``auxiliary``
            (:mod:`lit_gans.networks.conditional`); ``None``: ``projection`` when ``num_classes > 0``. The model's
            network builders pass it on; this engine adds the auxiliary classifier's terms.
        auxiliary_weight: weight of AC-GAN's class cross-entropy (Odena et al. 2017) for ``auxiliary``
            conditioning: ``w * [CE(D_cls(x), y) + CE(D_cls(G(z, y_f)), y_f)]`` joins D's loss and
            ``w * CE(D_cls(G(z, y_f)), y_f)`` G's (the paper's L_C in both players' objectives, weight 1).
        auxiliary_classify_fakes: whether D's auxiliary classifier also learns from the fakes, as in the paper
            (``True``), or from real images only (``False``, StudioGAN's AC-GAN). With the fake term, D and G both
            lower the fakes' class loss and can agree on a class code that real digits do not carry: on MNIST a
            DCGAN AC-GAN's fakes were read as the digit asked for 26% of the time after 10 minutes, against 78%
            after 1,000 steps without it (``benchmarks/quality.py``).

    Example::

        >>> import torch
        >>> from lit_gans import GAN
        >>> from lit_gans.networks import MLPGenerator, MLPDiscriminator
        >>> gan = GAN(MLPGenerator(8, (1, 4, 4), (16,)), MLPDiscriminator((1, 4, 4), (16,)), latent_dim=8)
        >>> gan.sample(3).shape
        torch.Size([3, 1, 4, 4])
    """

    #: ``(optimizer class, keyword arguments)`` used when no ``generator_optimizer`` is given.
    default_generator_optimizer: ClassVar[tuple[type[Optimizer], dict[str, Any]]] = (
        torch.optim.Adam,
        {"lr": 2e-4, "betas": (0.5, 0.999)},
    )
    #: ``(optimizer class, keyword arguments)`` used when no ``discriminator_optimizer`` is given.
    default_discriminator_optimizer: ClassVar[tuple[type[Optimizer], dict[str, Any]]] = (
        torch.optim.Adam,
        {"lr": 2e-4, "betas": (0.5, 0.999)},
    )
    #: why ``compile=True`` cannot work for this variant (``None``: it can).
    compile_unsupported: ClassVar[Optional[str]] = None
    #: the objective used when ``objective`` is ``None``.
    default_objective: ClassVar[type[Objective]] = NonSaturatingLoss
    #: whether ``objective`` is a constructor argument of the variant (LSGAN builds its own from a, b, c), so that
    #: the checkpoint stores it for ``load_from_checkpoint``.
    objective_is_argument: ClassVar[bool] = True
    #: Not hyperparameters: objects (networks, the objective, factories), kept out of ``hparams`` so that
    #: checkpoints hold only tensors and plain types, which Lightning's resume loads with ``weights_only=True``.
    #: The objective goes back in as its plain ``to_config()`` dictionary (variants with
    #: ``objective_is_argument=False`` rebuild theirs from their own arguments, LSGAN's a, b, c).
    _hparams_ignore: ClassVar[list[str]] = [
        "generator",
        "discriminator",
        "objective",
        "generator_optimizer",
        "discriminator_optimizer",
        "generator_lr_scheduler",
        "discriminator_lr_scheduler",
        "regularizers",
        "augment",
    ]

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        objective: Optional[Objective] = None,
        latent_dim: int = 100,
        latent_distribution: str = "normal",
        n_critic: int = 1,
        generator_optimizer: Optional[OptimizerCallable] = None,
        discriminator_optimizer: Optional[OptimizerCallable] = None,
        generator_lr_scheduler: Optional[LRSchedulerCallable] = None,
        discriminator_lr_scheduler: Optional[LRSchedulerCallable] = None,
        max_generator_steps: Optional[int] = None,
        gradient_clip_val: Optional[float] = None,
        gradient_clip_algorithm: str = "norm",
        image_shape: Optional[Sequence[int]] = None,
        num_sample_images: int = 64,
        noise_seed: Optional[int] = None,
        joint_discriminator_forward: Optional[bool] = None,
        reuse_fake_for_generator: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        discriminator_spectral_norm: bool = False,
        diff_augment: str = "",
        augment: Optional[Augment] = None,
        regularizers: Optional[Sequence[Regularizer]] = None,
        r1_penalty_weight: float = 0.0,
        generator_ema_decay: Optional[float] = None,
        generator_ema_start: int = 0,
        check_finite: bool = True,
        max_nonfinite_steps: int = 10,
        on_nonfinite: str = "skip",
        rollback_lr_factor: float = 0.5,
        max_rollbacks: int = 3,
        max_abs_value: Optional[float] = 1e6,
        num_classes: int = 0,
        conditioning: Optional[str] = None,
        auxiliary_weight: float = 1.0,
        auxiliary_classify_fakes: bool = True,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=self._hparams_ignore)
        check_int("latent_dim", latent_dim)
        check_int("n_critic", n_critic)
        check_choice("latent_distribution", latent_distribution, LATENT_DISTRIBUTIONS)
        check_choice("gradient_clip_algorithm", gradient_clip_algorithm, ("norm", "value"))
        check_int("num_sample_images", num_sample_images)
        check_int("max_nonfinite_steps", max_nonfinite_steps)
        check_choice("on_nonfinite", on_nonfinite, ("skip", "rollback"))
        check_float("rollback_lr_factor", rollback_lr_factor)
        check_int("max_rollbacks", max_rollbacks, minimum=0)
        check_float("max_abs_value", max_abs_value, optional=True)
        check_int("max_generator_steps", max_generator_steps, optional=True)
        check_float("gradient_clip_val", gradient_clip_val, optional=True)
        check_int("generator_ema_start", generator_ema_start, minimum=0)
        if generator_ema_decay is not None and not (isinstance(generator_ema_decay, float) and 0 < generator_ema_decay < 1):
            raise ValueError(f"generator_ema_decay={generator_ema_decay!r} is out of range: it must be a float in (0, 1)")
        self.num_classes, self.conditioning = resolve_conditioning(num_classes, conditioning)
        self.auxiliary_weight = check_float("auxiliary_weight", auxiliary_weight, inclusive=True)
        self.auxiliary_classify_fakes = auxiliary_classify_fakes
        self.generator = generator
        self.discriminator = spectral_norm_(discriminator) if discriminator_spectral_norm else discriminator
        if diff_augment and augment is not None:
            raise ValueError(
                "diff_augment and augment both set: diff_augment=POLICY is the shorthand of augment=DiffAugment(POLICY)"
            )
        spec = augment if augment is not None else (diff_augment or None)
        self.augment = Augment.from_config(spec) if spec is not None else None
        if augment is not None:
            self.hparams["augment"] = self.augment.to_config()
        if self.augment is not None:
            self.discriminator.register_forward_pre_hook(AugmentHook(self.augment, self._noise_generator))
        self.objective = Objective.from_config(objective) if objective is not None else self.default_objective()
        config = self.objective.to_config() if objective is not None and self.objective_is_argument else None
        if config is not None:
            self.hparams["objective"] = config
        self.latent_dim = latent_dim
        self.latent_distribution = latent_distribution
        self.n_critic = n_critic
        self.max_generator_steps = max_generator_steps
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        batchnorm_in_d = has_batchnorm(discriminator)
        if joint_discriminator_forward and batchnorm_in_d:
            raise ValueError(
                "joint_discriminator_forward=True needs a discriminator without BatchNorm: one forward over real "
                "and fake together would mix their batch statistics"
            )
        joint = joint_discriminator_forward
        self.joint_discriminator_forward = not batchnorm_in_d if joint is None else joint
        if compile and self.compile_unsupported:
            raise ValueError(f"compile=True is not supported for {type(self).__name__}: {self.compile_unsupported}")
        self.r1_penalty_weight = check_float("r1_penalty_weight", r1_penalty_weight, inclusive=True)
        self.regularizers = nn.ModuleList(Regularizer.from_config(r) for r in regularizers or ())
        self._regularizer_options: dict[int, str] = {}  # what the float16 refusal names
        if regularizers:
            self.hparams["regularizers"] = [r.to_config() for r in self.regularizers]
        for regularizer in self.regularizers:
            self.check_regularizer(regularizer, repr(regularizer), batchnorm_in_d, compile)
        if r1_penalty_weight:
            self.add_regularizer(R1(r1_penalty_weight), f"r1_penalty_weight={r1_penalty_weight}", batchnorm_in_d, compile)
        self.reuse_fake_for_generator = reuse_fake_for_generator
        self.generator_ema: Optional[AveragedModel] = None
        if generator_ema_decay is not None:
            # a copy of G outside every optimizer, so DDP and the optimizers ignore it
            self.generator_ema = AveragedModel(generator, multi_avg_fn=EMAUpdate(generator_ema_decay))
            self.generator_ema.requires_grad_(False)
        self.generator_ema_start = generator_ema_start
        self._ema_statistics_stale = True
        self.channels_last = channels_last
        self.compile_networks = compile
        self.check_finite, self.max_nonfinite_steps = check_finite, max_nonfinite_steps
        self.on_nonfinite, self.rollback_lr_factor = on_nonfinite, rollback_lr_factor
        self.max_rollbacks, self.max_abs_value = max_rollbacks, max_abs_value
        self.register_buffer("nonfinite_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("rollbacks", torch.zeros((), dtype=torch.long))
        self._nonfinite_consecutive = {"discriminator": 0, "generator": 0}
        self._last_finite: dict[str, Optional[float]] = {"discriminator": None, "generator": None}
        self._rollbacks = 0
        self._preemption_saved = False
        self._optimizer_factories = (generator_optimizer, discriminator_optimizer)
        self._check_optimizer_factories()
        self._scheduler_factories = (generator_lr_scheduler, discriminator_lr_scheduler)
        self._noise_rng: Optional[torch.Generator] = None
        self._restored_rng_state: Optional[Tensor] = None
        self._labels_checked = False

        # One counter, two copies: the buffer (`generator_steps`, the checkpoint's key since 0.1, un-shared under
        # CPU ddp_spawn) is what is saved; its Python copy (`_generator_step`, read through the public
        # `generator_step`) drives control flow, so that the hot path never reads a device tensor back to the host.
        # Both change together in the loop and are re-synced from the buffer on load.
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("critic_steps_since_generator", torch.zeros((), dtype=torch.long))
        self._generator_step = 0
        self._critic_steps = 0
        self.register_load_state_dict_post_hook(_sync_counters_from_buffers)
        self.register_buffer(
            "sample_noise", self.sample_latent(num_sample_images, generator=torch.Generator().manual_seed(0))
        )
        if self.num_classes:  # the fixed visualization noise comes with fixed labels: 0, 1, ..., K-1, 0, 1, ...
            self.register_buffer("sample_labels", torch.arange(num_sample_images) % self.num_classes)
            # what sample(labels=None) draws from; set from the datamodule's class counts when a fit starts
            self.register_buffer("class_frequencies", torch.full((self.num_classes,), 1.0 / self.num_classes))

    def add_regularizer(
        self, regularizer: Regularizer, option: str, batchnorm_in_d: Optional[bool] = None, compile: Optional[bool] = None
    ) -> None:
        """Add a regularizer that an argument of the model (``option``, e.g. ``r1_penalty_weight=10``) stands for:
        it is rebuilt from that argument, so it is not stored with the ``regularizers`` a user gave."""
        batchnorm_in_d = has_batchnorm(self.discriminator) if batchnorm_in_d is None else batchnorm_in_d
        compile = self.compile_networks if compile is None else compile
        self.check_regularizer(regularizer, option, batchnorm_in_d, compile)
        self.regularizers.append(regularizer)
        self._regularizer_options[id(regularizer)] = option

    @staticmethod
    def check_regularizer(regularizer: Regularizer, option: str, batchnorm_in_d: bool, compile: bool) -> None:
        if not regularizer.needs_input_gradients:
            return
        if batchnorm_in_d:
            raise ValueError(f"{option} needs a discriminator without BatchNorm: its input-gradient penalty is per sample")
        if compile:
            raise ValueError(f"compile=True is not supported with {option}: its penalty needs a double backward")

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` twice around every hook it calls (~45 times a batch); nn.Module's generic
        # __setattr__ (parameter/module/buffer checks) showed in profiles of the MLP GAN. It is never one of those.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ------------------------------------------------------------------ noise and sampling
    @property
    def generator_step(self) -> int:
        """Number of generator updates done so far (restored from checkpoints)."""
        return self._generator_step

    def _noise_generator(self) -> torch.Generator:
        if self._noise_rng is None or self._noise_rng.device != self.device:
            seed = self.hparams.noise_seed
            base = torch.initial_seed() if seed is None else int(seed)
            rank = self.trainer.global_rank if self._trainer is not None else 0
            self._noise_rng = torch.Generator(device=self.device).manual_seed((base + rank) % 2**63)
            if self._restored_rng_state is not None and rank == 0:
                try:  # continue the checkpointed stream exactly (fails only across device types: then reseed)
                    self._noise_rng.set_state(self._restored_rng_state)
                except RuntimeError:
                    pass
                self._restored_rng_state = None
        return self._noise_rng

    def sample_latent(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """Draw ``n`` generator inputs of shape ``(n, latent_dim)`` from this rank's noise generator.

        Variants with structured inputs (InfoGAN's codes) override this.
        """
        gen = generator if generator is not None else self._noise_generator()
        return self.draw_noise(n, self.latent_dim, gen)

    def draw_noise(self, n: int, dim: int, generator: torch.Generator) -> Tensor:
        """``(n, dim)`` noise of ``latent_distribution`` from ``generator``, on the model's device."""
        shape, device = (n, dim), generator.device
        if self.latent_distribution == "normal":
            return torch.randn(shape, generator=generator, device=device).to(self.device)
        return (torch.rand(shape, generator=generator, device=device) * 2 - 1).to(self.device)

    def draw_labels(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` class labels drawn from :attr:`class_frequencies` (the training data's, once a fit started)."""
        gen = generator if generator is not None else self._noise_generator()
        weights = self.class_frequencies.to(gen.device)
        return torch.multinomial(weights, n, replacement=True, generator=gen).to(self.device)

    def _labels_for(self, n: int, labels: Optional[Union[Tensor, int]], fixed: bool) -> Optional[Tensor]:
        if not self.num_classes:
            if labels is not None:
                raise ValueError("sample(labels=...) needs a conditional model (built with num_classes > 0)")
            return None
        if labels is None:
            return self.sample_labels[:n] if fixed else self.draw_labels(n)
        labels = torch.as_tensor(labels, device=self.device).long()
        if labels.dim() == 0:
            labels = labels.expand(n)
        if labels.shape != (n,):
            raise ValueError(f"sample(labels=...) has shape {tuple(labels.shape)}: it needs one label per image, ({n},)")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if len(bad):
            raise ValueError(f"sample(labels=...) holds {int(bad[0])}: class labels must be in [0, {self.num_classes})")
        return labels

    @torch.no_grad()
    def sample(
        self,
        n: Optional[int] = None,
        z: Optional[Tensor] = None,
        ema: Optional[bool] = None,
        labels: Optional[Union[Tensor, int]] = None,
    ) -> Tensor:
        """Generate images in [-1, 1] with the generator in eval mode (its mode is restored afterwards).

        Args:
            n: number of images from fresh noise; with neither ``n`` nor ``z``, the fixed ``sample_noise`` (and,
                for a conditional model, the fixed ``sample_labels``).
            z: explicit generator inputs ``(N, latent_dim)``.
            ema: use the weight-averaged generator (``generator_ema_decay``); ``None``: whenever there is one.
            labels: for a conditional model, the class of each image (a tensor of class indices, or one int for
                all); ``None`` draws them from the training data's class frequencies (:meth:`draw_labels`).

        Example::

            >>> from lit_gans import DCGAN
            >>> model = DCGAN(num_classes=10, generator_width=8, discriminator_width=8)
            >>> model.sample(4, labels=7).shape, model.sample(labels=torch.tensor([0, 1])).shape
            (torch.Size([4, 1, 28, 28]), torch.Size([2, 1, 28, 28]))
        """
        if ema and self.generator_ema is None:
            raise ValueError("sample(ema=True) needs a model built with generator_ema_decay")
        net = self.averaged_generator() if (ema or ema is None) and self.generator_ema is not None else self.generator
        fixed = z is None and n is None
        if fixed and labels is not None and torch.as_tensor(labels).dim() == 1:
            n = len(labels)  # one fresh latent per given label
        if z is None:
            z = self.sample_noise if n is None else self.sample_latent(n)
        labels = self._labels_for(z.shape[0], labels, fixed)
        was_training = net.training
        net.eval()
        try:
            return self.generate(z.to(self.device), labels, net).float()
        finally:
            net.train(was_training)

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        return self.generate(z, labels)

    def generate(self, z: Tensor, labels: Optional[Tensor] = None, net: Optional[nn.Module] = None) -> Tensor:
        """``G(z)``, or ``G(z, labels)`` for a conditional model (``net``: another generator, the averaged one)."""
        net = self.generator if net is None else net
        return net(z, labels) if self.num_classes else net(z)

    def critic(self, images: Tensor, labels: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        """D's raw output ``(N,)`` on ``images`` (scored with ``labels`` when conditional), and the auxiliary
        classifier's class logits ``(N, K)`` for ``auxiliary`` conditioning (else ``None``)."""
        if not self.num_classes:
            return self.discriminator(images), None
        out = self.discriminator(images, labels)
        return out if self.conditioning == "auxiliary" else (out, None)

    # ------------------------------------------------------------------ losses (override points)
    def discriminate(self, step: TrainingStep) -> tuple[Tensor, Tensor]:
        """D's outputs on the step's real and fake images, each scored with its labels: two forwards, so that
        BatchNorm sees pure batches as in DCGAN, or one over both when ``joint_discriminator_forward`` (no
        BatchNorm in D). They are recorded as ``step.real_output`` / ``step.fake_output`` (for the regularizers and
        ADA), the auxiliary classifier's logits as ``step.real_class_logits`` / ``step.fake_class_logits``."""
        real, fake = step.real, step.fake
        if self.joint_discriminator_forward:
            labels = torch.cat([step.labels, step.fake_labels]) if self.num_classes else None
            out, logits = self.critic(torch.cat([real, fake.to(real.dtype)]), labels)
            n = real.shape[0]
            step.real_output, step.fake_output = out[:n], out[n:]
            if logits is not None:
                step.real_class_logits, step.fake_class_logits = logits[:n], logits[n:]
            return step.real_output, step.fake_output
        step.real_output, step.real_class_logits = self.critic(real, step.labels)
        step.fake_output, step.fake_class_logits = self.critic(fake, step.fake_labels)
        return step.real_output, step.fake_output

    def discriminator_loss(self, step: TrainingStep) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one D update and what to log; ``step.fake = G(step.z)`` carries no graph to G."""
        real_out, fake_out = self.discriminate(step)
        return self.adversarial_discriminator_loss(real_out, fake_out)

    def adversarial_discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective's D loss on D's outputs, with the standard logs (loss, mean D output on real and fake)."""
        loss = self.objective.discriminator_loss(real_out, fake_out)
        logs = {
            "d_loss": loss,
            "d_real": self.objective.interpret(real_out).mean(),
            "d_fake": self.objective.interpret(fake_out).mean(),
        }
        return loss, logs

    def generator_loss(self, step: TrainingStep) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one G update and what to log; gradients reach G through D, whose weights stay frozen.
        D scores the real batch too only when the objective's generator loss needs it (``needs_real_output``,
        the relativistic losses), with the weights the D update just left."""
        real_out, fake_out = self.discriminator_outputs_for_generator(step)
        loss = self.objective.generator_loss(fake_out, real_out)
        return loss, {"g_loss": loss}

    def discriminator_outputs_for_generator(self, step: TrainingStep) -> tuple[Optional[Tensor], Tensor]:
        """``(D(real) or None, D(fake))`` for a G update: one D forward, or the real batch as well (jointly where
        legal) for an objective with ``needs_real_output``."""
        if self.objective.needs_real_output:
            return self.discriminate(step)
        fake_out, step.fake_class_logits = self.critic(step.fake, step.fake_labels)
        return None, fake_out

    def auxiliary_class_loss(self, step: TrainingStep, logs: dict[str, Tensor], discriminator: bool) -> Tensor:
        """AC-GAN's class cross-entropy (Odena et al. 2017, L_C) on the logits the step's D forwards recorded,
        weighted by ``auxiliary_weight``: for G, on the fakes (with the labels they were generated for); for D, on
        the real images (with theirs) and, with ``auxiliary_classify_fakes``, on the fakes too. Logs
        ``class_loss_real``/``class_loss_fake`` and ``class_accuracy_real``/``class_accuracy_fake``."""
        pairs = [("fake", step.fake_class_logits, step.fake_labels)] if self.auxiliary_classify_fakes or not discriminator else []
        if discriminator:
            pairs.insert(0, ("real", step.real_class_logits, step.labels))
        loss = step.fake.new_zeros((), dtype=torch.float32)
        for kind, logits, labels in pairs:
            if logits is None:
                raise RuntimeError(
                    f"auxiliary conditioning: no class logits of the {kind} images were recorded; a loss override must "
                    "score them through GAN.critic/discriminate"
                )
            ce = F.cross_entropy(logits.float(), labels)
            loss = loss + ce
            logs[f"class_loss_{kind}"] = ce.detach()
            logs[f"class_accuracy_{kind}"] = (logits.detach().argmax(1) == labels).float().mean()
        return self.auxiliary_weight * loss

    def regularized_discriminator_loss(self, step: TrainingStep) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`discriminator_loss` plus the engine's terms: the auxiliary classifier's and the regularizers'.
        ADA counts D's confidence on this step's real images."""
        loss, logs = self.discriminator_loss(step)
        if self.conditioning == "auxiliary":
            loss = loss + self.auxiliary_class_loss(step, logs, discriminator=True)
        if isinstance(self.augment, AdaptiveAugment):
            self.augment.accumulate(self._recorded(step.real_output, "AdaptiveAugment", "real"))
        return self._add_regularizer_terms(loss, logs, step, "discriminator")

    def regularized_generator_loss(self, step: TrainingStep) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`generator_loss` plus the auxiliary classifier's term on the fakes and the regularizers'."""
        loss, logs = self.generator_loss(step)
        if self.conditioning == "auxiliary":
            loss = loss + self.auxiliary_class_loss(step, logs, discriminator=False)
        return self._add_regularizer_terms(loss, logs, step, "generator")

    def _add_regularizer_terms(
        self, loss: Tensor, logs: dict[str, Tensor], step: TrainingStep, network: str
    ) -> tuple[Tensor, dict[str, Tensor]]:
        for regularizer in self.regularizers:
            if not regularizer.due(network):
                continue
            term = getattr(regularizer, f"{network}_term")(self, step)
            if term is not None:  # lazy regularization: every `interval` steps, weighted by `interval`
                loss = loss + regularizer.interval * term[0]
                logs.update(term[1])
        return loss, logs

    @staticmethod
    def _recorded(output: Optional[Tensor], who: str, kind: str) -> Tensor:
        if output is None:
            raise RuntimeError(f"{who} needs D's outputs on the {kind} images: a loss override must score them through GAN.discriminate")
        return output

    def after_update(self, network: str) -> None:
        """The engine's bookkeeping after every ``discriminator`` / ``generator`` optimizer step: the regularizers
        count it, and ADA moves ``p`` every ``interval`` D steps from D's confidence summed over the ranks."""
        for regularizer in self.regularizers:
            regularizer.step_done(network)
        if network == "discriminator" and isinstance(self.augment, AdaptiveAugment):
            reduce = None
            if self._trainer is not None and self.trainer.world_size > 1:
                reduce = partial(self.trainer.strategy.reduce, reduce_op="sum")
            self.augment.after_discriminator_step(reduce)

    def critic_of(self, labels: Optional[Tensor]) -> Callable[[Tensor], Tensor]:
        """D's raw output as a function of the images alone, with ``labels`` fixed: what the input-gradient
        penalties differentiate."""
        return lambda images: self.critic(images, labels)[0]

    def after_discriminator_step(self) -> None:
        """Called after every D optimizer step (WGAN clips the critic's weights here)."""

    def critic_steps_for(self, generator_step: int) -> int:
        """D updates to run before generator update number ``generator_step`` (0-based); ``n_critic`` here."""
        return self.n_critic

    def labels_for_fakes(self, labels: Optional[Tensor]) -> Optional[Tensor]:
        """The labels a step's fakes are generated for: the real batch's in a random order (this rank's noise
        generator), so the data's class frequencies without drawing from an estimate of them."""
        if not self.num_classes:
            return None
        gen = self._noise_generator()
        return labels[torch.randperm(labels.shape[0], generator=gen, device=gen.device).to(labels.device)]

    def check_batch_labels(self, labels: Optional[Tensor]) -> Optional[Tensor]:
        """A conditional model needs labelled batches whose labels are class indices below ``num_classes``
        (checked on the first batch of a fit only: the check reads the labels back to the host)."""
        if not self.num_classes:
            return labels
        if labels is None:
            raise ValueError(
                f"num_classes={self.num_classes}: a conditional model needs labelled batches (images, labels), and this "
                "datamodule's batches have no labels"
            )
        if not self._labels_checked:
            self._labels_checked = True
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"num_classes={self.num_classes}, but a training batch holds label {high if high >= self.num_classes else low}: "
                    "the model's num_classes must cover the data's classes"
                )
        return labels.long()

    # ------------------------------------------------------------------ the loop
    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self._budget_reached():
            return
        real, labels = split_batch(batch)
        labels = self.check_batch_labels(labels)
        if self.channels_last and real.dim() == 4:
            real = real.contiguous(memory_format=torch.channels_last)
        n = real.shape[0]
        g_opt, d_opt = self.optimizers()
        z, fake_labels = self.sample_latent(n), self.labels_for_fakes(labels)
        fake_with_graph, rollbacks = None, self._rollbacks
        buffers = self._network_buffers()
        if self.reuse_fake_for_generator and self._critic_steps + 1 >= self.critic_steps_for(self._generator_step):
            fake_with_graph = self.generate(z, fake_labels)  # G's graph is kept for the generator update below
            fake = fake_with_graph.detach()
        else:
            with torch.no_grad():
                fake = self.generate(z, fake_labels)

        self.toggle_optimizer(d_opt)
        try:
            d_loss, logs = self.regularized_discriminator_loss(TrainingStep(real, labels, z, fake, fake_labels))
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            if self._step_is_finite(d_loss, "discriminator", d_opt, buffers):
                d_opt.step()
                self.after_discriminator_step()
        finally:
            self.untoggle_optimizer(d_opt)
        self._critic_steps += 1
        self.critic_steps_since_generator.add_(1)
        self.after_update("discriminator")

        if self._critic_steps >= self.critic_steps_for(self._generator_step):
            self.toggle_optimizer(g_opt)
            buffers = self._network_buffers()
            try:
                if fake_with_graph is not None and self._rollbacks == rollbacks:  # a rollback replaced G's weights
                    fake = fake_with_graph
                else:
                    z, fake_labels = self.sample_latent(n), self.labels_for_fakes(labels)
                    fake = self.generate(z, fake_labels)
                g_loss, g_logs = self.regularized_generator_loss(TrainingStep(real, labels, z, fake, fake_labels))
                g_opt.zero_grad(set_to_none=True)
                self.manual_backward(g_loss)
                if self._step_is_finite(g_loss, "generator", g_opt, buffers):
                    g_opt.step()
            finally:
                self.untoggle_optimizer(g_opt)
            logs.update(g_logs)
            self._critic_steps = 0
            self.critic_steps_since_generator.zero_()
            self._generator_step += 1
            self.generator_steps.add_(1)
            self.after_update("generator")
            if self.generator_ema is not None:
                self.update_generator_ema()
            for scheduler in self._lr_scheduler_list():
                scheduler.step()
            if self._budget_reached():
                self.trainer.should_stop = True
            self._check_for_blowup()

        if self._logging_now():
            # "step" is what Lightning gives the loggers as the step; GENERATOR_STEP names it: a CSV column, W&B's x-axis
            step = float(self._generator_step)
            self.log_dict({"step": step, GENERATOR_STEP: step}, on_step=True, on_epoch=False, batch_size=n)
            self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, on_step=True, on_epoch=False, batch_size=n)
            if isinstance(self.augment, AdaptiveAugment):
                self.log_dict({"augment/p": self.augment.p, "augment/rt": self.augment.rt}, on_step=True, on_epoch=False, batch_size=n)

    def _budget_reached(self) -> bool:
        return self.max_generator_steps is not None and self._generator_step >= self.max_generator_steps

    def on_train_start(self) -> None:
        training_loop_started()  # SIGTERM and Ctrl-C from here on: stop at a batch end, with a checkpoint
        if self._budget_reached():  # a finished run resumed: train nothing, say so
            rank_zero_info(
                f"lit-gans: the budget of max_generator_steps={self.max_generator_steps} generator steps is already "
                f"reached (generator step {self._generator_step}); nothing to train. Raise max_generator_steps to "
                "train on."
            )
            self.trainer.should_stop = True

    def _logging_now(self) -> bool:
        """Whether Lightning sends this batch's logs to the loggers (every ``log_every_n_steps`` batches, and the
        last one). ``self.log`` costs about 0.1 ms a value in Python, which is most of a small MLP GAN's step, so the
        engine only logs when the values go somewhere."""
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def _lr_scheduler_list(self) -> list:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return []
        return list(schedulers) if isinstance(schedulers, (list, tuple)) else [schedulers]

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        # Here, not before opt.step(): under fp16 this hook runs after the GradScaler unscaled the gradients
        # (Lightning-AI/pytorch-lightning#18089).
        if self.hparams.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.hparams.gradient_clip_val,
                gradient_clip_algorithm=self.hparams.gradient_clip_algorithm,
            )

    def _check_optimizer_factories(self) -> None:
        """Build each optimizer once on a dummy parameter, so a bad learning rate fails at construction, named."""
        for name, factory, (cls, kwargs) in zip(
            ("generator_optimizer", "discriminator_optimizer"),
            self._optimizer_factories,
            (self.default_generator_optimizer, self.default_discriminator_optimizer),
        ):
            try:
                opt = (factory or partial(cls, **kwargs))([nn.Parameter(torch.zeros(1))])
            except (ValueError, TypeError) as err:
                raise ValueError(f"{name} is invalid: {err}") from err
            for group in opt.param_groups:
                lr = group.get("lr")
                if isinstance(lr, (int, float)) and not (math.isfinite(lr) and lr >= 0):
                    raise ValueError(f"{name} has lr={lr}: a learning rate must be a finite number >= 0")
                if lr == 0:
                    rank_zero_warn(f"{name} has lr=0: that network will never change")

    def configure_optimizers(self) -> Any:
        optimizers = []
        for net, factory, (cls, kwargs) in zip(
            (self.generator, self.discriminator),
            self._optimizer_factories,
            (self.default_generator_optimizer, self.default_discriminator_optimizer),
        ):
            optimizers.append((factory or partial(cls, **kwargs))(net.parameters()))
        schedulers = [f(opt) for f, opt in zip(self._scheduler_factories, optimizers) if f is not None]
        return (optimizers, schedulers) if schedulers else optimizers

    # ------------------------------------------------------------------ setup checks
    def configure_callbacks(self) -> list:
        # The earliest hook of a fit, before any data is prepared or loaded: refuse a data/model mismatch here.
        shape = getattr(self.trainer.datamodule, "image_shape", None) if self._trainer is not None else None
        if shape is not None and self.image_shape is not None and tuple(shape) != tuple(self.image_shape):
            raise ValueError(
                f"The model's image_shape={tuple(self.image_shape)} does not match the datamodule's "
                f"image_shape={tuple(shape)}; build the model with image_shape={tuple(shape)} (the CLI links it)."
            )
        data_classes = getattr(self.trainer.datamodule, "num_classes", None) if self._trainer is not None else None
        if self.num_classes and data_classes is not None and data_classes != self.num_classes:
            raise ValueError(
                f"The model's num_classes={self.num_classes} does not match the datamodule's num_classes={data_classes}; "
                f"build the model with num_classes={data_classes} (the CLI links it when conditioning is set)."
            )
        if self._trainer is not None and self.trainer.state.fn == "fit":
            for regularizer in self.regularizers:
                if regularizer.needs_input_gradients:
                    option = self._regularizer_options.get(id(regularizer), repr(regularizer))
                    check_penalty_precision(self.trainer, option)
        if self._trainer is None or self.trainer.state.fn != "fit":
            return []
        return [*console_callbacks(self.trainer), StopOnSignal.for_fit()]  # Ctrl-C saves and stops, from here on

    def setup(self, stage: str) -> None:
        prepare_trainer(self.trainer)
        if stage == "fit":
            warn_if_bf16_is_emulated(self.trainer)
        if self.channels_last:
            for net in (self.generator, self.discriminator, self.generator_ema):
                if net is not None:
                    net.to(memory_format=torch.channels_last)
        if self.compile_networks and stage == "fit":
            self.generator.compile()
            self.discriminator.compile()

    def on_fit_start(self) -> None:
        class_counts = getattr(self.trainer.datamodule, "class_counts", None)
        counts = class_counts() if self.num_classes and callable(class_counts) else None
        if counts is not None and len(counts) == self.num_classes and counts.sum() > 0:
            # sample(labels=None) then draws the data's class frequencies
            counts = torch.as_tensor(counts, dtype=torch.float32)
            self.class_frequencies.copy_(counts / counts.sum())
        self._labels_checked = False

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # SIGTERM (SLURM, cloud preemption) or Ctrl-C on any rank: every rank saves where resuming looks first, then stops
        reason = None if self._preemption_saved else stop_requested(self.trainer)
        if reason is not None:
            self._preemption_saved = True
            save_and_stop(self.trainer, self._generator_step, reason)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # what `lit-gans generate` / `evaluate` need to rebuild the model from the file alone
        checkpoint[MODEL_CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"
        names = getattr(self.trainer.datamodule, "class_names", None) if self._trainer is not None else None
        if self.num_classes and names is not None and len(names) == self.num_classes:
            checkpoint[CLASS_NAMES_KEY] = list(map(str, names))
        if self._noise_rng is not None:
            checkpoint["lit_gans_noise_rng_state"] = self._noise_rng.get_state()
        run = wandb_run_of(self.trainer) if self._trainer is not None else None
        if run is not None:
            checkpoint[WANDB_RUN_KEY] = run

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        match_generator_ema(self, checkpoint["state_dict"])
        # a checkpoint from before the regularizers and augmentation had state: they start fresh
        for key, value in self.state_dict().items():
            if key.startswith(("regularizers.", "augment.")):
                checkpoint["state_dict"].setdefault(key, value)
        self._ema_statistics_stale = True
        # Only rank 0 writes checkpoints, so only rank 0 continues its exact noise stream; other ranks re-derive
        # theirs from the seed, which keeps them distinct.
        self._restored_rng_state = checkpoint.get("lit_gans_noise_rng_state")
        self._noise_rng = None


def _sync_counters_from_buffers(module: GAN, incompatible_keys: Any) -> None:
    module._generator_step = int(module.generator_steps)
    module._critic_steps = int(module.critic_steps_since_generator)
    module._nonfinite_consecutive = {"discriminator": 0, "generator": 0}


__all__ = ["GAN", "NonFiniteLossError", "TrainingStep", "preemption_checkpoint_path"]

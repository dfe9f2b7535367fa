"""Shared by the benchmark scripts: the real MNIST data, the variants, a plain PyTorch loop over the very same
networks, and result tables (markdown + JSON)."""

from __future__ import annotations

import copy
import gzip
import json
import os
import resource
import time
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import Callback, Trainer

from lit_gans import DCGAN, GAN, LSGAN, WGAN, WGANGP, InfoGAN, VanillaGAN
from lit_gans.hardware import cpu_description
from lit_gans.objectives import HingeLoss, RaLSGANLoss, RaSGANLoss
from lit_gans.step import TrainingStep

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

VARIANTS: dict[str, Callable[..., GAN]] = {
    "vanilla": lambda **kw: VanillaGAN(**kw),
    "dcgan": lambda **kw: DCGAN(**kw),
    "wgan": lambda **kw: WGAN(**kw),
    "wgan_gp": lambda **kw: WGANGP(**kw),
    "lsgan": lambda **kw: LSGAN(**kw),
    "infogan": lambda **kw: InfoGAN(**kw),
    # the relativistic average losses on the DCGAN networks, against dcgan (BCE) and lsgan
    "rasgan": lambda **kw: DCGAN(objective=RaSGANLoss(), **kw),
    "ralsgan": lambda **kw: DCGAN(objective=RaLSGANLoss(), **kw),
    # class-conditional DCGANs on MNIST's 10 digits, against dcgan (unconditional), and the ResNet networks
    "cgan_concat": lambda **kw: DCGAN(num_classes=10, conditioning="concat", **kw),
    "cgan_projection": lambda **kw: DCGAN(num_classes=10, conditioning="projection", objective=HingeLoss(),
                                          discriminator_spectral_norm=True, discriminator_norm="none", **kw),  # fmt: skip
    "acgan": lambda **kw: DCGAN(num_classes=10, conditioning="auxiliary", **kw),
    "acgan_real_only": lambda **kw: DCGAN(num_classes=10, conditioning="auxiliary", auxiliary_classify_fakes=False, **kw),
    "dcgan_resnet": lambda **kw: DCGAN(architecture="resnet", **kw),  # SNGAN's shapes
    "dcgan_resnet_compact": lambda **kw: DCGAN(architecture="resnet", resnet_layout="compact", **kw),  # 0.1's
}

#: The fast path's model options (with ``Trainer(precision=FAST_PRECISION)``; the joint D forward is on by itself
#: where legal); see the README's speed section. ``compile`` is not in it: it measured slower on this CPU.
FAST_PATH: dict[str, Any] = {"channels_last": True, "reuse_fake_for_generator": True}
FAST_PRECISION = "bf16-mixed"


def fast_model(name: str) -> GAN:
    """Variant ``name`` with the fast-path options."""
    return VARIANTS[name](**FAST_PATH)


def mnist_data_dir(shared: Path, root: Path) -> Path:
    """torchvision's raw layout built from the real MNIST files of ``shared`` (the 10k test split serves as the
    training split: the full 60k split is not available offline)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for kind in ("images-idx3", "labels-idx1"):
        data = gzip.open(shared / f"t10k-{kind}-ubyte.gz").read()
        for split in ("train", "t10k"):
            target = raw / f"{split}-{kind}-ubyte"
            if not target.exists():
                target.write_bytes(data)
    return root


def plain_loop(
    model: GAN, images: torch.Tensor, batch_size: int, d_steps: int, warmup: int, bf16: bool = False, device: str = "cpu"
) -> float:
    """Real images per second of a hand-written loop over copies of ``model``'s networks, optimizers, losses,
    regularizers and k: one fresh real batch per D step, a G step after every ``n_critic`` D steps."""
    model = copy.deepcopy(model).to(device)
    images = images.to(device)
    g_opt, d_opt = model.configure_optimizers()
    G, D = model.generator, model.discriminator
    if model.channels_last:  # the model's own speed options, applied as its setup() would
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if model.compile_networks:
        G.compile()
        D.compile()
    gen = torch.Generator(device).manual_seed(0)
    model._noise_rng = gen
    synchronize = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    clip = getattr(model, "clip_value", None)
    value_clip = model.hparams.gradient_clip_val if model.hparams.gradient_clip_algorithm == "value" else None
    perm = torch.randperm(len(images), device=device)
    start = None
    for step in range(warmup + d_steps):
        if step == warmup:
            synchronize()
            start = time.perf_counter()
        i = (step * batch_size) % (len(images) - batch_size)
        real = images[perm[i : i + batch_size]]
        for p in G.parameters():
            p.requires_grad_(False)
        with torch.autocast(images.device.type, torch.bfloat16, enabled=bf16):
            z = model.sample_latent(batch_size)
            with torch.no_grad():
                fake = G(z)
            d_loss, _ = model.discriminator_loss(TrainingStep(real, None, z, fake))
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        if value_clip:
            torch.nn.utils.clip_grad_value_(D.parameters(), value_clip)
        d_opt.step()
        if clip is not None:
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-clip, clip)
        for p in G.parameters():
            p.requires_grad_(True)
        if (step + 1) % model.n_critic == 0:
            for p in D.parameters():
                p.requires_grad_(False)
            with torch.autocast(images.device.type, torch.bfloat16, enabled=bf16):
                z = model.sample_latent(batch_size)
                g_loss, _ = model.generator_loss(TrainingStep(real, None, z, G(z)))
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            if value_clip:
                torch.nn.utils.clip_grad_value_(G.parameters(), value_clip)
            g_opt.step()
            for p in D.parameters():
                p.requires_grad_(True)
    synchronize()
    return d_steps * batch_size / (time.perf_counter() - start)


class Clock(Callback):
    """Times training batches ``warmup`` .. ``warmup + d_steps`` (every batch is one D step)."""

    def __init__(self, warmup: int, d_steps: int) -> None:
        self.warmup, self.d_steps, self.batches = warmup, d_steps, 0
        self.start = self.elapsed = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.batches == self.warmup:
            _synchronize(pl_module)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        if self.batches == self.warmup + self.d_steps:
            _synchronize(pl_module)
            self.elapsed = time.perf_counter() - self.start
            trainer.should_stop = True


def _synchronize(pl_module) -> None:
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)


def package_run(model, dm, batch_size, d_steps, warmup, precision="32-true", profiler=None, accelerator="cpu") -> float:
    clock = Clock(warmup, d_steps)
    trainer = Trainer(
        max_epochs=-1, accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock], precision=precision,
        profiler=profiler,
    )
    trainer.fit(model, dm)
    return d_steps * batch_size / clock.elapsed


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_description(),  # the model and whether it has native bf16: numbers depend on both
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
    }


def peak_rss_mb() -> float:
    """This process' peak resident memory (MB): ``VmHWM`` where Linux gives it; not ``ru_maxrss``, which a child
    keeps from the parent that forked it (across ``exec`` too), so a measuring subprocess reported its parent's."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.3g}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.0f}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def save_results(name: str, payload: dict[str, Any], table: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    (RESULTS / f"{name}.md").write_text(table + "\n")
    return RESULTS / f"{name}.md"

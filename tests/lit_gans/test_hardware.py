"""bf16 on a CPU that emulates it: detected from the CPU's flags, and a fit asking for it is warned in one line."""

from __future__ import annotations

import warnings

import pytest
from gan_testing import RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Trainer

from lit_gans import DCGAN, hardware

XEON_WITHOUT_BF16 = "model name\t: Intel(R) Xeon(R) CPU @ 2.00GHz\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
ZEN4 = "model name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def cpuinfo(monkeypatch):
    def use(text):
        monkeypatch.setattr(hardware, "_cpuinfo", lambda: text)
        hardware.cpu_has_native_bf16.cache_clear()
        hardware.cpu_description.cache_clear()

    yield use
    hardware.cpu_has_native_bf16.cache_clear()
    hardware.cpu_description.cache_clear()


def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo):
    for text, native in ((XEON_WITHOUT_BF16, False), (ZEN4, True), (GRAVITON3, True), (None, None)):
        cpuinfo(text)
        assert hardware.cpu_has_native_bf16() is native
    cpuinfo(XEON_WITHOUT_BF16)
    assert hardware.cpu_description() == "Intel(R) Xeon(R) CPU @ 2.00GHz (no native bf16)"


def fit_with(precision):
    model = DCGAN(image_shape=(1, 8, 8), generator_width=4, discriminator_width=4, latent_dim=4, max_generator_steps=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(**tiny_trainer_kwargs(precision=precision)).fit(model, RandomImages(image_shape=(1, 8, 8), n=8))
    return [str(w.message) for w in caught if "bf16 instructions" in str(w.message)]


def test_a_bf16_fit_on_a_cpu_that_emulates_it_is_warned_once(cpuinfo):
    cpuinfo(XEON_WITHOUT_BF16)
    [message] = fit_with("bf16-mixed")
    assert "emulated" in message and "--trainer.precision=32-true" in message and "\n" not in message
    assert fit_with("32-true") == []
    cpuinfo(ZEN4)
    assert fit_with("bf16-mixed") == []

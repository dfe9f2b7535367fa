"""BestCheckpoint keeps the checkpoints of the best monitored values, saved at the generator steps they were
measured, with the weights they were measured on, and without Lightning's manual-optimization warning."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from gan_testing import TINY, RandomImages, tiny_trainer_kwargs
from lightning.pytorch import Callback, Trainer

from lit_gans import DCGAN
from lit_gans.callbacks import BestCheckpoint
from lit_gans.callbacks.base import PeriodicCallback, log_scalars
from lit_gans.checkpoints import checkpoint_to_sample
from lit_gans.generate import describe_checkpoint, load_model


class ScriptedMetric(Callback):
    """Logs ``values[step]`` as ``name`` after the generator steps named in ``values``, and remembers the
    generator's weights it 'measured'."""

    def __init__(self, values: dict[int, float], name: str = "fid") -> None:
        self.values, self.name, self.weights = values, name, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = pl_module.generator_step
        if step in self.values and step not in self.weights:
            self.weights[step] = {k: v.clone() for k, v in pl_module.generator.state_dict().items()}
            log_scalars(trainer, pl_module, {self.name: torch.tensor(self.values[step])})


def test_keeps_the_best_steps_with_the_weights_they_were_measured_on(tmp_path):
    metric = ScriptedMetric({2: 5.0, 4: 3.0, 6: 4.0, 8: 1.0, 10: 2.0})
    best = BestCheckpoint(monitor="fid", save_top_k=2, dirpath=tmp_path)
    model = DCGAN(**TINY, n_critic=2, max_generator_steps=11)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(**tiny_trainer_kwargs(callbacks=[metric, best], enable_checkpointing=True)).fit(model, RandomImages())
    assert not [w for w in caught if "manual optimization" in str(w.message)]
    saved = sorted(p.name for p in tmp_path.glob("*.ckpt"))
    assert saved == ["best-fid-generator_step=10.ckpt", "best-fid-generator_step=8.ckpt"]
    assert best.best_model_score == 1.0 and best.best_model_path.endswith("generator_step=8.ckpt")
    for step in (8, 10):
        checkpoint = torch.load(tmp_path / f"best-fid-generator_step={step}.ckpt", weights_only=False)
        restored = DCGAN(**TINY)
        restored.load_state_dict(checkpoint["state_dict"])
        assert restored.generator_step == step
        for key, value in metric.weights[step].items():
            assert torch.equal(restored.generator.state_dict()[key], value), key


def test_mode_max_and_a_metric_never_logged(tmp_path):
    best = BestCheckpoint(monitor="accuracy", mode="max", dirpath=tmp_path / "a")
    model = DCGAN(**TINY, max_generator_steps=3)
    Trainer(**tiny_trainer_kwargs(callbacks=[best], enable_checkpointing=True)).fit(model, RandomImages())
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").glob("*.ckpt"))


def fit_with_best(tmp_path, values, **best_kwargs) -> Path:
    """A fit whose scripted metric logs ``values``; the checkpoint folder, each file's time that of its step."""
    best = BestCheckpoint(dirpath=tmp_path / "checkpoints", **best_kwargs)
    metric = ScriptedMetric(values, name=best.monitor)
    model = DCGAN(**TINY, max_generator_steps=max(values) + 1)
    Trainer(**tiny_trainer_kwargs(callbacks=[metric, best], enable_checkpointing=True)).fit(model, RandomImages())
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):  # file times in step order, whatever the clock's resolution
        step = torch.load(path, weights_only=True)["state_dict"]["generator_steps"]
        os.utime(path, (1e9 + int(step), 1e9 + int(step)))
    return tmp_path / "checkpoints"


def test_a_run_folder_samples_its_best_checkpoint_not_its_newest(tmp_path):
    folder = fit_with_best(tmp_path, {2: 46.0, 4: 40.0, 6: 45.0}, monitor="fid", save_top_k=2)
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["best-fid-generator_step=4.ckpt", "best-fid-generator_step=6.ckpt"]
    assert Path(load_model(folder).checkpoint_path).name == "best-fid-generator_step=4.ckpt"  # FID 40, not the newer 45
    assert describe_checkpoint(folder) == f"{folder / 'best-fid-generator_step=4.ckpt'} (generator step 4)"


def test_a_metric_name_with_a_slash_gives_a_file_in_the_folder_and_max_mode_ranks_it(tmp_path):
    folder = fit_with_best(
        tmp_path, {2: 0.5, 4: 0.9, 6: 0.7}, monitor="conditional/accuracy", mode="max", save_top_k=3
    )
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "best-conditional_accuracy-generator_step=2.ckpt",
        "best-conditional_accuracy-generator_step=4.ckpt",
        "best-conditional_accuracy-generator_step=6.ckpt",
    ]
    assert checkpoint_to_sample(folder).name == "best-conditional_accuracy-generator_step=4.ckpt"  # the highest


def weight_sum(generator: torch.nn.Module) -> torch.Tensor:
    """A 'metric' that is a function of the generator's weights alone, so that a file's weights can be scored."""
    return sum(p.detach().double().sum() for p in generator.parameters()).float()


class WeightSumMetric(PeriodicCallback):
    """Logs :func:`weight_sum` as ``fid`` on the package's metric schedule; remembers each value by step."""

    def __init__(self, **schedule) -> None:
        super().__init__(**schedule)
        self.logged: dict[int, float] = {}

    def run(self, trainer, pl_module) -> None:
        value = weight_sum(pl_module.generator)
        self.logged[pl_module.generator_step] = float(value)
        log_scalars(trainer, pl_module, {"fid": value})


@pytest.mark.parametrize("schedule", [{"every_n_epochs": 1}, {"at_train_end": True}], ids=["epoch end", "train end"])
def test_a_metric_computed_outside_a_batch_saves_the_weights_it_measured(tmp_path, schedule):
    # 64 images in batches of 8: 8 generator steps per epoch, and the budget ends at the second epoch's end
    metric = WeightSumMetric(**schedule)
    best = BestCheckpoint(monitor="fid", save_top_k=3, dirpath=tmp_path)
    model = DCGAN(**TINY, max_generator_steps=16)
    Trainer(**tiny_trainer_kwargs(callbacks=[metric, best], enable_checkpointing=True)).fit(model, RandomImages(n=64))
    expected = [8, 16] if "every_n_epochs" in schedule else [16]
    assert sorted(metric.logged) == expected
    saved = {}
    for path in tmp_path.glob("*.ckpt"):
        restored = DCGAN(**TINY)
        restored.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
        saved[restored.generator_step] = float(weight_sum(restored.generator))  # the metric, recomputed from the file
    assert saved == metric.logged  # every measured step saved (the last one too), with the weights measured


def test_a_fit_whose_monitored_metric_is_never_logged_says_no_best_checkpoint_was_saved(tmp_path):
    """Before: silence (a config's best_checkpoint with --fid=null never saves, and nothing said so)."""
    best = BestCheckpoint(monitor="fid", dirpath=tmp_path)
    with pytest.warns(UserWarning, match=r"BestCheckpoint\(monitor='fid'\): nothing logged fid in this fit, so no best"):
        trainer = Trainer(**tiny_trainer_kwargs(callbacks=[best], enable_checkpointing=True))
        trainer.fit(DCGAN(**TINY, max_generator_steps=2), RandomImages(n=32))
    assert list(tmp_path.iterdir()) == []

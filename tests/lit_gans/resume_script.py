"""Trains a tiny DCGAN for the interruption tests: `python resume_script.py DIR [--resume]`.

Checkpoints every 4 optimizer steps into DIR/ckpt, logs to DIR/logs (CSV), sleeps a little per batch so that a
test can interrupt it mid-run, and stops at 60 generator steps."""

import sys
import time
from pathlib import Path

from gan_testing import RandomImages
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lit_gans import DCGAN
from lit_gans.checkpoints import resolve_checkpoint


class Slow(Callback):
    def on_train_batch_end(self, *args):
        time.sleep(0.05)


def main() -> None:
    out = Path(sys.argv[1])
    seed_everything(0)
    model = DCGAN(image_shape=(1, 8, 8), latent_dim=4, generator_width=4, discriminator_width=4, n_critic=2,
                  max_generator_steps=60)
    trainer = Trainer(
        max_epochs=-1, accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
        logger=CSVLogger(out / "logs", name="run"), log_every_n_steps=1,
        callbacks=[ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=4, save_last=True, save_top_k=1), Slow()],
    )
    ckpt = str(resolve_checkpoint(out / "ckpt")) if "--resume" in sys.argv else None
    trainer.fit(model, RandomImages(n=64, image_shape=(1, 8, 8)), ckpt_path=ckpt)
    print("FINAL_GENERATOR_STEP", model.generator_step, flush=True)


if __name__ == "__main__":
    main()

"""Folder datamodules under 2-process DDP: prepared once into one cache, each rank trains on its own shard."""

from data_testing import write_cat_face
from gan_testing import ShardCheck, tiny_trainer_kwargs
from lightning.pytorch import Trainer

from lit_gans import DCGAN
from lit_gans.datamodules import CatFacesDataModule


def test_cat_faces_are_prepared_once_and_sharded(tmp_path, monkeypatch):
    for i in range(8):
        write_cat_face(tmp_path / "raw" / "CAT_00", f"00000001_00{i}.jpg", angle_deg=4 * i)
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    dm = CatFacesDataModule(tmp_path / "raw", image_size=32, min_size=32, batch_size=2, preprocess_workers=0)
    model = DCGAN(image_shape=(3, 32, 32), latent_dim=8, generator_width=4, discriminator_width=4)
    markers = tmp_path / "markers"
    markers.mkdir()
    trainer = Trainer(
        **tiny_trainer_kwargs(
            max_epochs=1, devices=2, strategy="ddp_spawn_find_unused_parameters_true", callbacks=[ShardCheck(str(markers), 8)]
        )
    )
    trainer.fit(model, dm)
    assert sorted(p.name for p in markers.iterdir()) == ["rank0.ok", "rank1.ok"]

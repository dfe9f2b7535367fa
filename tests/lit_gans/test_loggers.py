"""The default W&B logger never prompts: offline without an API key, online with one."""

import pytest

from lit_gans.loggers import WandbLogger, wandb_api_key_configured


def test_no_key_means_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert not wandb_api_key_configured()
    logger = WandbLogger(save_dir=str(tmp_path), log_model=True)
    assert logger._wandb_init["mode"] == "offline"
    assert logger._log_model is False  # nothing to upload to offline
    logger.log_metrics({"a": 1.0}, step=3)  # creates the run: no prompt, no network
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    logger.experiment.finish()


def test_key_in_env_or_netrc_means_online(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_api_key_configured()
    assert WandbLogger(save_dir=str(tmp_path))._wandb_init.get("mode") is None
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert wandb_api_key_configured()


@pytest.mark.parametrize("mode", ["disabled", "offline"])
def test_explicit_wandb_mode_wins(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("WANDB_MODE", mode)
    # passed on as read now: W&B's settings of this process may have been made before the variable was set
    assert WandbLogger(save_dir=str(tmp_path))._wandb_init.get("mode") == mode


def test_unset_wandb_init_arguments_keep_lightnings_resume_allow(tmp_path):
    # LightningCLI passes every wandb.init argument, unset ones as None
    logger = WandbLogger(save_dir=str(tmp_path), mode="disabled", resume=None, id=None, tags=None, version="abc")
    assert logger._wandb_init["resume"] == "allow" and logger._wandb_init["id"] == "abc"
    assert "tags" not in logger._wandb_init and "anonymous" not in logger._wandb_init  # wandb warns on any value

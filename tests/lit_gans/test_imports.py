"""Importing one part of the package loads that part: the losses and networks do not pull in the engine, the
commands or their dependencies (torch-fidelity, W&B)."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_losses_and_networks_load_without_the_engine():
    for statement in ("import lit_gans.objectives", "from lit_gans.networks import DCGANGenerator"):
        loaded = loaded_after(statement)
        assert not {"lit_gans.gan", "lit_gans.generate", "lit_gans.callbacks", "torch_fidelity", "wandb"} & loaded


def test_the_top_level_names_still_import():
    loaded = loaded_after("from lit_gans import *\nimport lit_gans\nassert lit_gans.DCGAN.__name__ == 'DCGAN'")
    assert {"lit_gans.gan", "lit_gans.models", "lit_gans.generate"} <= loaded


def test_the_commands_import_without_a_cycle():
    # evaluate parses fit configs with the fit parser; the command line imports both, never the other way round
    assert "lit_gans.cli" not in loaded_after("import lit_gans.evaluate")
    assert "lit_gans.cli" not in loaded_after("import lit_gans.fit_cli")

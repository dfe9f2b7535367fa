"""A built wheel, not only the editable install, provides lit_gans, lit_gans.callbacks and lit_gans.datamodules."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_the_three_import_names(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("lit_gans-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lit_gans/callbacks/__init__.py" in names and "lit_gans/datamodules/mnist.py" in names
    assert not any(n.startswith(("callbacks/", "datamodules/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lit-gans = lit_gans.cli:console_main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True, capture_output=True)
    code = (
        "import lit_gans, lit_gans.callbacks, lit_gans.datamodules, sys; "
        "from lit_gans import DCGAN; from lit_gans.datamodules import MNISTDataModule; "
        "print(lit_gans.__file__); print(lit_gans.callbacks.__file__); print(lit_gans.datamodules.__file__)"
    )
    # -I: isolated mode, so neither the repository nor the editable install can be picked up
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(out) == 3 and all(p.startswith(str(target)) for p in out), out

"""The ``Example::`` blocks of the package's docstrings run as written (doctest)."""

import doctest
import importlib
import pkgutil

import lit_gans
import lit_gans.callbacks
import lit_gans.datamodules


def package_modules() -> list[str]:
    names = []
    for package in (lit_gans, lit_gans.callbacks, lit_gans.datamodules):
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return sorted(set(names))


def test_docstring_examples_run():
    attempted, failures = 0, []
    for name in package_modules():
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        attempted += result.attempted
        if result.failed:
            failures.append(name)
    assert not failures, f"failing examples in {failures} (run: python -m pytest --doctest-modules lit_gans)"
    assert attempted >= 40  # the examples exist: each network, model, loss and latent helper has one

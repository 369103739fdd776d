"""The docstring examples of every library module run and print what they claim (doctest)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gdvision

MODULES = sorted(m.name for m in pkgutil.walk_packages(gdvision.__path__, "gdvision.") if m.name != "gdvision.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"


def test_modules_found() -> None:
    for name in ("gdvision.attack.solver", "gdvision.runs.prefetch", "gdvision.io.png16", "gdvision.cli.attack"):
        assert name in MODULES

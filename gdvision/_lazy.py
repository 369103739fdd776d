"""Names of a package loaded from its submodules on first use (PEP 562), so importing the package stays cheap.

The solver packages (``attack``, ``depth``, ``features``, ``filters``, ``register``) export names whose modules
import torch (~3 s); a command line imports the package's config first to check its options, and must not pay for
torch then. Each package's ``__init__`` lists where each lazy name lives and gets its module ``__getattr__`` and
``__dir__`` from :func:`lazy_exports`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``(__getattr__, __dir__)`` that load each name of ``homes`` from its submodule when first used.

    Args:
        package: the package's ``__name__``, e.g. ``"gdvision.register"``.
        homes: ``{name: submodule}``: ``name`` is ``<package>.<submodule>.<name>``.

    A loaded name is stored in the package (later uses cost nothing); an unknown name raises AttributeError as a
    missing module attribute does. ``__dir__`` lists the package's own names and every lazy name.

    Example:
        >>> getattr_, dir_ = lazy_exports("gdvision", {"UsageError": "errors"})
        >>> getattr_("UsageError").__name__, "UsageError" in dir_()
        ('UsageError', True)
        >>> getattr_("missing")
        Traceback (most recent call last):
        ...
        AttributeError: module 'gdvision' has no attribute 'missing'
    """
    homes = dict(homes)

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__


__all__ = ["lazy_exports"]

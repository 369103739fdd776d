"""Names of a package loaded from its submodules on first use (PEP 562), so importing the package stays cheap.

The solver packages (``attack``, ``depth``, ``features``, ``filters``, ``register``) export names whose modules
import torch (~3 s); a command line imports the package's config first to check its options, and must not pay for
torch then. Each package's ``__init__`` lists the names each submodule gives and gets its module ``__getattr__``
and ``__dir__`` from :func:`lazy_exports`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple


class LazyExports(NamedTuple):
    """What :func:`lazy_exports` gives a package: its ``__getattr__``, its ``__dir__`` and the lazy names."""

    getattr: Callable[[str], Any]
    dir: Callable[[], list[str]]
    names: tuple[str, ...]


def lazy_exports(package: str, homes: Mapping[str, Iterable[str]]) -> LazyExports:
    """A module's ``__getattr__`` and ``__dir__`` that load each name from its submodule when first used.

    Args:
        package: the package's ``__name__``, e.g. ``"gdvision.register"``.
        homes: ``{submodule: names}``: each name is ``<package>.<submodule>.<name>``.

    Returns ``(__getattr__, __dir__, names)``; ``names``: every lazy name, in the order given. A loaded name is
    stored in the package (later uses cost nothing); an unknown name raises AttributeError as a missing module
    attribute does. ``__dir__`` lists the package's own names and every lazy name.

    Example:
        >>> getattr_, dir_, names = lazy_exports("gdvision", {"errors": ["UsageError"]})
        >>> names, getattr_("UsageError").__name__, "UsageError" in dir_()
        (('UsageError',), 'UsageError', True)
        >>> getattr_("missing")
        Traceback (most recent call last):
        ...
        AttributeError: module 'gdvision' has no attribute 'missing'
    """
    where = {name: home for home, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        home = where.get(name)
        if home is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return LazyExports(__getattr__, __dir__, tuple(where))


__all__ = ["LazyExports", "lazy_exports"]

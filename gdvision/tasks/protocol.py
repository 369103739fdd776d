"""The task protocol: what the manifest engine (:mod:`gdvision.runs`) knows of a command.

A command's task module (:mod:`gdvision.tasks.register`, ...) defines a :class:`Job`: its manifest columns, how an
item is named, loaded, batched and solved. The engine turns manifest rows into :class:`Item` objects, calls the
job and logs each :class:`Outcome`. Tasks depend on this module only, never on the engine.

Example:
    >>> item = Item(0, "a__b", {"a": "a.png", "b": "b.png", "gt": ""}, Path("out/a__b.json"))
    >>> item.path("a").name, item.get("gt"), item.owner
    ('a.png', None, "item 'a__b' (row 1)")
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gdvision.tasks.outputs import OutputPolicy


@dataclass
class Item:
    """One manifest row: its row index, id, columns (paths resolved) and where its outputs go."""

    index: int
    id: str
    fields: dict[str, str]
    out: Path
    policy: OutputPolicy | None = None

    @property
    def owner(self) -> str:
        """How errors name this item: ``item '<id>' (row <n>)``."""
        return f"item '{self.id}' (row {self.index + 1})"

    def claim(self, path: Path, existing_ok: bool = False) -> Path:
        """The path to write one of this item's files to, checked by the run's output policy (if any)."""
        if self.policy is None:
            return path
        return self.policy.claim(path, existing_ok=existing_ok, owner=self.owner)

    def path(self, column: str) -> Path:
        return Path(self.fields[column])

    def get(self, column: str) -> str | None:
        v = self.fields.get(column)
        return v if v else None


@dataclass
class Outcome:
    """What a job returns for an item: its JSON record (``outputs``, ``metrics``, anything else), or an error."""

    item: Item
    result: dict[str, Any] | None = None
    error: str | None = None


class Job(Protocol):
    """A subcommand as the engine sees it (implementations: one per module of :mod:`gdvision.tasks`)."""

    name: str
    required: tuple[str, ...]  # input columns every row must have
    optional: tuple[str, ...]  # other columns it understands
    path_columns: tuple[str, ...]  # columns holding paths (resolved against the manifest's folder)
    error_metric: str | None  # the metric ``--max-error`` bounds (lower is better)

    def item_id(self, fields: dict[str, str]) -> str: ...

    def output_of(self, item_id: str, out_dir: Path) -> Path: ...

    def load(self, item: Item) -> Any: ...

    def batch_key(self, item: Item, loaded: Any) -> Hashable | None: ...

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]: ...


__all__ = ["Item", "Job", "Outcome"]

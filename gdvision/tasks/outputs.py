"""The one output policy: where a task may write, and what it may replace.

Every result file of every command, in single-item and manifest mode, is claimed through an
:class:`OutputPolicy` before it is written. The rules:

1. Paths are compared as real paths (symlinks resolved, ``..`` folded), so a link cannot hide an input.
2. With an out-dir, nothing is written outside it.
3. No input of the run is ever replaced: images, masks, ground truth, starts, cameras, the manifest itself.
4. An existing output is refused (exit 2, naming the file and the flags) unless ``--overwrite`` is given, or the
   policy is told that the file belongs to the run being resumed (``--resume``).

Manifest ids become file names through :func:`safe_id`: one path component, never empty, ``.`` or ``..``.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "a.png").write_bytes(b"x")
    1
    >>> policy = OutputPolicy(d / "out", inputs=[d / "a.png"])
    >>> policy.claim(d / "out" / "a.json").name
    'a.json'
    >>> policy.claim(d / "a.png")
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: output '...a.png' is outside --out-dir '...out'
    >>> safe_id("../x")
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: id '../x' is not a safe file name (no '/', '\\\\', '..', or empty names)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from gdvision.errors import UsageError

_BAD_CHARS = ("/", "\\", "\x00")


def real_path(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute with every symlink resolved (also for a file or folder that does not exist yet)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def safe_id(item_id: str) -> str:
    """``item_id`` unchanged if it is usable as one file name; UsageError otherwise.

    Refused: empty or blank names, ``.`` and ``..``, path separators (``/``, ``\\``), control characters (NUL,
    newline, ...), and names starting with ``-`` or ``~`` that shells and tools misread.

    >>> safe_id("astronaut__camera")
    'astronaut__camera'
    """
    s = item_id
    bad_char = any(c in _BAD_CHARS or ord(c) < 32 or ord(c) == 127 for c in s)
    if not s.strip() or s in (".", "..") or bad_char or s[0] in "-~" or s != s.strip():
        raise UsageError(f"id '{item_id}' is not a safe file name (no '/', '\\\\', '..', or empty names)")
    return s


class OutputPolicy:
    """Claims output paths for one run, by the rules in the module docstring.

    Args:
        out_dir: the run's ``--out-dir``; None in single-item mode with explicit output paths.
        inputs: every input file of the run (more can be added with :meth:`add_inputs`).
        overwrite: replace existing outputs (``--overwrite``).
        flags: how the CLI names the way out of a refusal, e.g. ``"--overwrite"`` or ``"--resume or --overwrite"``.
        resume: the run continues an earlier one (``--resume``): its existing outputs may be replaced, as with
            ``existing_ok`` on every claim (inputs and the out-dir stay protected).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str] | None,
        inputs: Iterable[str | os.PathLike[str]] = (),
        overwrite: bool = False,
        flags: str = "--overwrite",
        resume: bool = False,
    ) -> None:
        self.out_dir = real_path(out_dir) if out_dir is not None else None
        self.overwrite = overwrite
        self.resume = resume
        self.flags = flags
        self._inputs: dict[Path, str] = {}
        self._input_files: dict[tuple[int, int], str] = {}  # (device, inode) of existing inputs: hard links
        self._claimed: dict[Path, str] = {}
        self.add_inputs(inputs)

    def add_inputs(self, paths: Iterable[str | os.PathLike[str] | None]) -> None:
        """Protect more input files (None entries are skipped)."""
        for p in paths:
            if p is not None and os.fspath(p) != "":
                self._inputs.setdefault(real_path(p), os.fspath(p))
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                self._input_files.setdefault((st.st_dev, st.st_ino), os.fspath(p))

    def is_input(self, path: str | os.PathLike[str]) -> bool:
        return real_path(path) in self._inputs

    def check_out_dir(self) -> None:
        """UsageError when the out-dir is an input file, or an input is the out-dir itself."""
        if self.out_dir is None:
            return
        if self.out_dir in self._inputs:
            raise UsageError(f"--out-dir '{self.out_dir}' is an input of the run")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UsageError(f"--out-dir '{self.out_dir}' exists and is not a folder")

    def claim(self, path: str | os.PathLike[str], existing_ok: bool = False, owner: str | None = None) -> Path:
        """The real path to write ``path`` to, after checking the rules; UsageError (exit 2) if one is broken.

        ``existing_ok``: the file may exist and be replaced (it belongs to the run being resumed). ``owner`` names
        who writes the file (e.g. a manifest row): two claims of one path by different owners are an error.
        """
        rp = real_path(path)
        shown = os.fspath(path)
        if self.out_dir is not None and not rp.is_relative_to(self.out_dir):
            raise UsageError(f"output '{shown}' is outside --out-dir '{self.out_dir}'")
        if rp in self._inputs:
            raise UsageError(f"output '{shown}' would overwrite input '{self._inputs[rp]}'")
        try:
            st = os.stat(rp)
            linked = self._input_files.get((st.st_dev, st.st_ino))
        except OSError:
            linked = None
        if linked is not None:  # another name (a hard link) of an input file
            raise UsageError(f"output '{shown}' would overwrite input '{linked}' (the same file under another name)")
        prev = self._claimed.get(rp)
        if prev is not None and owner is not None and prev != owner:
            raise UsageError(f"output '{shown}' is written by both {prev} and {owner}: give each its own file")
        if os.path.lexists(rp) and not (self.overwrite or self.resume or existing_ok):
            raise UsageError(f"output '{shown}' exists: pass {self.flags} to replace it")
        self._claimed[rp] = owner or shown
        return rp

    def claim_all(self, outputs: Mapping[str, str | os.PathLike[str] | None]) -> dict[str, Path]:
        """Claim each output of ``{owner: path or None}`` (None: not asked for), the key as its owner: ``{owner: real
        path}``.

        The single-item form: the keys are the flags that name the outputs (``--out``, ``--out-viz``...), so a refusal
        names the flag, and two flags given one file are refused (UsageError, exit 2).

        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> sorted(OutputPolicy(None).claim_all({"--out": d / "r.json", "--out-viz": None}))
        ['--out']
        >>> OutputPolicy(None).claim_all({"--out": d / "r.json", "--out-viz": d / "r.json"})
        Traceback (most recent call last):
        ...
        gdvision.errors.UsageError: output '...r.json' is written by both --out and --out-viz: give each its own file
        """
        return {owner: self.claim(p, owner=owner) for owner, p in outputs.items() if p is not None}


__all__ = ["OutputPolicy", "real_path", "safe_id"]

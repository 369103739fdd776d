"""Every example of README.md and docs/*.md runs as written, on the files of ``sample_data/``.

- Shell: each ``gdvision ...`` line of a code block (``&&`` split; the ``python -m pip install`` parts and the
  test command itself are not run) goes through typer's CliRunner, in a temporary folder that holds a link to
  ``sample_data/``, in page order (a later line may read what an earlier one wrote, e.g. ``compare``), and must
  exit 0. ``attack`` may exit 1 (its documented "the attack did not succeed"), never with an ``error:`` line.
- Python: each ``python`` code block is executed in such a folder, as it is written, by a fresh interpreter.

The examples themselves are kept small so this stays fast (about two minutes on 2 CPU cores): depth runs on
``sample_data/stereo_small/`` (370x250) with a depth range, attacks with ``--steps 20``. No example is skipped or
run in a reduced variant. Known failures of pages this test does not own are listed in ``KNOWN`` (xfail, with
the reason) so that they are reported, not hidden.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# (page name, a substring of the command) -> why it is expected to fail today
KNOWN: dict[tuple[str, str], str] = {}


def _blocks(text: str, lang: str | None = None) -> list[str]:
    found = re.findall(r"^```([^\n]*)\n(.*?)^```", text, flags=re.S | re.M)
    return [body for tag, body in found if lang is None or tag.strip() == lang]


def shell_examples() -> list[tuple[str, str]]:
    """(page name, command line) of every ``gdvision`` command of every page's shell blocks, in page order."""
    out = []
    for page in PAGES:
        for block in _blocks(page.read_text()):
            for line in block.splitlines():
                for part in line.split("&&"):
                    part = part.strip()
                    if part.startswith("gdvision "):
                        out.append((page.name, part))
    return out


def python_examples() -> list[tuple[str, int, str]]:
    """(page name, index, code) of every ``python`` block."""
    return [(p.name, i, code) for p in PAGES for i, code in enumerate(_blocks(p.read_text(), "python"))]


SHELL = shell_examples()
PYTHON = python_examples()
_FOLDERS: dict[str, Path] = {}


def _folder(page: str, tmp_path_factory) -> Path:
    """One working folder per page (shared by its examples, in order), with ``sample_data`` linked in."""
    if page not in _FOLDERS:
        d = tmp_path_factory.mktemp(page.replace(".", "_"))
        (d / "sample_data").symlink_to(ROOT / "sample_data", target_is_directory=True)
        _FOLDERS[page] = d
    return _FOLDERS[page]


def test_the_pages_have_examples_and_no_placeholder_files():
    assert len(SHELL) >= 30 and len(PYTHON) >= 5
    for page, line in SHELL:
        for tok in shlex.split(line, comments=True)[1:]:
            if re.search(r"\.(png|jpe?g|json|txt|csv|jsonl|npy|sift)$", tok) and not tok.startswith("-"):
                if any(kp == page and sub in line for kp, sub in KNOWN):
                    continue
                assert tok.startswith(("sample_data/", "out/")), f"{page}: {tok} is not a bundled file: {line}"


@pytest.mark.parametrize(("page", "line"), SHELL, ids=[f"{p}:{i}" for i, (p, _) in enumerate(SHELL)])
def test_shell_example_runs(page, line, tmp_path_factory, monkeypatch):
    from typer.testing import CliRunner

    from gdvision.cli.app import app

    for (kp, sub), why in KNOWN.items():
        if kp == page and sub in line:
            pytest.xfail(why)
    monkeypatch.chdir(_folder(page, tmp_path_factory))
    argv = shlex.split(line, comments=True)[1:]
    result = CliRunner().invoke(app, argv)
    output = result.output  # stdout and stderr as a user sees them
    ok = result.exit_code == 0 or (argv[0] == "attack" and result.exit_code == 1 and "error:" not in output)
    assert ok, f"{page}: `{line}` exited {result.exit_code}:\n{output[-3000:]}\n{result.exception!r}"


@pytest.mark.parametrize(("page", "index", "code"), PYTHON, ids=[f"{p}:py{i}" for p, i, _ in PYTHON])
def test_python_example_runs(page, index, code, tmp_path_factory):
    # a fresh interpreter, as a user runs it (nothing imported by the CLI examples run in this process)
    folder = _folder(page, tmp_path_factory)
    r = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{page} python block {index} failed:\n{r.stderr[-3000:]}"

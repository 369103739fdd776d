"""The documentation against the code: README size and commands, the manifest column table, links, module names.

- README.md stays at most 12 KB, carries ``.ci/run``'s test command verbatim, and every ``gdvision ...`` line of its
  code blocks names a real subcommand, real options of that subcommand and existing files under ``sample_data/``.
- The ``gdvision`` lines of ``docs/*.md`` name real subcommands and options too.
- The manifest column table of ``docs/batch.md`` equals the task definitions (``required``, ``optional``,
  ``error_metric``, the output path of an item).
- Every relative link of README.md, docs/*.md and bench/README.md points to an existing file, and every dotted
  ``gdvision.x.y`` name they mention is an importable module or an attribute of one, and every name a
  ``from gdvision... import ...`` line of their code blocks imports exists.
- The direction table of ``docs/compare.md`` equals ``gdvision.runs.compare.METRIC_DIRECTIONS`` and its families.
"""

from __future__ import annotations

import importlib
import re
import shlex
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "bench" / "README.md"]
COMMAND_PAGES = ("register", "depth", "edges", "match", "attack", "compare", "batch")

# command -> (module, Job class) of its manifest task
JOBS = {
    "register": ("gdvision.tasks.register", "RegisterJob"),
    "match": ("gdvision.tasks.match", "MatchJob"),
    "edges": ("gdvision.tasks.edges", "EdgesJob"),
    "depth": ("gdvision.tasks.depth", "DepthJob"),
    "attack": ("gdvision.tasks.attack", "AttackJob"),
}


def code_blocks(text: str) -> list[str]:
    """The bodies of the fenced code blocks of a markdown text."""
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def gdvision_commands(text: str) -> list[list[str]]:
    """Every ``gdvision ...`` command of the code blocks, as argument lists (comments dropped, ``&&`` split)."""
    out = []
    for block in code_blocks(text):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("gdvision "):
                    out.append(shlex.split(part, comments=True))
    return out


def cli_commands() -> dict[str, set[str]]:
    """Subcommand name -> every option string it accepts (click's view of the Typer app; no torch import)."""
    import typer.main

    from gdvision.cli.app import app

    group = typer.main.get_command(app)
    out = {}
    for name, cmd in group.commands.items():
        opts: set[str] = set()
        for p in cmd.params:
            opts.update(o for o in [*p.opts, *getattr(p, "secondary_opts", [])] if o.startswith("-"))
        out[name] = opts
    return out


def check_command(argv: list[str], commands: dict[str, set[str]], where: str) -> None:
    assert len(argv) >= 2 and argv[1] in commands, f"{where}: unknown subcommand in {' '.join(argv)}"
    known = commands[argv[1]]
    for tok in argv[2:]:
        if tok.startswith("-") and not re.fullmatch(r"-\d.*", tok):
            assert tok.split("=")[0] in known, f"{where}: `gdvision {argv[1]}` has no option {tok}"


def test_readme_is_at_most_12_kb():
    size = README.stat().st_size
    assert size <= 12 * 1024, f"README.md is {size} bytes, over 12 KB: move detail to docs/"


def test_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    marker = next(i for i, line in enumerate(ci) if "README test command" in line)
    command = ci[marker + 1].strip()
    assert command.startswith("python -m pip install") and "pytest" in command
    blocks = [b.strip() for b in code_blocks(README.read_text())]
    assert command in blocks, f".ci/run's test command is not a code block of README.md: {command}"


def test_readme_examples_name_real_commands_options_and_sample_files():
    commands = cli_commands()
    argvs = gdvision_commands(README.read_text())
    used = {a[1] for a in argvs}
    missing = {"register", "depth", "edges", "match", "features", "attack", "compare"} - used
    assert not missing, f"README.md has no example of: {sorted(missing)}"
    for argv in argvs:
        check_command(argv, commands, "README.md")
        for tok in argv:
            if tok.startswith("sample_data/"):
                assert (ROOT / tok).exists(), f"README.md example names a missing file: {tok}"


def test_docs_examples_name_real_commands_and_options():
    commands = cli_commands()
    n = 0
    for page in DOCS:
        for argv in gdvision_commands(page.read_text()):
            check_command(argv, commands, page.name)
            n += 1
    assert n >= 20


def test_one_page_per_command_and_every_relative_link_resolves():
    names = {p.stem for p in DOCS}
    assert set(COMMAND_PAGES) <= names
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)} links to a missing file: {target}"


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_gdvision_name_in_the_docs_exists():
    names = set()
    for page in PAGES:
        names.update(m.rstrip(".") for m in re.findall(r"\bgdvision(?:\.[A-Za-z_]\w*)+\.?", page.read_text()))
    assert names
    bad = sorted(n for n in names if not _resolves(n))
    assert not bad, f"the docs name modules or functions that do not exist: {bad}"


def test_every_name_imported_by_a_docs_example_exists():
    pattern = re.compile(r"^\s*from (gdvision[\w.]*) import \(?([^)\n]+)\)?", flags=re.M)
    bad, n = [], 0
    for page in PAGES:
        for block in code_blocks(page.read_text()):
            for module, names in pattern.findall(block):
                for name in (s.split(" as ")[0].strip() for s in names.split(",")):
                    n += 1
                    if not _resolves(f"{module}.{name}"):
                        bad.append(f"{page.name}: from {module} import {name}")
    assert n >= 10
    assert not bad, f"the docs' examples import names that do not exist: {bad}"


def compare_direction_table() -> dict[str, int]:
    """docs/compare.md's direction table: metric -> -1 (lower is better), +1 (higher), 0 (neutral)."""
    text = (ROOT / "docs" / "compare.md").read_text()
    section = text.split("## Directions", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    table = {}
    for line in rows:
        head, metrics = (c.strip() for c in line.strip().strip("|").split("|"))
        d = -1 if head.startswith("lower") else 1 if head.startswith("higher") else 0
        assert d != 0 or head.startswith("neutral"), head
        table.update({m: d for m in _ticked(metrics)})
    return table


def test_compare_direction_table_matches_the_code():
    from gdvision.runs.compare import METRIC_DIRECTIONS, direction

    table = compare_direction_table()
    examples = {"bad_<t>": "bad_2.0", "delta_<k>": "delta_1"}
    for name, d in table.items():
        assert direction(examples.get(name, name)) == d, f"docs/compare.md: direction of {name}"
    assert set(METRIC_DIRECTIONS) <= set(table), f"not in docs/compare.md: {set(METRIC_DIRECTIONS) - set(table)}"
    assert direction("no_such_metric") == 0  # the table's "any metric not listed" row


def _ticked(cell: str) -> tuple[str, ...]:
    return tuple(re.findall(r"`([^`]+)`", cell))


def manifest_table() -> dict[str, dict[str, object]]:
    """The manifest column table of docs/batch.md, parsed: command -> required, optional, metric, output."""
    text = (ROOT / "docs" / "batch.md").read_text()
    section = text.split("## The columns of each command", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header == ["command", "required columns", "optional columns", "`--max-error` metric", "outputs per item"]
    table = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        (command,) = _ticked(cells[0])
        metric = _ticked(cells[3])
        table[command] = {
            "required": _ticked(cells[1]),
            "optional": _ticked(cells[2]),
            "error_metric": metric[0] if metric else None,
            "output": _ticked(cells[4])[0],
        }
    return table


def test_manifest_table_parses_every_manifest_command():
    assert sorted(manifest_table()) == sorted(JOBS)


@pytest.mark.parametrize("command", sorted(JOBS))
def test_manifest_table_matches_the_task_definition(command):
    module, cls = JOBS[command]
    job = getattr(importlib.import_module(module), cls)
    row = manifest_table()[command]
    assert job.name == command
    assert set(row["required"]) == set(job.required), f"{command}: required columns"
    assert set(row["optional"]) == set(job.optional), f"{command}: optional columns"
    assert row["error_metric"] == job.error_metric, f"{command}: --max-error metric"
    # the documented output path of an item with id ID in DIR (edges: the default png format)
    out = job.output_of(types.SimpleNamespace(fmt="png"), "ID", Path("DIR"))
    assert str(out) == row["output"].replace("<id>", "ID").rstrip("/"), f"{command}: output per item"


def test_sample_manifest_uses_known_columns_and_existing_files():
    from gdvision.runs.engine import read_manifest
    from gdvision.tasks.register import RegisterJob

    manifest = ROOT / "sample_data" / "register" / "pairs.csv"
    rows = read_manifest(manifest)
    known = {*RegisterJob.required, *RegisterJob.optional, "id"}
    for row in rows:
        assert set(row) <= known
        for col in RegisterJob.path_columns:
            if row.get(col):
                assert (manifest.parent / row[col]).is_file(), row[col]

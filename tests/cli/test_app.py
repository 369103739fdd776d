"""The top-level CLI: version, help, and no torch import on the help/usage paths."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from gdvision import __version__
from gdvision.cli.app import app

runner = CliRunner()


def test_version_and_help() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"gdvision {__version__}"
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for command in ("register", "edges", "depth", "match", "features", "attack"):
        assert command in r.output


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from gdvision.cli.app import app\n"
        "for args in (['--help'], ['register', '--help'], ['edges', '--help'], ['register', 'a.png']):\n"
        "    CliRunner().invoke(app, args)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"

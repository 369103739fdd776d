"""The top-level CLI: version, help, and no torch import on the help/usage paths."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from gdvision import __version__
from gdvision.cli.app import app

runner = CliRunner()


def test_version_and_help() -> None:
    for flag in ("--version", "-V"):  # -V: issue 19 item 7
        r = runner.invoke(app, [flag])
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


_MAIN = (
    "import contextlib, io, json, sys\n"
    "from gdvision.cli.app import main\n"
    "for args in {cases!r}:\n"
    "    sys.argv = ['gdvision', *args]\n"
    "    out, err = io.StringIO(), io.StringIO()\n"
    "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
    "        try:\n"
    "            main()\n"
    "        except SystemExit as e:\n"
    "            code = e.code\n"
    "    print(json.dumps([code, out.getvalue(), err.getvalue()]))\n"
    "print('torch' in sys.modules)\n"
)


def _run_main(cases: list[list[str]]) -> tuple[list[tuple[int, str, str]], bool]:
    """Run ``main()`` on each argv in a fresh interpreter: (exit code, stdout, stderr) each, and torch imported?"""

    res = subprocess.run(
        [sys.executable, "-c", _MAIN.format(cases=cases)], capture_output=True, text=True, timeout=120, check=True
    )
    lines = res.stdout.splitlines()
    return [tuple(json.loads(line)) for line in lines[:-1]], lines[-1] == "True"


def test_a_bad_device_is_a_usage_error_before_torch() -> None:
    results, torch_imported = _run_main(
        [
            ["register", "a.png", "b.png", "--device", "tpu"],
            ["edges", "a.png", "-o", "out", "--device", "cuda:x", "--json"],
            ["match", "a.png", "b.png", "--device", "cpu:1"],
        ]
    )
    assert not torch_imported
    for (code, _out, err), dev in zip(results, ("tpu", "cuda:x", "cpu:1"), strict=True):
        assert code == 2
        assert err == f"error: unknown device '{dev}': use auto, cpu, cuda, cuda:N or mps\n"
    assert results[1][1].startswith('{"error": "unknown device')


def test_values_click_rejects_are_one_line_usage_errors_with_json() -> None:
    results, torch_imported = _run_main(
        [
            ["register", "a.png", "b.png", "--batch-size", "abc", "--json"],
            ["depth", "a.png", "b.png", "--planes", "x"],
            ["register", "a.png", "--bogus"],
            ["register"],
        ]
    )
    assert not torch_imported
    code, out, err = results[0]
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: Invalid value for '--batch-size'")

    assert json.loads(out) == {"error": err[len("error: ") :].strip(), "exit_code": 2}
    code, out, err = results[1]
    assert code == 2 and out == "" and err.startswith("error: Invalid value for '--planes'") and err.count("\n") == 1
    code, out, err = results[2]
    assert code == 2 and out == "" and "--bogus" in err and err.count("\n") == 1
    code, out, err = results[3]  # no arguments: the command's help, as before
    assert code == 2 and "Usage: gdvision register" in out + err


def test_every_computing_command_takes_threads_and_refuses_a_negative_count_before_torch(tmp_path) -> None:
    """Issue 19 item 7: --threads on every command that computes (it was on edges only)."""
    from gdvision.cli.app import app as the_app

    img = str(tmp_path / "a.png")
    cases = [
        ["edges", img, "-o", str(tmp_path / "e.png"), "--threads", "-1"],
        ["depth", img, img, "--cameras", str(tmp_path / "c.json"), "-o", str(tmp_path / "d"), "--threads", "-1"],
        ["match", img, img, "--threads", "-1"],
        ["features", img, "--threads", "-1"],
        ["attack", img, img, "--out-dir", str(tmp_path / "x"), "--threads", "-1"],
    ]
    results, torch_loaded = _run_main(cases)
    for args, (code, _, err) in zip(cases, results, strict=True):
        assert code == 2 and err == "error: --threads must be >= 0, got -1\n", (args[0], err)
    assert not torch_loaded
    for command in ("edges", "depth", "match", "features", "attack"):
        r = runner.invoke(the_app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--threads" in r.stdout, command


def test_shell_completion_is_offered_and_prints_a_script(monkeypatch) -> None:
    """Issue 19 item 7: --install-completion / --show-completion (main() crashed on typer's SystemExit before)."""
    r = runner.invoke(app, ["--help"])
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout
    monkeypatch.setenv("SHELL", "/bin/bash")
    (code, out, err), *_ = _run_main([["--show-completion", "bash"]])[0]
    assert code == 0 and "_gdvision_completion" in out and "complete " in out, err

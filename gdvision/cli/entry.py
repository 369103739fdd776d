"""The ``gdvision`` console script: hand the call to a warm worker when one runs, else run it here.

This module imports only the standard library and :mod:`gdvision.worker.client` (no torch, typer or rich), so a
call served by the worker costs an interpreter start and a socket round trip. ``gdvision worker ...`` itself is
never sent to a worker. See docs/worker.md.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point: the worker's answer, or :func:`gdvision.cli.app.main` in-process."""
    if sys.argv[1:2] != ["worker"]:
        from gdvision.worker.client import try_run

        code = try_run()
        if code is not None:
            sys.exit(code)
    from gdvision.cli.app import main as app_main

    app_main()


if __name__ == "__main__":
    main()

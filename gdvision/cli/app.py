"""The Typer application: ``gdvision <command> ...``."""

from __future__ import annotations

import sys

import typer

from . import attack as _attack
from . import compare as _compare
from . import depth as _depth
from . import edges as _edges
from . import match as _match
from . import register as _register
from . import report as _report
from . import worker as _worker
from .common import emit_json

app = typer.Typer(
    name="gdvision",
    help=(
        "Classical vision by gradient descent in PyTorch.\n\n"
        "Every command takes --device auto|cpu|cuda|cuda:N|mps, --json (machine-readable output on stdout) "
        "and --quiet. Exit codes: 0 success, 1 failure, 2 bad usage. Coordinates are pixels with (0, 0) at "
        "the centre of the top-left pixel; homographies map A to B (OpenCV's convention)."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rendering it with rich costs ~0.15 s of start-up (shell loops)
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("register", no_args_is_help=True)(_register.register)
app.command("edges", no_args_is_help=True)(_edges.edges)
app.command("depth", no_args_is_help=True)(_depth.depth)
app.command("match", no_args_is_help=True)(_match.match)
app.command("features", no_args_is_help=True)(_match.features)
app.command("attack", no_args_is_help=True)(_attack.attack)
app.command("compare", no_args_is_help=True)(_compare.compare)
app.command("report", no_args_is_help=True)(_report.report)
app.command("worker", no_args_is_help=True)(_worker.worker)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", "-V", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from gdvision import __version__

        typer.echo(f"gdvision {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


def main() -> None:
    """Console-script entry point.

    A value that click itself rejects (``--batch-size abc``, an unknown option) is reported like every other usage
    error: one ``error: ...`` line on stderr, ``{"error": ..., "exit_code": 2}`` on stdout when ``--json`` is
    given, exit 2. A command called without arguments still prints its help (exit 2).
    """
    try:  # the click that typer runs on: its own copy in recent typer, else click itself
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as click  # type: ignore[no-redef]

    abort = getattr(click, "Abort", ())  # typer's own click copy has no Abort (then nothing to catch)
    try:
        code = app(standalone_mode=False)
    except click.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        message = " ".join(exc.format_message().split()).rstrip(".")
        if exc.ctx is not None:
            message += f" (see '{exc.ctx.command_path} --help')"
        typer.echo(f"error: {message}", err=True)
        if "--json" in sys.argv[1:]:
            emit_json({"error": message, "exit_code": exc.exit_code})
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except abort:
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

"""The Typer application: ``gdvision <command> ...``."""

from __future__ import annotations

import typer

from . import attack as _attack
from . import compare as _compare
from . import depth as _depth
from . import edges as _edges
from . import match as _match
from . import register as _register

app = typer.Typer(
    name="gdvision",
    help=(
        "Classical vision by gradient descent in PyTorch.\n\n"
        "Every command takes --device auto|cpu|cuda|cuda:N|mps, --json (machine-readable output on stdout) "
        "and --quiet. Exit codes: 0 success, 1 failure, 2 bad usage. Coordinates are pixels with (0, 0) at "
        "the centre of the top-left pixel; homographies map A to B (OpenCV's convention)."
    ),
    no_args_is_help=True,
    add_completion=False,
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


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from gdvision import __version__

        typer.echo(f"gdvision {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

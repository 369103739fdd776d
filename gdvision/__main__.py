"""``python -m gdvision``: the same as the ``gdvision`` command."""

from gdvision.cli.app import main

main()

"""``python -m gdvision``: the same as the ``gdvision`` command (a warm worker serves it when one runs)."""

from gdvision.cli.entry import main

main()

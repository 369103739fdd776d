"""The ``gdvision`` command-line interface (installed as ``gdvision.cli``).

Command modules import torch and the solvers only inside their command functions, so ``gdvision --help``
and argument errors answer without loading torch.
"""

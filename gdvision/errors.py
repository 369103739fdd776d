"""Exceptions with the exit codes the CLI maps them to.

``UsageError`` (exit 2) is bad usage: an unknown option value, an absurd parameter, a missing input file.
``InputError`` (exit 1) is input that exists but cannot be used: a corrupt file, a wrong size, NaNs.
``SolverError`` (exit 1) is a solver failure: divergence, non-finite loss, no solution.
"""

from __future__ import annotations


class GdvisionError(Exception):
    """Base class: a one-line human message and an exit code."""

    exit_code: int = 1


class UsageError(GdvisionError):
    """Bad usage (exit code 2): invalid parameter values, missing files, unknown devices."""

    exit_code = 2


class InputError(GdvisionError):
    """Unusable input (exit code 1): corrupt or unreadable files, wrong sizes, non-finite values."""

    exit_code = 1


class SolverError(GdvisionError):
    """The optimisation failed (exit code 1): NaN/inf loss, divergence, degenerate result."""

    exit_code = 1

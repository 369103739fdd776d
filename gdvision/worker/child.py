"""One call in the worker's forked child: become the client's process, run the CLI, exit with its code.

The child takes over the client's stdin, stdout and stderr (received descriptors), working directory, umask,
environment, argv, ``sys.path[0]`` and ``__main__`` package (which click uses for the program name), rebuilds
``sys.stdin``/``sys.stdout``/``sys.stderr`` the way the interpreter builds them at start-up, reseeds numpy's
global generator from the OS as a fresh interpreter does (Python's ``random`` is reseeded at fork by Python
itself; torch's default generator was never used in the parent, so it holds torch's start-up seed), puts default
signal handlers back and runs ``gdvision.cli.app.main``. It exits as the interpreter would: ``SystemExit`` codes,
a traceback and exit 1 for an uncaught exception, death by SIGINT for an uncaught ``KeyboardInterrupt``, 120 when
flushing stdout fails at exit; non-daemon threads are joined and ``atexit`` functions run first (except the
worker's own ``weakref.finalize`` hooks from start-up, which only unregister torch's operators).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
import traceback
import types
import weakref

from .protocol import encode_line

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the worker dies (no orphaned call keeps running)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _stdio(fd: int, template: io.TextIOWrapper | None) -> io.TextIOWrapper:
    """A text stream on ``fd`` built as CPython's ``create_stdio`` builds ``sys.stdin``/``stdout``/``stderr``."""
    encoding = getattr(template, "encoding", None) or "utf-8"
    errors = getattr(template, "errors", None) or ("backslashreplace" if fd == 2 else "strict")
    unbuffered = bool(getattr(template, "write_through", False)) and fd != 0
    raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
    buffered = io.BufferedReader(raw) if fd == 0 else (raw if unbuffered else io.BufferedWriter(raw))
    line_buffering = not unbuffered and (raw.isatty() or fd == 2)
    return io.TextIOWrapper(
        buffered,
        encoding=encoding,
        errors=errors,
        newline="\n",
        line_buffering=line_buffering,
        write_through=unbuffered,
    )


def become_client(request: dict, fds: list[int]) -> None:
    """Take over the client's descriptors, directory, umask, environment, argv and streams (see the docstring)."""
    os.setpgid(0, 0)
    _die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    templates = (sys.stdin, sys.stdout, sys.stderr)
    sys.stdin, sys.stdout, sys.stderr = (_stdio(fd, t) for fd, t in enumerate(templates))
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(int(request["umask"]))
    time.tzset()
    sys.argv = list(request["argv"])
    if sys.path:
        sys.path[0] = request.get("path0", sys.path[0])
    main = types.ModuleType("__main__")
    main.__package__ = request.get("main_package")
    sys.modules["__main__"] = main
    if "numpy.random" in sys.modules:  # a fresh interpreter seeds it from the OS when it is imported
        sys.modules["numpy.random"].seed()
    # the worker's own exit-time finalizers (torch unregistering the ops it imported, ~20-60 ms in a child) are
    # not run: they undo nothing visible; finalizers made during the call (temporary folders...) still run
    for info in list(getattr(weakref.finalize, "_registry", {}).values()):
        info.atexit = False


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


_PREBUILT: list = []


def prebuild_command() -> None:
    """In the worker: build the click command of the gdvision app once (typer builds it anew on every call).

    Each child starts from the parent's untouched copy: :func:`run_call` hands it to typer instead of rebuilding
    the same object (about 20-80 ms per call).
    """
    import typer.main

    from gdvision.cli.app import app

    _PREBUILT[:] = [app, typer.main.get_command(app), typer.main.get_command]


def _use_prebuilt() -> None:
    if not _PREBUILT:
        return
    import typer.main

    app, command, build = _PREBUILT
    typer.main.get_command = lambda typer_app: command if typer_app is app else build(typer_app)


def run_call(request: dict, fds: list[int], report_fd: int | None = None) -> None:
    """In the forked child: become the client, run the CLI, exit (never returns).

    ``report_fd``: the client's connection; the exit code is sent on it as soon as the output is flushed, so the
    client does not wait for this process's teardown (the worker reports deaths by a signal).
    """
    code = 1
    try:
        try:
            become_client(request, fds)
        except BaseException:
            traceback.print_exc()
            raise
        try:
            _use_prebuilt()
            from gdvision.cli.app import main

            main()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = -int(signal.SIGINT)
        except BaseException:
            traceback.print_exc()
            code = 1
        import atexit
        import threading

        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            sys.stderr.write("Exception ignored on flushing sys.stdout:\nBrokenPipeError: [Errno 32] Broken pipe\n")
            code = 120 if code == 0 else code
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    finally:
        if report_fd is not None and code >= 0:
            try:
                os.write(report_fd, encode_line({"exit": code}))
            except OSError:
                pass
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code if code >= 0 else 1)


__all__ = ["become_client", "run_call"]

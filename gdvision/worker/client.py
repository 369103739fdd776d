"""The thin client: hand a ``gdvision`` call to the warm worker, or say that none serves it.

:func:`try_run` is what the ``gdvision`` console script does first (``gdvision.cli.entry``). It imports only the
standard library (no torch, no typer): connecting to a worker that is not there costs well under a millisecond
(the folder or socket does not exist, or nobody listens), and the call then runs in-process as it always did.

When a worker answers, the client sends its argv, working directory, umask, environment and its stdin, stdout and
stderr themselves (file descriptors, ``SCM_RIGHTS``); the worker's child process runs the command on them, so
output, progress bars and ``isatty()`` are those of an in-process run. The client forwards SIGINT, SIGTERM,
SIGHUP and SIGQUIT it receives to that child and ends like it: the same exit code, or the same signal.

Not sent to a worker: ``GDVISION_WORKER=0`` (or ``no``/``off``/``false``) in the environment; a torchrun rank
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` or ``TORCHELASTIC_RUN_ID`` set); a closed stdin/stdout/stderr.

Example:
    >>> import os
    >>> os.environ["GDVISION_WORKER"] = "0"
    >>> try_run(["gdvision", "--version"]) is None  # disabled: the caller runs it in-process
    True
    >>> del os.environ["GDVISION_WORKER"]
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from .paths import WorkerDirError, check_private_dir, runtime_dir, socket_path
from .protocol import LineReader, encode_line, encode_request

ENV_USE = "GDVISION_WORKER"
"""Environment variable: ``0`` (``no``, ``off``, ``false``) never hands a call to a worker."""
TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RUN_ID")
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
START_TIMEOUT_S = 10.0
"""How long the client waits for the worker to start the call before running it in-process."""


def _request(argv: list[str]) -> dict:
    mask = os.umask(0o022)
    os.umask(mask)
    main = sys.modules.get("__main__")
    return {
        "op": "run",
        "argv": list(argv),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": mask,
        "main_package": getattr(main, "__package__", None),
        "path0": sys.path[0] if sys.path else "",
        "python": os.path.realpath(sys.executable),
        "version": sys.version,
        "package": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def _connect(env: dict[str, str]) -> socket.socket | None:
    """A connected socket to this user's worker, or None (no folder, a folder we do not trust, nobody listening)."""
    folder = runtime_dir(env)
    try:
        check_private_dir(folder)
    except WorkerDirError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path(folder)))
        from .peer import peer_credentials

        if peer_credentials(sock)[1] != os.getuid():
            raise OSError("the worker socket belongs to another user")
    except OSError:
        sock.close()
        return None
    return sock


def try_run(argv: list[str] | None = None) -> int | None:
    """Run ``argv`` (default ``sys.argv``) in the warm worker and return its exit code; None if no worker serves it.

    When the call's process ends by a signal, the client raises the same signal on itself (so a shell sees the same
    status) and returns ``128 + signal`` only if it survives that.
    """
    env = os.environ
    if env.get(ENV_USE, "").strip().lower() in ("0", "no", "off", "false") or any(k in env for k in TORCHRUN_ENV):
        return None
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
        request = _request(sys.argv if argv is None else argv)
    except OSError:  # a closed standard stream, a deleted working directory
        return None
    sock = _connect(env)
    if sock is None:
        return None
    with sock:
        return _call(sock, request)


def _call(sock: socket.socket, request: dict) -> int | None:
    frame = encode_request(request)
    reader, started = LineReader(), False
    try:
        sock.settimeout(START_TIMEOUT_S)
        sent = socket.send_fds(sock, [frame], [0, 1, 2])
        sock.sendall(frame[sent:])
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for msg in reader.feed(data):
                if "decline" in msg:
                    return None
                if "started" in msg and not started:
                    started = True
                    sock.settimeout(None)
                    _forward_signals(sock)
                if "exit" in msg:
                    return int(msg["exit"])
                if "signal" in msg:
                    return _die_like(int(msg["signal"]))
    except (OSError, ValueError):
        pass
    if not started:
        return None  # the worker went away (or hung) before starting the call: nothing ran, run it in-process
    sys.stderr.write("error: lost the gdvision worker during the call\n")
    return 1


def _forward_signals(sock: socket.socket) -> None:
    """From now on, a signal the client receives goes to the call's process (which decides what it does)."""

    def forward(signum: int, _frame: object) -> None:
        try:
            sock.sendall(encode_line({"signal": signum}))
        except OSError:
            pass

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)


def _die_like(signum: int) -> int:
    """End by ``signum`` as the call's process did (a shell then reports the same status)."""
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum


__all__ = ["ENV_USE", "try_run"]

"""``gdvision worker start|stop|status``: launch, stop and query this user's warm worker.

Each function returns a dict (what ``--json`` prints). Stale state is repaired on the way: a socket nobody
answers on is removed by the next worker (which holds the folder's lock), and a worker that holds the lock but
does not answer (hung) is killed by ``start`` and ``stop``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .paths import WorkerDirError, check_private_dir, ensure_private_dir, pid_path, runtime_dir, socket_path
from .protocol import LineReader, encode_request
from .server import LOG_NAME

DEFAULT_IDLE_TIMEOUT_S = 900.0
"""A worker ends after this many seconds without a call (``--idle-timeout``)."""
START_WAIT_S = 120.0


def ask(folder: Path, op: str, timeout: float = 5.0) -> dict | None:
    """Send the control request ``op`` (``status`` or ``stop``) to the worker in ``folder``; its answer or None."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path(folder)))
        sock.sendall(encode_request({"op": op}))
        reader = LineReader()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            msgs = reader.feed(chunk)
            if msgs:
                return msgs[0]
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _recorded_pid(folder: Path) -> int | None:
    try:
        return int(Path(pid_path(folder)).read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_worker(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"gdvision.worker.server" in cmd and os.stat(f"/proc/{pid}").st_uid == os.getuid()


def _wait_gone(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _pid_alive(pid):
            return True
        time.sleep(0.02)
    return not _pid_alive(pid)


def status(folder: Path | None = None) -> dict:
    """``{"running": True, "pid": ..., ...}`` from the worker, or ``{"running": False, "folder": ...}``."""
    folder = Path(runtime_dir() if folder is None else folder)
    try:
        check_private_dir(folder)
    except WorkerDirError as exc:
        return {"running": False, "folder": str(folder), "problem": str(exc)}
    answer = ask(folder, "status")
    if answer is not None:
        return answer
    return {"running": False, "folder": str(folder), "stale_socket": os.path.exists(socket_path(folder))}


def _kill_hung(folder: Path) -> None:
    """A worker process that does not answer (hung, or still loading): SIGTERM, then SIGKILL."""
    pid = _recorded_pid(folder)
    if pid is None or not _is_our_worker(pid):
        return
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, wait):
            return


def stop(folder: Path | None = None, timeout: float = 30.0) -> dict:
    """Stop the worker; ``{"stopped": bool, "pid": ...}``: False when running calls still hold it after ``timeout``
    seconds (it has stopped accepting calls and ends after them), or (with ``reason``) when no worker runs.
    """
    folder = Path(runtime_dir() if folder is None else folder)
    answer = ask(folder, "stop")
    if answer is None:
        pid = _recorded_pid(folder)
        if pid is not None and _pid_alive(pid) and _is_our_worker(pid):
            _kill_hung(folder)
            return {"stopped": True, "pid": pid, "folder": str(folder), "killed": True}
        return {"stopped": False, "folder": str(folder), "reason": "no worker running"}
    pid = int(answer["pid"])
    gone = _wait_gone(pid, timeout)
    return {"stopped": gone, "pid": pid, "folder": str(folder)}


def start(idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S, folder: Path | None = None, watch: bool = True) -> dict:
    """Start a worker unless one answers; ``{"started": bool, "pid": ..., ...}``. Raises ``RuntimeError``.

    A worker that holds the folder but does not answer yet is waited for (it may be loading torch); one that
    still does not answer after :data:`START_WAIT_S` is killed and replaced. ``watch=False``: the worker keeps
    serving the code it loaded even when gdvision's sources change (default: it reloads).
    """
    folder = Path(ensure_private_dir(runtime_dir() if folder is None else folder))
    current = _wait_answer(folder)
    if current is not None:
        return {**current, "started": False}
    _kill_hung(folder)
    Path(pid_path(folder)).unlink(missing_ok=True)
    package_root = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); from gdvision.worker.server import main; main(sys.argv[2:])"
    )
    argv = [sys.executable, "-c", code, "gdvision.worker.server", "--daemon"]
    argv += ["--folder", str(folder), "--idle-timeout", str(idle_timeout), *([] if watch else ["--no-watch"])]
    log = folder / LOG_NAME
    with open(log, "ab") as err:
        launcher = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd="/")
    if launcher.returncode != 0:
        raise RuntimeError(f"could not launch the worker (exit {launcher.returncode}); see {log}")
    answer = _wait_answer(folder, launched=True)
    if answer is None:
        raise RuntimeError(f"the worker did not come up; see {log}")
    return {**answer, "started": True}


def _wait_answer(folder: Path, launched: bool = False) -> dict | None:
    """The worker's status once it answers; None when none answers and none is loading (or after the wait)."""
    end = time.monotonic() + START_WAIT_S
    t0 = time.monotonic()
    while time.monotonic() < end:
        answer = ask(folder, "status", timeout=2.0)
        if answer is not None:
            return answer
        pid = _recorded_pid(folder)
        loading = pid is not None and _pid_alive(pid) and _is_our_worker(pid)
        if not loading and (not launched or pid is not None or time.monotonic() - t0 > 10.0):
            return None  # nothing loading (a launched worker that wrote its pid and died, or never wrote one)
        time.sleep(0.05)
    return None


__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "ask", "start", "status", "stop"]

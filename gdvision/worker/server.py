"""The warm worker: a process that has torch and every gdvision module imported and forks one child per call.

Concurrency: fork per call. The parent only imports (it never runs a torch operation, starts a thread pool or
touches CUDA), so a forked child starts from a clean torch with nothing to repair, in about 10 ms. Calls run in
parallel as in-process runs do, and each child has its own working directory, environment, globals and random
state (see :mod:`gdvision.worker.child`). The parent is one thread with one event loop (``selectors``): it
accepts connections, checks the peer's uid (``SO_PEERCRED``), forks, forwards the client's signals to the
child's process group, reports the child's exit status, and kills the child when its client goes away.

Reliability: the worker holds an exclusive ``flock`` on ``worker.lock`` for its whole life, so at most one runs
per folder, and a socket without that lock holder is stale (removed at start). It declines a call (the client
then runs it in-process) when the call's Python, gdvision copy, start-up environment (``OMP_*``, ``MKL_*``,
``CUDA_*``, ``PYTORCH_*``, ``PYTHON*``, ``LD_*``, locale...: what torch and Python read once at start-up) or CPU
affinity differ from the worker's. When a loaded gdvision source file changed since the start, it declines the
call and reloads (once the running calls finish, the same process re-executes itself with the new code). It
ends after ``idle_timeout`` seconds without calls, on ``SIGTERM`` and on a ``stop`` request, letting running
calls finish, and removes its socket and pid file on the way out.

Run by ``gdvision worker start`` (:mod:`gdvision.worker.control`), not by hand.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import importlib
import json
import os
import pkgutil
import selectors
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from .paths import check_private_dir, pid_path, socket_path
from .peer import peer_allowed
from .protocol import HEADER, MAGIC, MAX_REQUEST, LineReader, decode_length, encode_line

LOCK_NAME = "worker.lock"
LOG_NAME = "worker.log"
STARTUP_ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "CUDA_", "PYTORCH_", "TORCH", "NVIDIA_")
STARTUP_ENV_PREFIXES += ("CUBLAS", "CUDNN", "PYTHON", "LD_", "LC_")
STARTUP_ENV_NAMES = ("LANG", "LANGUAGE")
EXTRA_PRELOAD = ("numpy.random", "imageio.v3", "imageio.plugins.pillow", "PIL.PngImagePlugin", "PIL.JpegImagePlugin")
EXTRA_PRELOAD += ("PIL.TiffImagePlugin", "tifffile", "rich.console", "rich.progress", "typer.main")


def startup_env(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that Python, torch or its libraries read once at start-up.

    Example:
        >>> startup_env({"OMP_NUM_THREADS": "1", "HOME": "/root", "GDVISION_PROGRESS": "1", "LANG": "C"})
        {'LANG': 'C', 'OMP_NUM_THREADS': '1'}
    """
    return {k: v for k, v in sorted(env.items()) if k.startswith(STARTUP_ENV_PREFIXES) or k in STARTUP_ENV_NAMES}


def preload() -> dict[str, int]:
    """Import torch, numpy and every gdvision module (no computation); the mtimes of the gdvision sources."""
    import torch  # noqa: F401

    import gdvision

    for info in pkgutil.walk_packages(gdvision.__path__, "gdvision."):
        if info.name.endswith("__main__") or info.name.startswith("gdvision.worker"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # an optional dependency missing: that command imports it itself
            print(f"worker: not preloaded: {info.name}: {exc}", file=sys.stderr)
    for name in EXTRA_PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    from .child import prebuild_command

    prebuild_command()
    stamp = {}
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if path and mod.__name__.startswith("gdvision"):
            stamp[path] = os.stat(path).st_mtime_ns
    return stamp


class Call:
    """A running call: its connection, child pid and pidfd."""

    def __init__(self, conn: socket.socket, pid: int, pidfd: int) -> None:
        self.conn, self.pid, self.pidfd, self.reader = conn, pid, pidfd, LineReader()


class Server:
    """The worker's event loop (see the module docstring). ``folder`` must pass ``check_private_dir``."""

    def __init__(self, folder: Path, idle_timeout: float) -> None:
        self.folder, self.idle_timeout = Path(check_private_dir(folder)), idle_timeout
        self.uid, self.started = os.getuid(), time.time()
        self.calls: dict[int, Call] = {}
        self.served = 0
        self.stopping = False
        self.reload = False  # set when a gdvision source changed: re-exec a fresh worker once the calls finish
        self.sel = selectors.DefaultSelector()
        self.env = startup_env(dict(os.environ))
        self.identity = {
            "python": os.path.realpath(sys.executable),
            "version": sys.version,
            "package": str(Path(__file__).resolve().parents[2]),
        }
        self.affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self.stamp: dict[str, int] = {}
        self.listener: socket.socket | None = None

    # -- set-up and tear-down ------------------------------------------------------------------------------
    def lock(self) -> bool:
        """Take the folder's lock; False when another worker holds it."""
        self.lock_fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def listen(self) -> None:
        path = Path(socket_path(self.folder))
        path.unlink(missing_ok=True)  # we hold the lock: a socket left here is stale
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        os.chmod(path, 0o600)
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")

    def write_pid(self) -> None:
        tmp = Path(pid_path(self.folder)).with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, pid_path(self.folder))

    def close_listener(self) -> None:
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            Path(socket_path(self.folder)).unlink(missing_ok=True)

    def status(self) -> dict:
        return {
            "running": True,
            "pid": os.getpid(),
            "folder": str(self.folder),
            "uptime_s": round(time.time() - self.started, 1),
            "idle_timeout_s": self.idle_timeout,
            "calls_served": self.served,
            "calls_running": len(self.calls),
            **self.identity,
        }

    def stop(self) -> None:
        """Stop accepting calls; end (not reload) once the running ones finish."""
        self.stopping, self.reload = True, False

    # -- the loop -----------------------------------------------------------------------------------------
    def serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        last = time.monotonic()
        try:
            while True:
                if self.stopping:
                    self.close_listener()
                    if not self.calls:
                        return
                if not self.calls and time.monotonic() - last > self.idle_timeout:
                    return
                for key, _ in self.sel.select(timeout=0.5):
                    try:
                        if key.data == "accept":
                            self.accept()
                        elif key.data[0] == "conn":
                            self.client_message(key.data[1])
                        else:
                            self.child_ended(key.data[1])
                    except Exception:  # one bad event must not end the worker (its calls would lose their exit)
                        traceback.print_exc()
                if self.calls:
                    last = time.monotonic()
        finally:
            self.close_listener()

    def accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        if not peer_allowed(conn, self.uid):  # another user (the folder's mode should already stop them)
            conn.close()
            return
        try:
            conn.setblocking(True)
            conn.settimeout(5.0)
            request, fds = self.read_request(conn)
        except (OSError, ValueError) as exc:
            print(f"worker: bad request: {exc}", file=sys.stderr)
            conn.close()
            return
        try:
            self.handle(conn, request, fds)
        finally:
            for fd in fds:
                os.close(fd)

    @staticmethod
    def read_request(conn: socket.socket) -> tuple[dict, list[int]]:
        data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
        try:
            while len(data) < HEADER:
                more = conn.recv(65536)
                if not more:
                    raise ValueError("connection closed")
                data += more
            if data[:4] != MAGIC:
                raise ValueError("not a gdvision worker request")
            size = decode_length(data[4:8])
            if size > MAX_REQUEST:
                raise ValueError("request too large")
            while len(data) < HEADER + size:
                more = conn.recv(65536)
                if not more:
                    raise ValueError("connection closed")
                data += more
            return json.loads(data[HEADER : HEADER + size]), list(fds)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def handle(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        op = request.get("op")
        if op in ("status", "stop"):
            if op == "stop":
                self.stop()
            conn.sendall(encode_line({**self.status(), "stopping": self.stopping}))
            conn.close()
            return
        reason = self.decline_reason(request, fds)
        if reason:
            conn.sendall(encode_line({"decline": reason}))
            conn.close()
            return
        self.fork(conn, request, fds)

    def decline_reason(self, request: dict, fds: list[int]) -> str | None:
        if self.stopping:
            return "the worker is stopping"
        if len(fds) != 3:
            return "no standard streams received"
        for key, value in self.identity.items():
            if request.get(key) != value:
                return f"another {key}: {request.get(key)} (the worker's: {value})"
        if startup_env(request.get("env", {})) != self.env:
            return "another start-up environment (OMP_*, CUDA_*, PYTHON*, locale...) than the worker's"
        if request.get("affinity") != self.affinity:
            return "another CPU affinity than the worker's"
        for path, mtime in self.stamp.items():
            try:
                changed = os.stat(path).st_mtime_ns != mtime
            except OSError:
                changed = True
            if changed:
                self.stopping = self.reload = True
                return f"gdvision changed since the worker started ({path}); it reloads"
        return None

    def fork(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        pid = os.fork()
        if pid == 0:  # the child: drop the parent's descriptors, become the client's process
            keep = list(fds)
            fds.clear()  # the parent's `finally` must not close them in the child
            for call in self.calls.values():
                os.close(call.pidfd)
                call.conn.close()
            if self.listener is not None:
                self.listener.close()
            self.sel.close()
            os.close(self.lock_fd)
            from .child import run_call

            run_call(request, keep, conn.detach())
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        conn.setblocking(False)
        try:
            conn.sendall(encode_line({"started": pid}))
        except OSError:
            pass
        pidfd = os.pidfd_open(pid)
        call = Call(conn, pid, pidfd)
        self.calls[pid] = call
        self.sel.register(conn, selectors.EVENT_READ, ("conn", pid))
        self.sel.register(pidfd, selectors.EVENT_READ, ("child", pid))

    def client_message(self, pid: int) -> None:
        call = self.calls.get(pid)
        if call is None:  # the child ended in the same round of events: its connection is already closed
            return
        try:
            data = call.conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client is gone: end its call, as its death would have ended an in-process run
            self.sel.unregister(call.conn)
            try:
                os.kill(pid, signal.SIGKILL)  # the process only (a killed in-process run leaves its children be)
            except ProcessLookupError:
                pass
            return
        for msg in call.reader.feed(data):
            if isinstance(msg.get("signal"), int):
                self._kill(pid, msg["signal"])

    @staticmethod
    def _kill(pid: int, signum: int) -> None:
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def child_ended(self, pid: int) -> None:
        call = self.calls.pop(pid, None)
        if call is None:
            return
        _, status = os.waitpid(pid, 0)
        msg = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.waitstatus_to_exitcode(status)}
        try:
            call.conn.setblocking(True)
            call.conn.sendall(encode_line(msg))
        except OSError:
            pass
        for obj in (call.conn, call.pidfd):
            try:
                self.sel.unregister(obj)
            except (KeyError, ValueError):
                pass
        call.conn.close()
        os.close(call.pidfd)
        self.served += 1


def main(argv: list[str] | None = None) -> None:
    """``python -m gdvision.worker.server --folder F --idle-timeout S [--daemon]``: run the worker."""
    ap = argparse.ArgumentParser(prog="gdvision-worker")
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--idle-timeout", type=float, required=True)
    ap.add_argument("--daemon", action="store_true", help="detach: fork, new session, the launcher returns at once")
    ap.add_argument("--no-watch", action="store_true", help="keep serving the code loaded at start (no reload)")
    args = ap.parse_args(argv)
    if args.daemon:
        if os.fork():
            os._exit(0)
        os.setsid()
    server = Server(args.folder, args.idle_timeout)
    if not server.lock():
        print("worker: another worker holds this folder", file=sys.stderr)
        sys.exit(3)
    server.write_pid()
    try:
        stamp = preload()
        server.stamp = {} if args.no_watch else stamp
        gc.freeze()  # the imported objects stay out of the collector: children do not copy their pages for it
        server.listen()
        print(f"worker: pid {os.getpid()} serving {socket_path(server.folder)}", file=sys.stderr, flush=True)
        server.serve()
        print(f"worker: pid {os.getpid()} stopped after {server.served} calls", file=sys.stderr, flush=True)
    finally:
        if not server.reload:
            Path(pid_path(server.folder)).unlink(missing_ok=True)
    if server.reload:  # the same process (pid) starts over: fresh imports of the changed code
        os.close(server.lock_fd)
        os.execv(sys.executable, [a for a in sys.orig_argv if a != "--daemon"])


if __name__ == "__main__":
    main()

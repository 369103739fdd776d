"""Where the warm worker lives: a private runtime folder holding its Unix socket and pid file.

The folder is ``$GDVISION_WORKER_DIR`` when set, else ``$XDG_RUNTIME_DIR/gdvision`` when ``XDG_RUNTIME_DIR`` is an
existing folder, else ``/tmp/gdvision-<uid>``. It is used only when :func:`check_private_dir` accepts it: a real
folder (not a symlink) owned by this user with no permission bits for group or others (mode ``0700``), so no
other user can reach the socket inside. Standard library only: the thin client imports this module.

Example:
    >>> import os, tempfile
    >>> d = os.path.join(tempfile.mkdtemp(), "w")
    >>> ensure_private_dir(d) == d and os.stat(d).st_mode & 0o777 == 0o700
    True
    >>> os.chmod(d, 0o755)
    >>> try:
    ...     check_private_dir(d)
    ... except WorkerDirError as exc:
    ...     print(str(exc).split(" is ")[1])
    open to other users (mode 0755; it must be 0700)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

ENV_DIR = "GDVISION_WORKER_DIR"
"""Environment variable: the worker's runtime folder (default: see the module docstring)."""
SOCKET_NAME = "worker.sock"
PID_NAME = "worker.pid"


class WorkerDirError(Exception):
    """The runtime folder is missing, not a folder, not ours, or open to other users."""


def runtime_dir(env: Mapping[str, str] | None = None) -> str:
    """The runtime folder's path (not created, not checked): see the module docstring."""
    env = os.environ if env is None else env
    if env.get(ENV_DIR):
        return env[ENV_DIR]
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "gdvision")
    return f"/tmp/gdvision-{os.getuid()}"


def check_private_dir(path: str | os.PathLike, uid: int | None = None) -> str:
    """``path`` when it is a folder (not a symlink) owned by ``uid`` (default: ours) with mode ``0700``.

    Raises :class:`WorkerDirError` otherwise, naming the problem.
    """
    uid = os.getuid() if uid is None else uid
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise WorkerDirError(f"worker folder {path} is not usable: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise WorkerDirError(f"worker folder {path} is not a folder (a symlink or a file)")
    if st.st_uid != uid:
        raise WorkerDirError(f"worker folder {path} belongs to uid {st.st_uid}, not to uid {uid}")
    if st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        raise WorkerDirError(f"worker folder {path} is open to other users (mode {mode:04o}; it must be 0700)")
    return os.fspath(path)


def ensure_private_dir(path: str | os.PathLike) -> str:
    """Create ``path`` (mode 0700) when missing, then :func:`check_private_dir` it (never loosens or chmods)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise WorkerDirError(f"cannot create worker folder {path}: {exc.strerror}") from None
    return check_private_dir(path)


def socket_path(folder: str | os.PathLike) -> str:
    """The worker's Unix socket in ``folder``."""
    return os.path.join(folder, SOCKET_NAME)


def pid_path(folder: str | os.PathLike) -> str:
    """The worker's pid file in ``folder``."""
    return os.path.join(folder, PID_NAME)


__all__ = [
    "ENV_DIR",
    "WorkerDirError",
    "check_private_dir",
    "ensure_private_dir",
    "pid_path",
    "runtime_dir",
    "socket_path",
]

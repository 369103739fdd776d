"""Who is at the other end of a Unix socket: ``SO_PEERCRED`` (Linux), the server's permission check.

Example:
    >>> import os, socket
    >>> a, b = socket.socketpair()
    >>> peer_credentials(a)[1] == os.getuid(), peer_allowed(a), peer_allowed(a, uid=os.getuid() + 1)
    (True, True, False)
    >>> a.close(); b.close()
"""

from __future__ import annotations

import os
import socket
import struct

_UCRED = struct.Struct("3i")


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of the connected Unix socket ``sock``."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return _UCRED.unpack(raw)


def peer_allowed(sock: socket.socket, uid: int | None = None) -> bool:
    """True when the peer of ``sock`` runs as ``uid`` (default: this process's uid); False otherwise or unknown."""
    uid = os.getuid() if uid is None else uid
    try:
        return peer_credentials(sock)[1] == uid
    except OSError:
        return False


__all__ = ["peer_allowed", "peer_credentials"]

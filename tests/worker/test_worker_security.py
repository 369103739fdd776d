"""Only the worker's own user can reach it: the private folder check, the peer-credential check, the client's
refusal of an untrusted folder, and (as root) a real connection attempt by another uid.
"""

from __future__ import annotations

import os
import socket

import pytest

from gdvision.worker import client
from gdvision.worker.paths import WorkerDirError, check_private_dir, ensure_private_dir, socket_path
from gdvision.worker.peer import peer_allowed, peer_credentials


def test_the_folder_must_be_ours_and_closed_to_others(tmp_path):
    d = tmp_path / "w"
    assert ensure_private_dir(d) == str(d) and (d.stat().st_mode & 0o777) == 0o700
    os.chmod(d, 0o755)
    with pytest.raises(WorkerDirError, match="open to other users .mode 0755"):
        check_private_dir(d)
    with pytest.raises(WorkerDirError, match="open to other users"):
        ensure_private_dir(d)  # never loosened or repaired silently
    os.chmod(d, 0o700)
    with pytest.raises(WorkerDirError, match=f"belongs to uid {os.getuid()}, not to uid {os.getuid() + 1}"):
        check_private_dir(d, uid=os.getuid() + 1)
    link = tmp_path / "link"
    link.symlink_to(d, target_is_directory=True)
    with pytest.raises(WorkerDirError, match="not a folder"):
        check_private_dir(link)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a folder to another uid")
def test_a_folder_owned_by_another_uid_is_refused(tmp_path):
    d = tmp_path / "w"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(WorkerDirError, match="belongs to uid 65534"):
        check_private_dir(d)


def test_the_peer_check_rejects_another_uid():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        pid, uid, _ = peer_credentials(a)
        assert (pid, uid) == (os.getpid(), os.getuid())
        assert peer_allowed(a) and peer_allowed(a, uid=os.getuid())
        assert not peer_allowed(a, uid=os.getuid() + 1)
    assert not peer_allowed(a)  # a closed socket: unknown peer, refused


def test_the_client_never_connects_into_an_untrusted_folder(tmp_path, monkeypatch):
    d = tmp_path / "w"
    ensure_private_dir(d)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path(d))
    listener.listen(1)
    with listener:
        monkeypatch.setenv("GDVISION_WORKER_DIR", str(d))
        sock = client._connect(os.environ)  # our folder, our listener: connects
        assert sock is not None
        sock.close()
        listener.accept()[0].close()
        os.chmod(d, 0o755)
        assert client._connect(os.environ) is None  # same listener, folder open to others: not trusted
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # the attempt never reached it


def test_the_server_drops_a_connection_from_another_uid(tmp_path):
    from gdvision.worker.protocol import encode_request
    from gdvision.worker.server import Server

    d = tmp_path / "w"
    ensure_private_dir(d)
    server = Server(d, idle_timeout=10)
    server.listen()
    try:
        for uid, answered in ((os.getuid() + 1, False), (os.getuid(), True)):
            server.uid = uid  # as if the worker ran as another user than this client
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(socket_path(d))
            s.sendall(encode_request({"op": "status"}))
            server.accept()
            try:
                reply = s.recv(65536)
            except ConnectionResetError:  # closed with the request unread
                reply = b""
            assert (b'"running":true' in reply) is answered
            s.close()
    finally:
        server.close_listener()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a process as another uid")
def test_another_user_cannot_open_the_socket(tmp_path):
    d = tmp_path / "w"
    ensure_private_dir(d)
    os.chmod(tmp_path, 0o755)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path(d))
    os.chmod(socket_path(d), 0o666)  # even a socket open to all is behind the 0700 folder
    listener.listen(1)
    with listener:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the other user
            os.close(r)
            code = b"?"
            try:
                os.setgid(65534)
                os.setuid(65534)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(socket_path(d))
                    code = b"connected"
                except PermissionError:
                    code = b"refused"
            finally:
                os.write(w, code)
                os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        assert os.read(r, 100) == b"refused"
        os.close(r)

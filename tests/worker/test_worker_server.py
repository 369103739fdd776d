"""The worker's event handlers on their own (no torch import, no fork)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from gdvision.worker.server import Call, Server, startup_env


def test_events_of_a_call_that_already_ended_are_ignored(tmp_path):
    # a child's end and its client's hang-up can come in one round of events: the second must find nothing to do
    d = tmp_path / "w"
    d.mkdir(mode=0o700)
    server = Server(d, idle_timeout=10)
    server.client_message(123456)  # no such call (any more)
    server.child_ended(123456)
    assert server.calls == {} and server.served == 0


def test_a_hung_up_client_kills_its_call(tmp_path):
    d = tmp_path / "w"
    d.mkdir(mode=0o700)
    server = Server(d, idle_timeout=10)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ours, theirs = socket.socketpair()
    theirs.close()  # the client is gone
    server.calls[child.pid] = Call(ours, child.pid, os.pidfd_open(child.pid))
    server.sel.register(ours, 1, ("conn", child.pid))
    server.client_message(child.pid)
    assert child.wait(timeout=10) == -9
    ours.close()


def test_startup_environment_is_what_python_and_torch_read_at_start():
    env = {"OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "1", "PYTHONHASHSEED": "0", "LC_ALL": "C", "HOME": "/h"}
    env |= {"GDVISION_PROGRESS": "1", "COLUMNS": "80", "TERM": "xterm"}
    assert set(startup_env(env)) == {"OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", "LC_ALL"}

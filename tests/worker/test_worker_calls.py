"""The warm worker end to end: a call it serves prints, writes and exits exactly as the same call in-process.

One worker per module (its own private folder, short idle timeout), always stopped in teardown. Each case runs
the same ``python -m gdvision ...`` twice, with ``GDVISION_WORKER=0`` (in-process) and through the worker, and
checks the worker's call counter so that a silent fallback cannot pass for a served call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
A = ROOT / "sample_data" / "register" / "coffee_a.png"
B = ROOT / "sample_data" / "register" / "coffee_b.png"


def _gdvision(args, env, cwd, worker=True, stdin=None, timeout=300):
    env = dict(env, GDVISION_WORKER="1" if worker else "0")
    cmd = [sys.executable, "-m", "gdvision", *map(str, args)]
    return subprocess.run(cmd, env=env, cwd=cwd, stdin=stdin, capture_output=True, timeout=timeout)


def _status(env) -> dict:
    r = subprocess.run([sys.executable, "-m", "gdvision", "worker", "status", "--json"], env=env, capture_output=True)
    return json.loads(r.stdout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]


def _start(env, idle_timeout) -> dict:
    """``gdvision worker start`` (no reload: other work may edit the tree meanwhile); its JSON answer."""
    cmd = [sys.executable, "-m", "gdvision", "worker", "start", "--idle-timeout", str(idle_timeout), "--no-watch"]
    r = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def wenv(tmp_path_factory):
    """The environment of a private worker (started here, stopped at the end)."""
    folder = tmp_path_factory.mktemp("wk") / "run"
    env = dict(os.environ, GDVISION_WORKER_DIR=str(folder))
    env.pop("GDVISION_WORKER", None)
    info = _start(env, 120)
    assert info["started"] and oct(folder.stat().st_mode & 0o777) == "0o700"
    yield env
    subprocess.run([sys.executable, "-m", "gdvision", "worker", "stop"], env=env, capture_output=True, timeout=60)
    pids = {info["pid"], _status(env).get("pid", info["pid"])}
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _same_in_and_out(args, env, cwd, stdin_file=None, code=None):
    """Run in-process and through the worker; the same bytes on stdout/stderr and the same exit code."""
    before = _status(env)["calls_served"]
    opened = [open(stdin_file, "rb") if stdin_file else None for _ in range(2)]
    local = _gdvision(args, env, cwd / "local", worker=False, stdin=opened[0])
    warm = _gdvision(args, env, cwd / "warm", worker=True, stdin=opened[1])
    for f in opened:
        if f:
            f.close()
    assert _status(env)["calls_served"] == before + 1, "the call did not go through the worker"
    assert (warm.returncode, warm.stdout, warm.stderr) == (local.returncode, local.stdout, local.stderr)
    if code is not None:
        assert warm.returncode == code, warm.stderr
    return local, warm


@pytest.fixture
def two_dirs(tmp_path):
    for name in ("local", "warm"):
        (tmp_path / name).mkdir()
    return tmp_path


def test_success_is_identical_output_and_files(wenv, two_dirs):
    _same_in_and_out(["register", A, B, "-q", "--out", "H.json"], wenv, two_dirs, code=0)
    results = [json.loads((two_dirs / d / "H.json").read_text()) for d in ("local", "warm")]
    assert results[0].pop("seconds") > 0 and results[1].pop("seconds") > 0  # the only field that may differ
    assert results[0] == results[1] and len(results[0]["H"]) == 3
    _same_in_and_out(["edges", A, "-o", "e", "-q"], wenv, two_dirs, code=0)
    assert (two_dirs / "local/e/coffee_a.png").read_bytes() == (two_dirs / "warm/e/coffee_a.png").read_bytes()


def test_usage_error_exit_2_and_failure_exit_1_are_identical(wenv, two_dirs):
    local, _ = _same_in_and_out(["register", A, B, "--model", "bogus", "--json"], wenv, two_dirs, code=2)
    assert b"unknown --model 'bogus'" in local.stderr and b'"exit_code": 2' in local.stdout
    (two_dirs / "local" / "bad.png").write_bytes(b"not a png")
    (two_dirs / "warm" / "bad.png").write_bytes(b"not a png")
    local, _ = _same_in_and_out(["register", "bad.png", B, "-q"], wenv, two_dirs, code=1)
    assert local.stderr.startswith(b"error: cannot read image 'bad.png'")


def test_stdin_environment_and_umask_reach_the_call(wenv, two_dirs):
    # the image comes on stdin: the worker's child reads the client's own descriptor
    _same_in_and_out(["edges", "/dev/stdin", "-o", "s", "-q"], wenv, two_dirs, stdin_file=A, code=0)
    assert (two_dirs / "local/s/stdin.png").read_bytes() == (two_dirs / "warm/s/stdin.png").read_bytes()
    # the help text wraps at the client's COLUMNS, not the worker's
    narrow, _ = _same_in_and_out(["edges", "--help"], dict(wenv, COLUMNS="50"), two_dirs, code=0)
    wide, _ = _same_in_and_out(["edges", "--help"], dict(wenv, COLUMNS="160"), two_dirs, code=0)
    assert narrow.stdout != wide.stdout


def test_a_different_startup_environment_runs_in_process(wenv, tmp_path):
    before = _status(wenv)["calls_served"]
    r = _gdvision(["--version"], dict(wenv, OMP_NUM_THREADS="1"), tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(b"gdvision ")
    assert _status(wenv)["calls_served"] == before


def test_concurrent_calls_each_get_their_own_output(wenv, tmp_path):
    before = _status(wenv)["calls_served"]
    env = dict(wenv, GDVISION_WORKER="1")
    procs = []
    for i, cols in enumerate(("40", "60", "80")):
        (tmp_path / str(i)).mkdir()
        cmd = [sys.executable, "-m", "gdvision", "register", "--help"]
        procs.append(subprocess.Popen(cmd, env=dict(env, COLUMNS=cols), cwd=tmp_path / str(i), stdout=subprocess.PIPE))
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and len(set(outs)) == 3
    assert _status(wenv)["calls_served"] == before + 3
    assert outs[0] == _gdvision(["register", "--help"], dict(wenv, COLUMNS="40"), tmp_path, worker=False).stdout


def test_a_burst_of_short_calls_leaves_the_worker_serving(wenv, tmp_path):
    # a child's end and its client's hang-up often arrive in the same round of events (this once ended the worker)
    before = _status(wenv)["calls_served"]
    env = dict(wenv, GDVISION_WORKER="1")
    cmd = [sys.executable, "-m", "gdvision", "--version"]
    for _ in range(2):
        procs = [subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE) for _ in range(8)]
        assert all(p.communicate(timeout=120)[0].startswith(b"gdvision ") and p.returncode == 0 for p in procs)
    st = _status(wenv)
    assert st["running"] and st["calls_served"] == before + 16


def _wait_running(env, n, timeout=60.0):
    deadline = time.monotonic() + timeout
    while _status(env)["calls_running"] != n:
        assert time.monotonic() < deadline, f"calls_running did not reach {n}"
        time.sleep(0.1)


def _long_attack(env, cwd, out):
    """A call that runs until it is stopped (an attack of 10^5 steps, progress off)."""
    cmd = [sys.executable, "-m", "gdvision", "attack", str(A), str(B), "--steps", "100000", "--out-dir", out, "-q"]
    return subprocess.Popen(
        cmd, env=dict(env, GDVISION_WORKER="1"), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_ctrl_c_reaches_the_call_and_a_killed_client_ends_it(wenv, tmp_path):
    p = _long_attack(wenv, tmp_path, "a1")
    _wait_running(wenv, 1)
    p.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground client
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err == b"error: interrupted\n"  # the CLI's own answer to KeyboardInterrupt
    _wait_running(wenv, 0, timeout=10)
    p = _long_attack(wenv, tmp_path, "a2")
    _wait_running(wenv, 1)
    p.kill()  # the client dies: its call must not keep running
    p.wait()
    _wait_running(wenv, 0, timeout=10)


def test_a_killed_worker_falls_back_then_start_replaces_it_and_the_idle_timeout_ends_it(wenv, tmp_path):
    """(Last test of the module: it replaces the module's worker by one with a 4 s idle timeout.)"""
    pid = _status(wenv)["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    st = _status(wenv)
    assert not st["running"] and st["stale_socket"]  # the socket file is left behind, nobody answers
    from gdvision.worker.client import _connect

    t = time.perf_counter()
    assert _connect(wenv) is None and time.perf_counter() - t < 0.05  # refused at once: the call runs in-process
    r = _gdvision(["register", A, B, "--model", "bogus"], wenv, tmp_path)
    assert r.returncode == 2 and b"unknown --model" in r.stderr  # ran in-process
    new = _start(wenv, 4)
    assert new["started"] and new["pid"] != pid
    r = _gdvision(["--version"], wenv, tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(b"gdvision ") and _status(wenv)["calls_served"] == 1
    deadline = time.monotonic() + 20
    while _alive(new["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(new["pid"]), "the idle timeout did not end the worker"
    folder = Path(wenv["GDVISION_WORKER_DIR"])
    assert not (folder / "worker.sock").exists() and not (folder / "worker.pid").exists()

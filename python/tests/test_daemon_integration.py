"""Tests against the REAL datacat-daemon binary and a real nats-server.

The binary comes from ``DATACAT_DAEMON_BIN`` (default: the workspace's
``target/debug/datacat-daemon``); these tests fail, never skip, without it.
"""

from __future__ import absolute_import

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import datacat
from datacat import DaemonManager, DatacatClient
from datacat._compat import popen_wait

import natsutil
from conftest import PYTHON_DIR, http_raw


def ok(answer):
    """A success answer of the daemon: 200 {"status": "ok", ...}."""
    return isinstance(answer, dict) and answer.get("status") == "ok"


def delivered(answer):
    """/end's answer when the session's data is acknowledged by JetStream."""
    return ok(answer) and answer.get("delivered", True) is True


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except (IOError, OSError):
        return True


def _wait_gone(pid, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_handshake(live):
    manager = DaemonManager(daemon_binary=live["daemon_binary"], nats_url=live["nats_url"])
    port = manager.start()
    try:
        assert isinstance(port, int) and 0 < port < 65536
        proc = manager.process
        assert proc.poll() is None
        assert proc.stdout.closed, "stdout must be closed after the ready line"
        assert not proc.stdin.closed, "stdin must stay open (parent-death detection)"
        status, body = http_raw(port, "GET", "/health")
        assert status == 200, body
        assert body["status"] == "ok"
        assert manager.start() == port  # already running: no second daemon
        assert manager.starts == 1
    finally:
        proc = manager.process
        proc.stdin.close()  # asks the daemon to flush and exit
        code = popen_wait(proc, 20)
        manager.stop()
    assert code is not None, "daemon did not exit after its stdin was closed"


def test_register_returns_session_id(live):
    session = datacat.create_session(product="space-game", version="1.4.0", **live)
    assert session.session_id, session.client.last_error
    uuid.UUID(session.session_id)  # a UUID, as the contract says
    other = datacat.create_session(product="space-game", version="1.4.0", **live)
    assert other.session_id != session.session_id
    assert delivered(session.end())
    assert delivered(other.end())


def test_every_call_returns_without_error(live):
    s = datacat.create_session("http://127.0.0.1:9", "space-game", "1.5.0", **live)
    assert s.session_id, s.client.last_error
    transport = s.client.daemon._transport
    assert len(transport._idle) == 1
    connection = transport._idle[0]
    results = [
        s.update_state({"window_state": {"open": ["main", "space probe"], "active": "main"},
                        "player": {"level": 1, "health": 100}}),
        s.update_state({"window_state": {"active": "space probe"}, "player": {"health": None}}),
        s.log_event("game_started"),
        s.log_event("low_fuel", level="warning", category="ship", labels=["fuel"],
                    message="fuel below 10%", data={"fuel": 9.5}),
        s.log_event("engine_failure", "error", data={"engine": 2}),
        s.log_event("debug_info", level="debug"),
        s.log_event("hull_breach", level="critical", message="hull breach"),
        s.log_event("with_group", group="combat"),
        s.log_metric("fps", 59.7, unit="fps", tags=["scene:space"]),
        s.log_metric("memory_usage", 512, unit="MB"),
        s.log_metric("enemies_killed", 3, metric_type="counter"),
        s.log_metric("frame_time", 16.4, metric_type="histogram", unit="ms"),
        s.log_metric("load_time", 1.25, metric_type="timer", unit="seconds", count=2),
        s.heartbeat(),
    ]
    try:
        raise ValueError("probe lost")
    except ValueError:
        results.append(s.log_exception(extra_data={"probe": "alpha"}))
    assert transport._idle == [connection], "calls must share one kept-alive connection"
    end = s.end(reason="finished")
    assert s.get_stats() == {"sent": 2 + len(results), "failed": 0}, s.client.last_error
    assert all(ok(r) for r in results), results
    assert delivered(end), end


def test_end_returns_after_the_data_is_in_jetstream(live):
    s = datacat.create_session(product="space-game", version="1.4.0", **live)
    assert s.session_id
    for i in range(50):
        s.log_metric("fps", 60 - i * 0.1)
    assert delivered(s.end())
    # no sleep: end() answered only after the batches were acknowledged
    assert natsutil.session_message_count(live["nats_url"], s.session_id) >= 1


def test_two_sessions_share_one_daemon(live):
    a = datacat.create_session(product="space-game", version="1.4.0", **live)
    b = datacat.create_session(product="space-game", version="1.5.0", **live)
    assert a.session_id and b.session_id
    assert a.client.daemon is b.client.daemon
    manager = a.client.daemon
    assert manager.starts == 1
    status, health = http_raw(manager.port, "GET", "/health")
    assert status == 200 and health.get("sessions", 2) >= 2
    # a lower-level client with the same settings also uses it
    c = DatacatClient(**live)
    assert c.daemon is manager
    assert ok(c.heartbeat(a.session_id))
    assert delivered(a.end()) and delivered(b.end())


def test_bad_input_gets_4xx_json_and_daemon_keeps_serving(live):
    s = datacat.create_session(product="space-game", version="1.4.0", **live)
    assert s.session_id
    port = s.client.daemon.port
    headers = {"Content-Type": "application/json"}

    cases = [
        ("POST", "/state", b"{this is not json", 400),
        ("POST", "/event", b"\x00\xff garbage", 400),
        ("POST", "/register", b'{"product": "p"}', 400),
        ("POST", "/event", ('{"session_id": "%s"}' % s.session_id).encode("ascii"), 400),
        ("POST", "/state", b'{"session_id": "no-such-session", "state": {}}', 404),
        ("GET", "/register", None, 405),
    ]
    for method, path, body, expected in cases:
        status, answer = http_raw(port, method, path, body, headers, token=s.client.daemon.token)
        assert status == expected, (method, path, body, status, answer)
        assert isinstance(answer, dict), (path, answer)
        assert answer.get("error") and answer.get("message"), (path, answer)

    # larger than the daemon's default body limit (8 MiB)
    status, answer = http_raw(port, "POST", "/state", b"x" * (9 << 20), headers,
                              token=s.client.daemon.token)
    assert status == 413, (status, answer)
    assert answer.get("error"), answer

    status, health = http_raw(port, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert ok(s.update_state({"still": "working"}))
    assert ok(s.end())
    assert s.client.daemon.starts == 1


def test_client_side_4xx_is_counted_not_raised(live):
    client = DatacatClient(**live)
    assert client.heartbeat("no-such-session") is False
    assert client.get_stats() == {"sent": 0, "failed": 1}
    assert "404" in client.last_error


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_daemon_killed_does_not_raise_and_is_counted(live):
    s = datacat.create_session(product="space-game", version="1.4.0", **live)
    assert s.session_id
    manager = s.client.daemon
    old_pid = manager.pid
    os.kill(old_pid, signal.SIGKILL)
    assert _wait_gone(old_pid, 10)

    assert s.log_event("after_kill") is False  # no exception into user code
    assert s.update_state({"x": 1}) is False
    stats = s.get_stats()
    assert stats["failed"] == 2 and stats["sent"] == 1
    assert s.end() is False  # the new daemon does not know the old session

    # a fresh session works: the client started a new daemon by itself
    t = datacat.create_session(product="space-game", version="1.4.0", **live)
    assert t.session_id, t.client.last_error
    assert manager.pid != old_pid
    assert ok(t.log_event("after_restart"))
    assert ok(t.end())


def test_new_daemon_after_the_old_one_exited(live):
    s = datacat.create_session(product="space-game", version="1.4.0", **live)
    assert ok(s.end())
    manager = s.client.daemon
    old_pid = manager.pid
    manager.process.stdin.close()  # the daemon flushes and exits
    assert popen_wait(manager.process, 20) is not None
    t = datacat.create_session(product="space-game", version="1.4.0", **live)
    assert t.session_id, t.client.last_error
    assert t.client.daemon is manager and manager.pid != old_pid
    assert ok(t.end())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_its_own_daemon(live):
    s = datacat.create_session(product="space-game", version="1.4.0", **live)
    assert s.session_id
    parent_daemon = s.client.daemon.pid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_end)
            c = datacat.create_session(product="space-game", version="1.4.0", **live)
            good = c.session_id is not None and ok(c.log_event("in_child")) and ok(c.end())
            os.write(write_end, ("%s %s" % (c.client.daemon.pid, good)).encode("ascii"))
            c.client.daemon.stop(timeout=10)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    answer = os.read(read_end, 100).decode("ascii")
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    child_daemon, good = answer.split()
    assert good == "True"
    assert int(child_daemon) != parent_daemon
    # the parent's daemon is untouched
    assert s.client.daemon.pid == parent_daemon
    assert ok(s.log_event("in_parent"))
    assert ok(s.end())


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_daemon_exits_when_the_application_dies(live, tmpdir):
    app = os.path.join(str(tmpdir), "app.py")
    with open(app, "w") as handle:
        handle.write(textwrap.dedent("""
            import sys, time
            sys.path.insert(0, %r)
            import datacat
            s = datacat.create_session(product="space-game", version="1.4.0",
                                       daemon_binary=%r, nats_url=%r)
            s.log_event("about_to_die")
            sys.stdout.write("%%s %%s\\n" %% (s.session_id, s.client.daemon.pid))
            sys.stdout.flush()
            time.sleep(60)
        """ % (PYTHON_DIR, live["daemon_binary"], live["nats_url"])))
    proc = subprocess.Popen([sys.executable, app], stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode("ascii").split()
        assert len(line) == 2 and line[0] != "None", line
        daemon_pid = int(line[1])
        assert _pid_alive(daemon_pid)
        proc.kill()  # the application crashes: the OS closes the daemon's stdin
        proc.wait()
        assert _wait_gone(daemon_pid, 30), "daemon still running 30 s after its application died"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_app_runs(live):
    env = dict(os.environ)
    env["DATACAT_NATS_URL"] = live["nats_url"]
    env["DATACAT_DAEMON_BIN"] = live["daemon_binary"]
    env["PYTHONPATH"] = PYTHON_DIR
    demo = os.path.join(PYTHON_DIR, "examples", "demo_app.py")
    proc = subprocess.Popen([sys.executable, demo], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode("utf-8", "replace")
    ids = [line.split()[-1] for line in out.decode("utf-8").splitlines()
           if line.startswith("session")]
    assert len(ids) == 3, out
    for sid in ids:
        uuid.UUID(sid)


def test_the_daemon_refuses_a_call_without_its_token(live):
    """Another local user's process can reach the port, not the token from the ready line."""
    s = datacat.create_session(product="space-game", version="1.4.0", **live)
    daemon = s.client.daemon
    assert daemon.token and len(daemon.token) == 64
    for token in (None, "not-the-token"):
        status, answer = http_raw(daemon.port, "GET", "/sessions", token=token)
        assert status == 401 and answer["error"] == "unauthorized", (status, answer)
        body = ('{"session_id": "%s"}' % s.session_id).encode("ascii")
        status, answer = http_raw(daemon.port, "POST", "/end", body, token=token)
        assert status == 401, (status, answer)
    status, answer = http_raw(daemon.port, "GET", "/sessions", token=daemon.token)
    assert status == 200 and [x for x in answer if x.get("id") == s.session_id], answer
    assert ok(s.update_state({"still": "mine"}))
    assert ok(s.end())

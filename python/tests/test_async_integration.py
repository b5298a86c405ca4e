"""AsyncSession, the typed helpers, hang monitoring and the crash hook against the REAL
datacat-daemon and nats-server (the query-API end-to-end check of what arrived is
integration-tests/tests/python_client.rs)."""

from __future__ import absolute_import

import json
import os
import subprocess
import sys
import textwrap
import time

import datacat
from datacat._compat import popen_wait

import natsutil
from conftest import PYTHON_DIR, http_raw


def daemon_view(session):
    daemon = session.client.daemon
    status, body = http_raw(daemon.port, "GET", "/session?session_id=%s" % (session.session_id,),
                            token=daemon.token)
    assert status == 200, body
    return body


def test_async_session_delivers_everything_in_order(live):
    s = datacat.create_session(product="space-game", version="2.0", async_mode=True, batch_size=100,
                               **live)
    assert isinstance(s, datacat.AsyncSession) and s.session_id
    state = {"window_state": {"open": ["main"]}, "player": {"level": 1}}
    s.update_state(state)
    state["player"]["level"] = 99  # changed after the call: must not be sent
    for i in range(1000):
        s.log_event("tick", data={"i": i})
    s.log_gauge("fps", 59.5, unit="fps")
    s.log_counter("kills", 2)
    s.log_counter("kills", 3)
    s.log_histogram("load", 0.3, buckets=[0.1, 1.0])
    with s.timer("level_load"):
        time.sleep(0.01)
    s.update_state({"player": {"level": 2}, "window_state": {"open": ["main", "map"]}})
    assert s.flush(30)
    view = daemon_view(s)
    assert view["state"] == {"window_state": {"open": ["main", "map"]}, "player": {"level": 2}}
    stats = s.get_stats()
    assert stats["sent"] == 1 + 1000 + 5 + 1, stats  # states, events, metrics
    assert stats["dropped"] == stats["failed"] == stats["invalid"] == 0, stats
    assert stats["batches"] >= 10
    end = s.end()
    assert end["status"] == "ok" and end["delivered"] is True, end
    assert natsutil.session_message_count(live["nats_url"], s.session_id) >= 1


def test_async_rejected_items_are_counted_and_the_rest_delivered(live):
    s = datacat.create_session(product="space-game", version="2.0", async_mode=True, **live)
    s.log_event("ok-1")
    s.log_metric("bad", float("nan"))
    s.log_event("bad-level", level="loud")  # the daemon judges unknown levels
    s.log_event("ok-2")
    assert s.flush(10)
    stats = s.get_stats()
    assert stats["sent"] == 2 and stats["invalid"] == 2, stats
    s.end()


def test_heartbeat_monitor_registers_its_timeout_with_the_daemon(live):
    s = datacat.create_session(product="space-game", version="2.0", **live)
    monitor = s.start_heartbeat_monitor(timeout=30, check_interval=1)
    watched = daemon_view(s)["heartbeat_monitor"]
    assert watched["enabled"] is True and watched["timeout_seconds"] == 30.0
    s.heartbeat()
    s.pause_heartbeat_monitoring()
    assert daemon_view(s)["heartbeat_monitor"]["paused"] is True
    s.resume_heartbeat_monitoring()
    assert daemon_view(s)["heartbeat_monitor"]["paused"] is False
    s.stop_heartbeat_monitor()
    assert daemon_view(s)["heartbeat_monitor"]["enabled"] is False
    assert not monitor.is_running()
    s.end()


def test_uncaught_exception_marks_the_session_crashed_at_the_daemon(live, tmpdir):
    script = tmpdir.join("crashy.py")
    out = tmpdir.join("session.json")
    script.write(textwrap.dedent("""
        import json, sys
        sys.path.insert(0, %r)
        import datacat
        s = datacat.create_session(product="space-game", version="2.0", async_mode=True,
                                   nats_url=%r, daemon_binary=%r)
        s.log_event("before_crash")
        open(%r, "w").write(json.dumps({"id": s.session_id, "port": s.client.daemon.port}))
        def physics():
            raise RuntimeError("reactor overload")
        physics()
    """ % (PYTHON_DIR, live["nats_url"], live["daemon_binary"], str(out))))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    _, err = proc.communicate()
    assert proc.returncode == 1 and b"reactor overload" in err
    info = json.loads(out.read())
    # The daemon outlives the crashed app long enough to flush; the session's batches with
    # the exception event and the crashed end are in JetStream.
    deadline = time.time() + 20
    while natsutil.session_message_count(live["nats_url"], info["id"]) < 1 and time.time() < deadline:
        time.sleep(0.1)
    assert natsutil.session_message_count(live["nats_url"], info["id"]) >= 1


def test_the_game_guides_logger_wraps_a_created_session(live):
    # A game's logger wraps create_session()'s session in AsyncSession.
    base = datacat.create_session("http://localhost:9090", product="Game", version="1.0", **live)
    session = datacat.AsyncSession(base, queue_size=20000)
    for frame in range(1, 181):
        if frame % 60 == 0:
            session.log_metric("fps", 60.0)
            session.update_state({"x": frame, "y": 20})
    session.log_event("boss_defeated", level="error", data={"boss": "sun"})
    stats = session.get_stats()
    assert stats["dropped"] == 0
    end = session.shutdown()
    assert end["status"] == "ok" and end["delivered"] is True, end
    stats = session.get_stats()
    assert stats["sent"] == 7 and stats["failed"] == 0, stats

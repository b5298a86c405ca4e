"""A server that accepts connections and never answers (a hung proxy, a paused VM) in place
of the query service and of NATS, against the REAL daemon: the application is never held
up longer than one timeout, ``end()`` and the exit are bounded, and every call that could
not be delivered returns False and is counted.

Timing bounds are wide (what they catch took 10 to 70 s before; the targets are about a
second or two); the figures themselves are printed by python/bench/blackhole.py.
"""

from __future__ import absolute_import

import os
import subprocess
import sys
import textwrap
import time

import pytest

import datacat
from blackhole import BlackHole, HangingServer
from conftest import HERE, PYTHON_DIR

_clock = getattr(time, "monotonic", time.time)


def timed(function, *args, **kwargs):
    started = _clock()
    result = function(*args, **kwargs)
    return result, _clock() - started


@pytest.fixture
def hole():
    server = BlackHole()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def hanging():
    server = HangingServer()
    try:
        yield server
    finally:
        server.close()


def url(server):
    return "http://127.0.0.1:%d" % (server.port,)


def test_async_session_against_a_black_hole_costs_the_caller_nothing(hole):
    s, took = timed(datacat.create_session, url(hole), product="p", version="1", use_daemon=False,
                    async_mode=True, capture_uncaught=False)
    assert took < 1.0, "creating an async session waited for the server (%.1f s)" % took
    assert s.session_id  # minted by the client, known at once
    started = _clock()
    assert all(s.log_event("tick", data={"i": i}) is True for i in range(100))
    assert _clock() - started < 1.0
    _, took = timed(s.end)
    assert took < 4.5, "end() took %.1f s (its deadline is 3 s)" % took
    assert s.log_event("late") is False  # ended: not sent, and counted
    stats = s.get_stats()
    assert stats["sent"] == 0 and stats["failed"] == 101, stats


def test_blocking_calls_cost_one_timeout_then_back_off(hanging):
    s = datacat.create_session(url(hanging), product="p", version="1", use_daemon=False,
                               capture_uncaught=False)
    assert s.registered is True
    hanging.hang()
    started = _clock()
    results = [s.log_event("tick") for _ in range(5)]
    took = _clock() - started
    assert results == [False] * 5
    # One 5 s timeout, then the backoff answers at once (it was 5 timeouts: 50 s).
    assert took < 8.0, "5 calls to a hung server took %.1f s" % took
    _, took = timed(s.end)
    assert took < 4.5, "end() took %.1f s" % took
    assert s.get_stats() == {"sent": 1, "failed": 6}


def test_shutdown_is_bounded_when_the_request_in_flight_hangs(hanging):
    s = datacat.create_session(url(hanging), product="p", version="1", use_daemon=False,
                               async_mode=True, capture_uncaught=False)
    assert s.flush(5) and s.registered is True
    hanging.hang()
    for i in range(1000):
        s.log_event("tick", data={"i": i})
    time.sleep(0.3)  # the shipper is now waiting in its request
    _, took = timed(s.shutdown, 2.0)
    assert took < 3.0, "shutdown(2.0) took %.1f s (it took 70 s when it waited behind the request)" % took
    stats = s.get_stats()
    assert stats["failed"] == 1000 and stats["sent"] == 0, stats
    assert s.log_metric("late", 1) is False
    assert s.get_stats()["failed"] == 1001


@pytest.fixture
def offline(daemon_bin, hole, tmpdir, monkeypatch):
    """Options for a session whose daemon's NATS and query service are black holes."""
    nats = BlackHole()
    monkeypatch.setenv("DATACAT_DAEMON_LOG", os.path.join(str(tmpdir), "daemon.log"))
    datacat._daemon.stop_shared_daemons(timeout=10.0)
    try:
        yield {"base_url": url(hole), "nats_url": "nats://127.0.0.1:%d" % (nats.port,),
               "daemon_binary": daemon_bin, "capture_uncaught": False}
    finally:
        datacat._daemon.stop_shared_daemons(timeout=1.0)
        nats.close()


def test_daemon_answers_with_nats_and_the_query_service_black_holed(offline):
    s, took = timed(datacat.create_session, product="space-game", version="1.5.0", **offline)
    assert s.registered is True and took < 5.0
    for call, args in ((s.update_state, ({"level": 3, "ship": {"fuel": 80}},)),
                       (s.log_event, ("launch",)), (s.log_metric, ("fps", 59.5)),
                       (s.heartbeat, ())):
        answer, took = timed(call, *args)
        assert answer == {"status": "ok"} and took < 1.0, (call, answer, took)

    details, took = timed(s.get_details)
    assert took < 8.0, "reading back took %.1f s" % took
    assert details["source"] == "daemon"  # the query service did not answer
    assert details["active"] is True and details["state"] == {"level": 3, "ship": {"fuel": 80}}
    for key in ("events", "metrics", "state_history", "created_at", "updated_at", "ended_at"):
        assert key in details, key
    _, took = timed(s.get_details)
    assert took < 1.0, "a second read waited for the black hole again (%.1f s)" % took

    end, took = timed(s.end)
    assert end["status"] == "ok" and end["delivered"] is False, end
    assert took < 3.0, "end() took %.1f s with NATS unreachable (the data is in the spool)" % took
    after = s.get_details()
    assert after["active"] is False and after["status"] == "ended" and after["ended_at"], after
    listed = s.client.get_all_sessions()
    assert isinstance(listed, list) and s.session_id in [x["id"] for x in listed]
    assert s.log_event("late") is False
    assert s.get_stats()["failed"] == 1


def test_async_session_with_nats_black_holed_ends_within_about_a_second(offline):
    s, took = timed(datacat.create_session, product="p", version="1", async_mode=True, **offline)
    assert took < 1.0
    for i in range(100):
        s.log_event("tick", data={"i": i})
    end, took = timed(s.end)
    assert end["status"] == "ok" and took < 3.0, (end, took)
    assert s.get_stats()["sent"] == 100


EXITING_APP = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [%(python)r, %(tests)r]
    import datacat
    from blackhole import HangingServer

    server = HangingServer()
    def main():
        s = datacat.create_session("http://127.0.0.1:%%d" %% server.port, product="p",
                                   version="1", use_daemon=False, async_mode=True)
        s.flush(5)
        server.hang()
        for i in range(10):
            s.log_event("tick")
    main()  # returns without end(): the exit hook ends the session
""")


def test_exit_is_bounded_and_says_what_was_not_delivered():
    script = EXITING_APP % {"python": PYTHON_DIR, "tests": HERE}
    started = _clock()
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.communicate()
    took = _clock() - started
    err = err.decode("utf-8", "replace")
    assert proc.returncode == 0, err
    assert took < 6.0, "the process took %.1f s to exit (its exit deadline is 3 s)" % took
    lines = [line for line in err.splitlines() if "were not delivered" in line]
    assert len(lines) == 1 and "11 call(s)" in lines[0], err  # 10 events and the end


SLOW_DAEMON_APP = textwrap.dedent("""
    import sys
    sys.path[:0] = [%(python)r]
    import datacat

    s = datacat.create_session(product="p", version="1", async_mode=True,
                               daemon_binary=%(daemon)r)
    s.log_event("tick")
    # returns at once: the session is registered (and the daemon started) in the background,
    # and the exit hook must not wait for a daemon that takes 8 s to come up
""")


@pytest.mark.skipif(os.name == "nt", reason="a shell script stands in for the daemon")
def test_ending_does_not_wait_for_a_daemon_still_starting(tmpdir, monkeypatch):
    slow = tmpdir.join("slow-daemon")
    slow.write("#!/bin/sh\nsleep 8\n")  # never says it is ready
    slow.chmod(0o755)
    monkeypatch.setenv("DATACAT_DAEMON_LOG", os.devnull)
    datacat._daemon.stop_shared_daemons(timeout=1.0)
    try:
        s = datacat.create_session(product="p", version="1", async_mode=True,
                                   daemon_binary=str(slow), capture_uncaught=False)
        s.log_event("tick")
        time.sleep(0.3)  # the background registration is starting the daemon now
        _, took = timed(s.end)
        assert took < 3.5, "end() waited %.1f s for the daemon's start-up (its deadline is 2 s)" % took
        assert s.get_stats()["failed"] == 1
    finally:
        datacat._daemon.stop_shared_daemons(timeout=1.0)
    script = SLOW_DAEMON_APP % {"python": PYTHON_DIR, "daemon": str(slow)}
    started = _clock()
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    _, err = proc.communicate()
    took = _clock() - started
    assert proc.returncode == 0, err
    assert took < 5.0, "the exit took %.1f s (8 s for the daemon; the exit deadline is 2 s)" % took

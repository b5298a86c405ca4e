"""Unit tests: AsyncSession, Timer, HeartbeatMonitor, DatacatHandler, the uncaught-exception
hook and the direct-write routing, with stub backends (the real daemon is in
test_async_integration.py)."""

from __future__ import absolute_import

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import datacat
from datacat import AsyncSession, DatacatClient, DatacatHandler, Session
from datacat._direct import DirectBackend
from datacat._monitor import thread_stacks

from conftest import PYTHON_DIR


class BatchStub(object):
    """A daemon stand-in that records /batch items; ``gate`` holds requests back."""

    base_url = "http://127.0.0.1:1"

    def __init__(self):
        self.calls = []
        self.gate = threading.Event()
        self.gate.set()
        self.error = None

    def request(self, method, path, body=None, timeout=None, deadline=None):
        self.gate.wait(10)
        if isinstance(body, bytes):  # /batch bodies arrive encoded
            body = json.loads(body.decode("utf-8"))
        self.calls.append((path, body))
        if self.error is not None:
            raise self.error
        if path == "/register":
            return {"session_id": "sid-1"}
        if path == "/batch":
            return {"status": "ok", "accepted": len(body["items"])}
        return {"status": "ok"}

    def items(self):
        return [item for path, body in self.calls if path == "/batch" for item in body["items"]]


def make(stub, **options):
    client = DatacatClient(daemon=stub)
    return AsyncSession(Session(client, client.create_session("p", "1"), "p", "1"), **options)


def test_calls_are_batched_in_order_with_call_times():
    stub = BatchStub()
    s = make(stub)
    before = time.time()
    s.update_state({"a": 1})
    s.log_event("e1", level="warning", data={"k": "v"}, labels=["x"])
    s.log_metric("fps", 59.5, unit="fps")
    s.log_counter("hits", 3)
    s.log_histogram("load", 0.3, buckets=[0.1, 1, float("inf")])
    s.heartbeat()
    assert s.flush(5)
    items = stub.items()
    assert [i["kind"] for i in items] == ["state", "event", "metric", "metric", "metric", "heartbeat"]
    assert items[0]["state"] == {"a": 1}
    assert items[1]["name"] == "e1" and items[1]["level"] == "warning" and items[1]["data"] == {"k": "v"}
    assert items[3]["type"] == "counter" and items[3]["delta"] == 3.0
    assert items[4]["buckets"] == [0.1, 1.0, "+Inf"]
    assert all(before <= i["timestamp"] <= time.time() for i in items)
    assert all("session_id" not in i for i in items)
    stats = s.get_stats()
    assert stats["sent"] == 6 and stats["dropped"] == 0 and stats["queued"] == 0
    s.end()
    assert stub.calls[-1][0] == "/end"


def test_what_was_passed_is_what_is_sent():
    stub = BatchStub()
    s = make(stub)
    stub.gate.clear()  # nothing leaves until the caller has changed its dicts
    state = {"player": {"level": 1}}
    data = {"items": [1]}
    s.update_state(state)
    s.log_event("e", data=data)
    state["player"]["level"] = 2
    data["items"].append(2)
    stub.gate.set()
    assert s.flush(5)
    assert stub.items()[0]["state"] == {"player": {"level": 1}}
    assert stub.items()[1]["data"] == {"items": [1]}
    s.end()


def test_unmarshallable_values_are_copied_through_json():
    import datetime

    stub = BatchStub()
    s = make(stub)
    s.update_state({"when": datetime.date(2026, 1, 2)})
    assert s.flush(5)
    assert stub.items()[0]["state"] == {"when": "2026-01-02"}
    s.end()


def test_full_buffer_drops_and_counts():
    stub = BatchStub()
    s = make(stub, queue_size=5, batch_size=2)
    stub.gate.clear()
    results = [s.log_event("e%d" % i) for i in range(50)]
    assert results.count(False) >= 40
    stub.gate.set()
    assert s.flush(5)
    stats = s.get_stats()
    assert stats["dropped"] == results.count(False)
    assert stats["sent"] + stats["dropped"] == 50
    s.end()


def test_full_buffer_can_block_instead():
    stub = BatchStub()
    s = make(stub, queue_size=3, batch_size=1, drop_on_full=False)
    stub.gate.clear()
    done = []
    producer = threading.Thread(target=lambda: done.append([s.log_event("e%d" % i) for i in range(20)]))
    producer.start()
    time.sleep(0.3)
    assert not done, "the producer must wait for room"
    stub.gate.set()
    producer.join(10)
    assert done and all(done[0])
    assert s.flush(5)
    assert [i["name"] for i in stub.items()] == ["e%d" % i for i in range(20)]
    assert s.get_stats()["dropped"] == 0
    s.end()


def test_exception_is_captured_in_the_calling_thread():
    stub = BatchStub()
    s = make(stub)
    try:
        1 / 0
    except ZeroDivisionError:
        s.log_exception(extra_data={"where": "physics"})
    assert s.flush(5)
    event = stub.items()[0]
    assert event["exception"]["type"] == "ZeroDivisionError"
    assert event["exception"]["frames"][-1]["function"] == "test_exception_is_captured_in_the_calling_thread"
    assert event["data"] == {"where": "physics"}
    s.end()


def test_transport_failures_are_counted_never_raised():
    from datacat._transport import TransportError

    stub = BatchStub()
    s = make(stub)
    stub.error = TransportError("daemon gone", kind="refused")
    for i in range(10):
        assert s.log_metric("m", i) is True
    assert s.flush(5)
    stats = s.get_stats()
    assert stats["failed"] == 10 and stats["sent"] == 0
    assert "daemon gone" in s.client.last_error
    stub.error = None
    s.end()


def test_invalid_calls_are_counted_and_the_rest_sent(caplog):
    stub = BatchStub()
    s = make(stub)
    s.log_metric("m", float("nan"))
    s.log_metric("m", "not a number")
    s.log_event("")
    s.log_metric("m", 1)
    assert s.flush(5)
    stats = s.get_stats()
    assert stats["invalid"] == 3 and stats["sent"] == 1
    assert any("rejected" in r.getMessage() for r in caplog.records)
    s.end()


def test_end_flushes_and_later_calls_are_harmless():
    stub = BatchStub()
    s = make(stub)
    for i in range(100):
        s.log_event("e%d" % i)
    s.end()
    assert len(stub.items()) == 100
    assert stub.calls[-1][0] == "/end"
    assert s.end() is s.end()  # idempotent


def test_timer_context_and_decorator():
    stub = BatchStub()
    s = make(stub)
    with s.timer("load", unit="ms") as t:
        time.sleep(0.01)
        t.count = 3

    @s.timer("step")
    def step():
        return 42

    assert step() == 42
    with pytest.raises(KeyError):
        with s.timer("failing"):
            raise KeyError("x")
    assert s.flush(5)
    timers = stub.items()
    assert [i["name"] for i in timers] == ["load", "step", "failing"]
    assert timers[0]["type"] == "timer" and timers[0]["unit"] == "ms" and timers[0]["value"] >= 10
    assert timers[0]["count"] == 3
    s.end()


def test_heartbeat_monitor_sends_timeout_and_stacks_of_a_hang():
    stub = BatchStub()
    client = DatacatClient(daemon=stub)
    s = Session(client, client.create_session("p", "1"), "p", "1")
    monitor = s.start_heartbeat_monitor(timeout=0.3, check_interval=0.05)
    assert stub.calls[-1] == ("/start_heartbeat_monitor", {"session_id": "sid-1", "timeout": 0.3})
    stuck = threading.Event()

    def stuck_worker():
        stuck.wait(5)

    worker = threading.Thread(target=stuck_worker, name="render-loop")
    worker.start()
    deadline = time.time() + 5
    while not [c for c in stub.calls if c[0] == "/event"] and time.time() < deadline:
        time.sleep(0.05)
    stuck.set()
    worker.join()
    event = [c[1] for c in stub.calls if c[0] == "/event"][0]
    assert event["name"] == "application_hang_stacks" and event["level"] == "error"
    threads = dict((t["name"], t) for t in event["data"]["threads"])
    assert "render-loop" in threads
    assert any(f["function"] == "stuck_worker" for f in threads["render-loop"]["frames"])
    assert not any(name.startswith("datacat-") for name in threads)
    assert monitor.hangs_reported == 1
    time.sleep(0.4)
    assert monitor.hangs_reported == 1, "one report per hang"
    s.heartbeat()  # re-arms
    s.pause_heartbeat_monitoring()
    time.sleep(0.5)
    assert monitor.hangs_reported == 1, "paused: no report"
    s.end()
    assert not monitor.is_running()


def test_thread_stacks_lists_the_current_thread():
    names = [t["name"] for t in thread_stacks()]
    assert threading.current_thread().name in names


def test_log_handler_keeps_message_level_and_exception():
    stub = BatchStub()
    s = make(stub)
    logger = logging.getLogger("game.physics")
    handler = DatacatHandler(s)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.warning("low fuel: %d%%", 5)
        try:
            {}["x"]
        except KeyError:
            logger.exception("lookup failed")
        logging.getLogger("datacat").warning("never sent: it would loop")
    finally:
        logger.removeHandler(handler)
    assert s.flush(5)
    first, second = stub.items()
    assert first["name"] == "log.game.physics" and first["level"] == "warning"
    assert first["message"] == "low fuel: 5%" and first["data"]["funcName"]
    assert second["level"] == "error" and second["message"] == "lookup failed"
    assert second["exception"]["type"] == "KeyError"
    s.end()


def test_uncaught_exception_ends_the_session_crashed(tmpdir):
    script = tmpdir.join("app.py")
    script.write(textwrap.dedent("""
        import json, sys
        sys.path.insert(0, %r)
        import datacat
        from datacat import DatacatClient, Session
        calls = []
        class Stub(object):
            base_url = "http://127.0.0.1:1"
            def request(self, method, path, body=None, timeout=None, deadline=None):
                calls.append([path, body])
                sys.stderr.write("CALL " + json.dumps([path, body]) + "\\n")
                return {"session_id": "sid"} if path == "/register" else {"status": "ok"}
        datacat.client.shared_daemon = lambda **kw: Stub()
        s = datacat.create_session(product="p", version="1")
        def physics():
            return 1 / 0
        physics()
    """ % (PYTHON_DIR,)))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    _, err = proc.communicate()
    err = err.decode("utf-8", "replace")
    assert proc.returncode == 1
    assert "ZeroDivisionError" in err  # the usual traceback is still printed
    import json

    calls = [json.loads(line[5:]) for line in err.splitlines() if line.startswith("CALL ")]
    paths = [c[0] for c in calls]
    assert paths == ["/register", "/event", "/end"], paths
    event, end = calls[1][1], calls[2][1]
    assert event["exception"]["type"] == "ZeroDivisionError" and event["level"] == "critical"
    assert event["exception"]["frames"][-1]["function"] == "physics"
    assert end["crashed"] is True and "ZeroDivisionError" in end["reason"]


def test_direct_backend_routes_daemon_calls_to_the_query_service():
    backend = DirectBackend("http://query:8080/", token="secret")
    assert backend.base_url == "http://query:8080"
    assert backend.transport.extra_headers["Authorization"] == "Bearer secret"
    route = backend._route
    assert route("POST", "/register", {"product": "p", "version": "1", "parent_pid": 1}) == \
        ("/api/sessions", {"product": "p", "version": "1"})
    assert route("POST", "/event", {"session_id": "a b"})[0] == "/api/sessions/a%20b/events"
    assert route("POST", "/metric", {"session_id": "s"})[0] == "/api/sessions/s/metrics"
    assert route("POST", "/batch", {"session_id": "s"})[0] == "/api/sessions/s/batch"
    encoded = b'{"session_id":"s/1","items":[]}'  # as AsyncSession sends it
    assert route("POST", "/batch", encoded) == ("/api/sessions/s%2F1/batch", encoded)
    assert route("POST", "/end", {"session_id": "s"})[0] == "/api/sessions/s/end"
    assert route("POST", "/end", {"session_id": "s", "crashed": True})[0] == "/api/sessions/s/crash"
    assert route("POST", "/pause_heartbeat", {"session_id": "s"}) == (None, None)
    assert route("GET", "/session?session_id=s", None) == ("/api/sessions/s", None)
    with pytest.raises(ValueError):
        DirectBackend(None)


def test_async_session_after_fork_ships_its_own_calls_only():
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    stub = BatchStub()
    s = make(stub)
    stub.gate.clear()
    s.log_event("parent-before-fork")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            stub.gate.set()
            s.log_event("child")
            ok = s.flush(5)
            names = [i["name"] for i in stub.items()]
            code = 0 if ok and names == ["child"] else 2
            os.write(write, repr(names).encode("utf-8"))
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child_saw = os.read(read, 1000).decode("utf-8")
    os.close(read)
    assert os.WEXITSTATUS(status) == 0, child_saw
    stub.gate.set()
    assert s.flush(5)
    assert [i["name"] for i in stub.items()] == ["parent-before-fork"]
    s.end()


def test_without_a_daemon_counters_are_totalled_by_the_client():
    stub = BatchStub()
    client = DatacatClient(daemon=stub, use_daemon=False)
    blocking = Session(client, client.create_session("p", "1"), "p", "1")
    blocking.log_counter("kills", 2)
    blocking.log_counter("kills", 3)
    blocking.log_counter("kills", 1, tags=["boss"])  # another series
    sent = [(b["value"], b.get("delta"), b.get("tags")) for p, b in stub.calls if p == "/metric"]
    assert sent == [(2.0, None, None), (5.0, None, None), (1.0, None, ["boss"])]
    s = AsyncSession(blocking)
    s.log_counter("kills", 10)
    assert s.flush(5)
    assert stub.items()[0]["value"] == 15.0 and "delta" not in stub.items()[0]
    s.end()


class MinimalSession(object):
    """An application's own session class: other argument names and order, an ``end()``
    without arguments, no ``exception``/``buckets``/``reason`` anywhere."""

    def __init__(self):
        self.calls = []

    def update_state(self, state):
        self.calls.append(("update_state", state))

    def log_event(self, name, category=None, group=None, labels=None, message=None, data=None,
                  stacktrace=None, level=None):
        self.calls.append(("log_event", name, dict(category=category, group=group, labels=labels,
                                                   message=message, data=data,
                                                   stacktrace=stacktrace, level=level)))

    def log_metric(self, name, value, tags=None, metric_type="gauge", count=None, unit=None,
                   metadata=None, delta=None):
        self.calls.append(("log_metric", name, value, dict(tags=tags, metric_type=metric_type,
                                                           count=count, unit=unit,
                                                           metadata=metadata, delta=delta)))

    def heartbeat(self):
        self.calls.append(("heartbeat",))

    def end(self):
        self.calls.append(("end",))
        return {"status": "ok"}


def test_wraps_a_session_class_with_the_arguments_it_takes():
    wrapped = MinimalSession()
    s = AsyncSession(wrapped, queue_size=20000)
    s.update_state({"x": 1})
    s.log_event("boom", level="error", data={"k": 1})
    s.log_metric("fps", 60.0, unit="fps")
    s.log_histogram("load", 0.3, buckets=[0.1, 1.0])
    try:
        raise ValueError("bad")
    except ValueError:
        s.log_exception()
    s.heartbeat()
    assert s.end() == {"status": "ok"}
    calls = wrapped.calls
    assert calls[0] == ("update_state", {"x": 1})
    assert calls[1][:2] == ("log_event", "boom")
    assert calls[1][2]["level"] == "error" and calls[1][2]["data"] == {"k": 1}
    assert calls[2] == ("log_metric", "fps", 60.0, dict(tags=None, metric_type="gauge", count=None,
                                                         unit="fps", metadata=None, delta=None))
    assert calls[3][3]["metric_type"] == "histogram"
    assert calls[3][3]["metadata"] == {"buckets": [0.1, 1.0]}  # where it takes them
    exception = calls[4][2]
    assert calls[4][1] == "exception" and exception["labels"] == ["exception", "ValueError"]
    assert any("ValueError: bad" in line for line in exception["stacktrace"])
    assert calls[5] == ("heartbeat",)
    assert calls[6] == ("end",)  # its end() takes no reason: called without one
    stats = s.get_stats()
    assert stats["sent"] == 6 and stats["failed"] == 0, stats
    assert s.log_event("late") is False and s.get_stats()["failed"] == 1


def test_a_wrapped_session_that_raises_is_counted_not_raised():
    class Broken(MinimalSession):
        def log_event(self, name, **kwargs):
            raise RuntimeError("its own bug")

    wrapped = Broken()
    s = AsyncSession(wrapped)
    assert s.log_event("x") is True
    s.update_state({"y": 2})
    s.end()
    stats = s.get_stats()
    assert stats["failed"] == 1 and stats["sent"] == 1, stats
    assert wrapped.calls[-1] == ("end",)


def test_a_wrapped_end_that_hangs_does_not_hold_up_the_caller():
    class Stuck(MinimalSession):
        def end(self, reason=None):
            time.sleep(30)

    started = time.time()
    AsyncSession(Stuck(), exit_timeout=0.5).end()
    assert time.time() - started < 5  # bounded by exit_timeout, not the wrapped end's 30 s

"""Unit tests: DatacatClient / Session / create_session with a stub daemon."""

from __future__ import absolute_import

import logging
import os
import sys
import time
import uuid

import pytest

import datacat
from datacat import DaemonStartError, DatacatClient, Session, _daemon
from datacat import session as session_module
from datacat._transport import DaemonHTTPError, TransportError


class StubDaemon(object):
    base_url = "http://127.0.0.1:1"

    def __init__(self, error=None):
        self.calls = []
        self.error = error

    def request(self, method, path, body=None, timeout=None, deadline=None):
        self.calls.append((method, path, body, timeout))
        if self.error is not None:
            raise self.error
        if path == "/register":
            return {"session_id": "sid-1"}
        return {"status": "ok"}

    def bodies(self, path):
        return [c[2] for c in self.calls if c[1] == path]


@pytest.fixture
def stub():
    return StubDaemon()


@pytest.fixture
def session(stub):
    client = DatacatClient(daemon=stub)
    return Session(client, client.create_session("space-game", "1.4.0"), "space-game", "1.4.0")


def test_register_body(stub):
    before = time.time()
    client = DatacatClient(daemon=stub)
    assert client.create_session("space-game", "1.4.0") == "sid-1"
    body = stub.bodies("/register")[0]
    assert body["product"] == "space-game" and body["version"] == "1.4.0"
    assert body["parent_pid"] == os.getpid()
    assert before <= body["timestamp"] <= time.time()
    assert client.register_session("a", "b") == "sid-1"  # its other name


@pytest.mark.parametrize("product,version", [(None, "1"), ("p", None), ("", "1"), ("p", "")])
def test_product_and_version_required(stub, product, version):
    with pytest.raises(ValueError) as info:
        DatacatClient(daemon=stub).create_session(product, version)
    assert "Product and version are required" in str(info.value)
    assert stub.calls == []


def test_create_session_validates_before_starting_a_daemon(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("no daemon should be started")

    monkeypatch.setattr(datacat.client, "shared_daemon", boom)
    with pytest.raises(ValueError):
        datacat.create_session(product="p")
    with pytest.raises(ValueError):
        datacat.create_session("http://query:8080", version="1.0")


def test_every_call_sends_session_id_and_timestamp(session, stub):
    before = time.time()
    assert session.update_state({"player": {"level": 1}}) == {"status": "ok"}
    assert session.log_event("started", level="info", data={"a": 1}) == {"status": "ok"}
    assert session.log_metric("fps", 60, unit="fps") == {"status": "ok"}
    assert session.heartbeat() == {"status": "ok"}
    assert session.end(reason="done") == {"status": "ok"}
    after = time.time()
    paths = [c[1] for c in stub.calls]
    assert paths == ["/register", "/state", "/event", "/metric", "/heartbeat", "/end"]
    for method, path, body, _ in stub.calls[1:]:
        assert method == "POST"
        assert body["session_id"] == "sid-1"
        assert before <= body["timestamp"] <= after
    assert stub.bodies("/state")[0]["state"] == {"player": {"level": 1}}
    assert stub.bodies("/event")[0] == dict(stub.bodies("/event")[0], name="started", level="info",
                                            data={"a": 1})
    assert stub.bodies("/metric")[0]["type"] == "gauge"
    assert stub.bodies("/end")[0]["reason"] == "done"
    assert session.get_stats() == {"sent": 6, "failed": 0}


def test_end_has_its_own_deadline_and_asks_the_daemon_to_wait_within_it(stub):
    client = DatacatClient(daemon=stub, timeout=3, end_timeout=77)
    client.heartbeat("s")
    client.end_session("s")
    assert stub.calls[0][3] == stub.calls[1][3] == 3  # the request's own bound; its deadline is 77 s
    assert 76 < stub.bodies("/end")[0]["wait"] <= 76.5  # half a second kept for the answer
    assert DatacatClient(daemon=stub).end_timeout == 2.0  # with a daemon: it has the data on disk


def test_end_is_idempotent_and_later_calls_are_dropped(session, stub):
    assert session.end() == {"status": "ok"}
    assert session.end() == {"status": "ok"}
    assert session.ended
    assert session.log_event("late") is False
    assert session.update_state({"x": 1}) is False
    assert [c[1] for c in stub.calls].count("/end") == 1
    assert "/event" not in [c[1] for c in stub.calls]
    assert session.get_stats()["failed"] == 2


def test_context_manager_ends(stub):
    client = DatacatClient(daemon=stub)
    with Session(client, "s1") as s:
        s.log_event("inside")
    with pytest.raises(KeyError):
        with Session(client, "s2"):
            raise KeyError("x")
    ends = stub.bodies("/end")
    assert ends[0] == dict(ends[0], session_id="s1") and "reason" not in ends[0]
    assert ends[1]["session_id"] == "s2" and ends[1]["reason"] == "exception"


@pytest.mark.parametrize("error", [
    TransportError("refused", kind="refused"),
    DaemonHTTPError(404, "unknown_session", "no such session"),
    DaemonStartError("cannot start"),
    RuntimeError("unexpected"),
])
def test_failures_never_raise_and_are_counted(error):
    stub = StubDaemon(error=error)
    client = DatacatClient(daemon=stub)
    assert client.create_session("p", "1") is None
    assert client.update_state("sid", {"a": 1}) is False
    assert client.log_event("sid", "e") is False
    assert client.log_metric("sid", "m", 1.0) is False
    assert client.heartbeat("sid") is False
    assert client.end_session("sid") is False
    assert client.get_stats() == {"sent": 0, "failed": 6}
    assert client.last_error


def test_failure_logging_is_throttled(caplog):
    stub = StubDaemon(error=TransportError("connection refused", kind="refused"))
    client = DatacatClient(daemon=stub)
    caplog.set_level(logging.DEBUG, logger="datacat")
    for _ in range(5):
        client.log_event("sid", "e")
    client.log_metric("sid", "m", 1)
    warnings = [r for r in caplog.records if r.name == "datacat" and r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per call kind, not one per call
    assert "connection refused" in warnings[0].getMessage()
    stub.error = None
    caplog.clear()
    client.log_event("sid", "e")
    assert any("accepts calls again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("status", [400, 413])
def test_a_call_refused_as_sent_counts_as_invalid(status):
    from datacat import _accounting
    error = DaemonHTTPError(status, "payload_too_large", "too large")
    client = DatacatClient(daemon=StubDaemon(error=error))
    before = _accounting.undelivered()
    assert client.log_event("sid", "e") is False
    after = _accounting.undelivered()
    assert after["invalid"] == before["invalid"] + 1
    assert after["failed"] == before["failed"]
    assert client.get_stats()["failed"] == 1


def test_non_finite_metric_is_dropped_not_raised(session, stub):
    assert session.log_metric("fps", float("nan")) is False
    assert "/metric" not in [c[1] for c in stub.calls]
    assert session.get_stats()["failed"] == 1


def test_programming_errors_raise(session):
    with pytest.raises(TypeError):
        session.update_state("not a dict")
    with pytest.raises(ValueError):
        session.log_metric("fps", "fast")
    with pytest.raises(ValueError):
        session.log_event("")
    with pytest.raises(ValueError):
        session.log_metric("fps", 1, metric_type="speed")


def test_unregistered_session_drops_calls(monkeypatch):
    stub = StubDaemon(error=DaemonStartError("no binary"))
    monkeypatch.setattr(datacat.client, "shared_daemon", lambda **kw: stub)
    s = datacat.create_session(product="p", version="1")
    assert s.registered is False and s.session_id  # the id the client minted
    assert s.log_event("e") is False
    assert s.update_state({"a": 1}) is False
    assert s.end() is False
    assert len(stub.calls) == 1  # only the register attempt reached the daemon
    assert s.get_stats() == {"sent": 0, "failed": 4}


def test_missing_binary_does_not_raise(monkeypatch, tmpdir):
    monkeypatch.setenv("DATACAT_DAEMON_BIN", os.path.join(str(tmpdir), "nope"))
    monkeypatch.setenv("DATACAT_DAEMON_LOG", "devnull")
    try:
        s = datacat.create_session(product="p", version="1")
        assert s.registered is False
        assert "nope" in s.client.last_error
        assert s.heartbeat() is False
        assert s.get_stats()["failed"] == 2
    finally:
        _daemon.stop_shared_daemons()


def test_create_session_options(monkeypatch, stub):
    seen = {}

    def fake_shared(**kwargs):
        seen.update(kwargs)
        return stub

    monkeypatch.setattr(datacat.client, "shared_daemon", fake_shared)
    s = datacat.create_session("http://query:8080/", "space-game", "1.5.0", "nats://n:4222", 4567,
                               async_mode=False, queue_size=10, use_daemon=True,
                               startup_timeout=3, timeout=2)
    assert s.session_id == "sid-1"
    assert s.client.base_url == "http://query:8080"
    assert seen == {"daemon_port": 4567, "nats_url": "nats://n:4222", "daemon_binary": None,
                    "startup_timeout": 3}
    assert s.client.timeout == 2
    with pytest.raises(TypeError):
        datacat.create_session(product="p", version="1", no_such_option=1)


def test_async_mode_gives_an_async_session(monkeypatch, stub):
    monkeypatch.setattr(datacat.client, "shared_daemon", lambda **kw: stub)
    s = datacat.create_session(product="p", version="1", async_mode=True, queue_size=7,
                               capture_uncaught=False)
    try:
        assert isinstance(s, datacat.AsyncSession)
        minted = s.session_id
        assert s.queue_size == 7 and uuid.UUID(minted).version == 7  # known at once
        assert s.flush(5)  # registered from the background thread
        assert stub.bodies("/register")[0]["session_id"] == minted
    finally:
        s.end()


def test_log_exception(session, stub):
    try:
        {}["missing"]
    except KeyError:
        session.log_exception(extra_data={"context": "loading"})
    body = stub.bodies("/event")[0]
    assert body["name"] == "exception"
    assert body["level"] == "error"
    assert body["labels"] == ["exception", "KeyError"]
    assert body["data"] == {"context": "loading"}
    assert body["exception"]["type"] == "KeyError"
    assert body["exception"]["frames"][-1]["function"] == "test_log_exception"


def test_public_api():
    for name in ("create_session", "Session", "DatacatClient", "DaemonManager", "__version__"):
        assert hasattr(datacat, name)
    assert datacat.__version__ == "0.1.0"


def test_log_exception_without_active_exception(session, stub):
    if hasattr(sys, "exc_clear"):
        sys.exc_clear()  # Python 2 keeps the last handled exception around
    session.log_exception()
    exc = stub.bodies("/event")[0]["exception"]
    assert exc["type"] == "Unknown"
    assert exc["frames"] and all(isinstance(f["line"], int) for f in exc["frames"])
    assert exc["frames"][-1]["function"] == "test_log_exception_without_active_exception"


def test_end_not_delivered_is_success_with_warning(caplog):
    class Undelivered(StubDaemon):
        def request(self, method, path, body=None, timeout=None, deadline=None):
            if path == "/end":
                return {"status": "ok", "delivered": False}
            return StubDaemon.request(self, method, path, body, timeout)

    client = DatacatClient(daemon=Undelivered())
    assert client.end_session("sid") == {"status": "ok", "delivered": False}
    assert client.get_stats() == {"sent": 1, "failed": 0}
    assert any("not acknowledged" in r.getMessage() for r in caplog.records)


class BehindDaemon(StubDaemon):
    """Answers reads from before the client's last write ``behind`` times."""

    def __init__(self, behind, answer_key):
        StubDaemon.__init__(self)
        self.behind = behind
        self.answer_key = answer_key

    def request(self, method, path, body=None, timeout=None, deadline=None):
        if method != "GET":
            answer = StubDaemon.request(self, method, path, body, timeout, deadline)
            return dict(answer, seq=7) if path == "/event" else answer
        self.calls.append((method, path, body, timeout))
        late = self.behind > 0
        self.behind -= 1
        if self.answer_key == "caught_up":
            return {"source": "server", "caught_up": not late}
        return {"last_seq": 6 if late else 7}


@pytest.mark.parametrize("answer_key", ["caught_up", "last_seq"])
def test_a_read_behind_the_clients_last_write_is_asked_again(answer_key):
    daemon = BehindDaemon(2, answer_key)
    client = DatacatClient(daemon=daemon, read_timeout=5)
    client.log_event("sid-1", "e")
    answer = client.get_session("sid-1")
    reads = [c for c in daemon.calls if c[0] == "GET"]
    assert len(reads) == 3 and "min_seq=7" in reads[0][1], reads
    assert answer == ({"source": "server", "caught_up": True} if answer_key == "caught_up"
                      else {"last_seq": 7})


def test_a_read_still_behind_at_the_read_timeout_is_answered_as_it_is():
    daemon = BehindDaemon(10 ** 6, "caught_up")
    client = DatacatClient(daemon=daemon, read_timeout=0.6)
    client.log_event("sid-1", "e")
    started = time.time()
    assert client.get_session("sid-1") == {"source": "server", "caught_up": False}
    assert time.time() - started < 3
    assert len([c for c in daemon.calls if c[0] == "GET"]) <= 4, "a service that does not wait is not hammered"

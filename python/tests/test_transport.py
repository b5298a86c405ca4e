"""Unit tests: the keep-alive HTTP/JSON transport, against a stdlib HTTP server."""

from __future__ import absolute_import

import json
import socket
import threading
import time

import pytest

from datacat._transport import DaemonHTTPError, HTTPJSONTransport, TransportError

try:
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from socketserver import ThreadingMixIn
except ImportError:  # Python 2
    from BaseHTTPServer import BaseHTTPRequestHandler, HTTPServer
    from SocketServer import ThreadingMixIn


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one write per response (no Nagle / delayed-ACK stalls)

    def log_message(self, *args):
        pass

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        self.server.connections += 1

    def _reply(self, status, raw, close=False):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
        if close:
            # Drop the connection without announcing it (like an idle timeout).
            self.wfile.flush()
            self.close_connection = True

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.bodies.append((self.path, body, self.headers.get("Content-Type")))
        if self.path == "/echo":
            self._reply(200, json.dumps({"got": json.loads(body.decode("utf-8"))}).encode("utf-8"))
        elif self.path == "/bad":
            self._reply(400, b'{"error":"bad_json","message":"invalid JSON body"}')
        elif self.path == "/plain":
            self._reply(500, b"internal oops")
        elif self.path == "/notjson":
            self._reply(200, b"<html>")
        elif self.path == "/slow":
            time.sleep(1.0)
            self._reply(200, b"{}")
        elif self.path == "/slower":
            time.sleep(5.0)
            self._reply(200, b"{}")
        elif self.path == "/close":
            self._reply(200, b'{"status":"ok"}', close=True)
        else:
            self._reply(404, b'{"error":"not_found","message":"no route"}')

    def do_GET(self):
        self._reply(200, b'{"status":"ok","sessions":0}')


@pytest.fixture
def server():
    srv = _Server(("127.0.0.1", 0), Handler)
    srv.connections = 0
    srv.bodies = []
    thread = threading.Thread(target=srv.serve_forever)
    thread.daemon = True
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def test_json_round_trip_on_one_connection(server):
    t = HTTPJSONTransport("127.0.0.1", server.server_address[1])
    for i in range(5):
        assert t.request("POST", "/echo", {"i": i}) == {"got": {"i": i}}
    assert t.request("GET", "/health") == {"status": "ok", "sessions": 0}
    assert server.connections == 1
    path, raw, ctype = server.bodies[0]
    assert ctype == "application/json"
    assert json.loads(raw.decode("utf-8")) == {"i": 0}
    t.close()


def test_error_body_becomes_daemon_http_error(server):
    t = HTTPJSONTransport("127.0.0.1", server.server_address[1])
    with pytest.raises(DaemonHTTPError) as info:
        t.request("POST", "/bad", {})
    assert info.value.status == 400
    assert info.value.error == "bad_json"
    assert info.value.message == "invalid JSON body"
    with pytest.raises(DaemonHTTPError) as info:
        t.request("POST", "/plain", {})
    assert info.value.status == 500 and "internal oops" in info.value.message
    # the connection is still usable after error answers
    assert t.request("POST", "/echo", {"a": 1}) == {"got": {"a": 1}}
    assert server.connections == 1


def test_non_json_success_is_bad_response(server):
    t = HTTPJSONTransport("127.0.0.1", server.server_address[1])
    with pytest.raises(TransportError) as info:
        t.request("POST", "/notjson", {})
    assert info.value.kind == "bad-response"


def test_server_closing_idle_connection_is_retried(server):
    t = HTTPJSONTransport("127.0.0.1", server.server_address[1])
    assert t.request("POST", "/close", {}) == {"status": "ok"}
    time.sleep(0.1)
    assert t.request("POST", "/echo", {"x": 2}) == {"got": {"x": 2}}
    assert server.connections == 2
    assert [b[0] for b in server.bodies] == ["/close", "/echo"]


def test_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    t = HTTPJSONTransport("127.0.0.1", port)
    with pytest.raises(TransportError) as info:
        t.request("POST", "/x", {})
    assert info.value.kind == "refused"


def test_timeout(server):
    t = HTTPJSONTransport("127.0.0.1", server.server_address[1])
    with pytest.raises(TransportError) as info:
        t.request("POST", "/slow", {}, timeout=0.2)
    assert info.value.kind == "timeout"
    # A peer that did not answer is left alone for a while: calls fail at once...
    started = time.time()
    with pytest.raises(TransportError) as info:
        t.request("POST", "/echo", {"y": 1}, timeout=5)
    assert info.value.kind == "backoff" and time.time() - started < 0.5
    # ...and after the backoff a call opens a fresh connection and works.
    time.sleep(1.1)
    assert t.request("POST", "/echo", {"y": 1}, timeout=5) == {"got": {"y": 1}}
    assert t.backoff.failures == 0


def test_backoff_doubles_up_to_its_cap():
    from datacat._transport import MAX_BACKOFF, Backoff, _clock

    backoff = Backoff()
    waits = []
    for _ in range(8):
        backoff.failed()
        waits.append(round(backoff.retry_at - _clock()))
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30] and MAX_BACKOFF == 30
    backoff.succeeded()
    backoff.check("x")  # does not raise


def test_deadline_bounds_the_request(server):
    from datacat._transport import deadline_after

    t = HTTPJSONTransport("127.0.0.1", server.server_address[1])
    started = time.time()
    with pytest.raises(TransportError) as info:
        t.request("POST", "/slow", {}, timeout=30, deadline=deadline_after(0.3))
    assert info.value.kind == "timeout" and time.time() - started < 5
    with pytest.raises(TransportError) as info:
        t.request("POST", "/echo", {}, deadline=deadline_after(0) - 1)
    assert info.value.kind == "deadline"


def test_a_slow_request_does_not_hold_up_another(server):
    t = HTTPJSONTransport("127.0.0.1", server.server_address[1])
    slow = threading.Thread(target=t.request, args=("POST", "/slower", {}), kwargs={"timeout": 10})
    slow.start()
    time.sleep(0.2)
    started = time.time()
    assert t.request("POST", "/echo", {"z": 1}) == {"got": {"z": 1}}
    assert time.time() - started < 2  # not queued behind the slow one (5 s)
    slow.join()


def test_thread_safety(server):
    t = HTTPJSONTransport("127.0.0.1", server.server_address[1])
    errors = []

    def worker(n):
        try:
            for i in range(20):
                assert t.request("POST", "/echo", {"n": n, "i": i}) == {"got": {"n": n, "i": i}}
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert server.connections <= 4  # at most one per concurrent request, then reused
    before = server.connections
    for i in range(10):
        t.request("POST", "/echo", {"i": i})
    assert server.connections == before

"""HTTP + JSON to the daemon (or the query service) over kept-alive connections.

``HTTPJSONTransport`` is thread-safe. Each request takes an idle connection
(or opens one) and gives it back after the answer, so one slow request never
holds up another: an ``end()`` is not queued behind a batch stuck on a server
that does not answer. It knows nothing about starting daemons;
``_daemon.DaemonManager`` wraps it with the restart-and-retry policy.

A peer that fails to answer (refused, reset, timed out) is left alone for a
backoff: 1 s after the first failure, doubling up to 30 s, during which every
request fails at once with ``TransportError(kind="backoff")``. So a dead or
black-holed server costs the application one timeout, not one per call.
"""

from __future__ import absolute_import

import errno
import json
import os
import socket
import threading
import time

from ._compat import ConnectionErrorTypes, http_client, text_type
from ._payload import encode_json

#: Per-request timeouts: a loopback daemon answers in well under a millisecond, the query
#: service over a network in a few.
DEFAULT_TIMEOUT = 2.0
DEFAULT_DIRECT_TIMEOUT = 5.0

#: Idle connections kept per peer.
MAX_IDLE_CONNECTIONS = 4

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0

_clock = getattr(time, "monotonic", time.time)

_REFUSED_ERRNOS = set([errno.ECONNREFUSED, 10061])  # 10061: WSAECONNREFUSED
_RESET_ERRNOS = set(
    [
        errno.ECONNRESET,
        errno.EPIPE,
        errno.ECONNABORTED,
        getattr(errno, "ESHUTDOWN", errno.EPIPE),
        10053,  # WSAECONNABORTED
        10054,  # WSAECONNRESET
    ]
)


class TransportError(Exception):
    """The request did not get an HTTP answer from the daemon.

    ``kind`` is one of ``"refused"`` (nothing listening: the daemon is gone),
    ``"reset"`` (the connection broke), ``"timeout"``, ``"bad-response"`` (an
    answer that is not the JSON the contract promises), ``"backoff"`` (the peer
    failed recently and is left alone for a while), ``"deadline"`` (the
    caller's time was up before the request could be sent) or ``"error"``.
    """

    def __init__(self, message, kind="error", cause=None):
        Exception.__init__(self, message)
        self.kind = kind
        self.cause = cause


class DaemonHTTPError(Exception):
    """The daemon answered with an HTTP error (``{"error", "message"}`` body)."""

    def __init__(self, status, error, message, body=None):
        Exception.__init__(self, "HTTP %d %s: %s" % (status, error, message))
        self.status = status
        self.error = error
        self.message = message
        self.body = body


def classify_error(exc):
    """Map a low-level exception to a ``TransportError.kind``."""
    if isinstance(exc, socket.timeout):
        return "timeout"
    code = getattr(exc, "errno", None)
    if code in _REFUSED_ERRNOS:
        return "refused"
    if code in _RESET_ERRNOS:
        return "reset"
    if isinstance(exc, (http_client.BadStatusLine, http_client.IncompleteRead)):
        # includes RemoteDisconnected (3.5+): the peer closed a kept-alive connection
        return "reset"
    return "error"


def _close(conn):
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass


def _no_delay(sock):
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, IOError, AttributeError):
        pass


class _Connection(http_client.HTTPConnection):
    """HTTPConnection with Nagle off: small JSON requests go out at once."""

    def connect(self):
        http_client.HTTPConnection.connect(self)
        _no_delay(self.sock)


class _SecureConnection(http_client.HTTPSConnection):
    """The same over TLS (the query service behind a TLS proxy)."""

    def connect(self):
        http_client.HTTPSConnection.connect(self)
        _no_delay(self.sock)


def remaining(deadline):
    """Seconds left until ``deadline`` (a ``_clock()`` value; None: no deadline)."""
    if deadline is None:
        return None
    return deadline - _clock()


def deadline_after(seconds):
    """The ``_clock()`` value ``seconds`` from now."""
    return _clock() + max(0.0, float(seconds))


class Backoff(object):
    """Failures of one peer in a row, and until when it is left alone."""

    def __init__(self):
        self._lock = threading.Lock()
        self.failures = 0
        self.retry_at = None

    def check(self, what):
        """Raise ``TransportError(kind="backoff")`` while the peer is left alone."""
        retry_at = self.retry_at
        if retry_at is None:
            return
        wait = retry_at - _clock()
        if wait > 0:
            raise TransportError("%s: not tried, the peer failed %d time(s) in a row; next try in %.1f s"
                                 % (what, self.failures, wait), kind="backoff")

    def failed(self):
        with self._lock:
            self.failures += 1
            self.retry_at = _clock() + min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(self.failures - 1, 5))

    def succeeded(self):
        if self.failures:
            with self._lock:
                self.failures = 0
                self.retry_at = None


class HTTPJSONTransport(object):
    """JSON requests to ``http://host:port`` on kept-alive connections."""

    user_agent = "datacat-python"

    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT, secure=False):
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self.secure = secure
        self.extra_headers = {}
        self.backoff = Backoff()
        self._lock = threading.Lock()  # the idle list only; never held during I/O
        self._idle = []
        self._pid = os.getpid()

    @property
    def base_url(self):
        return "%s://%s:%d" % ("https" if self.secure else "http", self.host, self.port)

    # -- connections ---------------------------------------------------------

    def _take(self, timeout):
        """An idle connection (and True), or a new one (and False)."""
        with self._lock:
            if self._pid != os.getpid():
                # The sockets belong to the parent's conversation: forget them
                # (closing our copies does not affect the parent).
                self._pid = os.getpid()
                idle, self._idle = self._idle, []
                for conn in idle:
                    _close(conn)
            conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        if conn is None:
            connection = _SecureConnection if self.secure else _Connection
            conn = connection(self.host, self.port, timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            try:
                conn.sock.settimeout(timeout)
            except (OSError, IOError):
                pass
        return conn, reused

    def _give_back(self, conn):
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        _close(conn)

    # -- public API ----------------------------------------------------------

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)

    def request(self, method, path, body=None, timeout=None, deadline=None):
        """Send one request; return the decoded JSON answer (a dict).

        ``body`` is a JSON-serialisable object or already-encoded bytes.
        ``timeout`` bounds the request (default: the transport's); ``deadline``
        (a ``_clock()`` value) bounds it too. Raises ``TransportError`` or
        ``DaemonHTTPError``.
        """
        if timeout is None:
            timeout = self.timeout
        left = remaining(deadline)
        # A request cut short by the caller's deadline says nothing about the peer.
        cut_short = left is not None and left < timeout
        if left is not None:
            if left <= 0:
                raise TransportError("%s %s: the deadline passed before it was sent" % (method, path),
                                     kind="deadline")
            timeout = min(timeout, left)
        self.backoff.check("%s %s to %s" % (method, path, self.base_url))
        data = None
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        headers.update(self.extra_headers)
        if body is not None:
            data = body if isinstance(body, bytes) else encode_json(body)
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            conn, reused = self._take(timeout)
            try:
                conn.request(method, path, data, headers)
                resp = conn.getresponse()
                raw = resp.read()
            except ConnectionErrorTypes as exc:
                _close(conn)
                kind = classify_error(exc)
                if kind == "reset" and reused and attempt == 1:
                    # The peer closed an idle kept-alive connection before
                    # reading our request: safe to send it again once.
                    continue
                if not (cut_short and kind == "timeout"):
                    self.backoff.failed()
                raise TransportError(
                    "%s %s to %s failed: %s" % (method, path, self.base_url, exc or type(exc).__name__),
                    kind=kind,
                    cause=exc,
                )
            if resp.will_close:
                _close(conn)
            else:
                self._give_back(conn)
            try:
                answer = self._decode(method, path, resp.status, raw)
            except TransportError:
                self.backoff.failed()
                raise
            self.backoff.succeeded()
            return answer

    def _decode(self, method, path, status, raw):
        parsed = None
        if raw:
            try:
                text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        if 200 <= status < 300:
            if parsed is None and raw:
                raise TransportError(
                    "%s %s: daemon answered %d with a body that is not JSON: %r"
                    % (method, path, status, raw[:200]),
                    kind="bad-response",
                )
            return parsed if parsed is not None else {}
        error = "http_%d" % status
        message = raw.decode("utf-8", "replace")[:500] if isinstance(raw, bytes) else text_type(raw)
        if isinstance(parsed, dict):
            error = text_type(parsed.get("error", error))
            message = text_type(parsed.get("message", message))
        raise DaemonHTTPError(status, error, message, body=parsed)

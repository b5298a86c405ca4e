"""HTTP + JSON to the local daemon over one kept-alive connection.

``HTTPJSONTransport`` is thread-safe: requests are serialised on a lock (a
loopback round trip is a fraction of a millisecond, and the daemon is the
only peer). It knows nothing about starting daemons; ``_daemon.DaemonManager``
wraps it with the restart-and-retry policy.
"""

from __future__ import absolute_import

import errno
import json
import os
import socket
import threading

from ._compat import ConnectionErrorTypes, http_client, text_type
from ._payload import encode_json

DEFAULT_TIMEOUT = 10.0

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
    answer that is not the JSON the contract promises) or ``"error"``.
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


class HTTPJSONTransport(object):
    """JSON requests to ``http://host:port`` on one persistent connection."""

    user_agent = "datacat-python"

    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT, secure=False):
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self.secure = secure
        self.extra_headers = {}
        self._lock = threading.Lock()
        self._conn = None
        self._conn_used = False
        self._pid = os.getpid()

    @property
    def base_url(self):
        return "%s://%s:%d" % ("https" if self.secure else "http", self.host, self.port)

    # -- connection management (call with the lock held) -------------------

    def _check_fork(self):
        if self._pid != os.getpid():
            # The socket belongs to the parent's conversation with its daemon:
            # forget it (closing our copy of the descriptor does not affect the
            # parent) and let the caller open a fresh one.
            self._pid = os.getpid()
            self._drop_conn()

    def _drop_conn(self):
        conn, self._conn = self._conn, None
        self._conn_used = False
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _get_conn(self, timeout):
        if self._conn is None:
            connection = _SecureConnection if self.secure else _Connection
            self._conn = connection(self.host, self.port, timeout=timeout)
            self._conn_used = False
        conn = self._conn
        conn.timeout = timeout
        if conn.sock is not None:
            try:
                conn.sock.settimeout(timeout)
            except (OSError, IOError):
                pass
        return conn

    # -- public API ----------------------------------------------------------

    def close(self):
        with self._lock:
            self._drop_conn()

    def request(self, method, path, body=None, timeout=None):
        """Send one request; return the decoded JSON answer (a dict).

        ``body`` is a JSON-serialisable object or already-encoded bytes.
        Raises ``TransportError`` or ``DaemonHTTPError``.
        """
        if timeout is None:
            timeout = self.timeout
        data = None
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        headers.update(self.extra_headers)
        if body is not None:
            data = body if isinstance(body, bytes) else encode_json(body)
            headers["Content-Type"] = "application/json"
        with self._lock:
            self._check_fork()
            attempt = 0
            while True:
                attempt += 1
                reused = self._conn is not None and self._conn_used
                conn = self._get_conn(timeout)
                try:
                    conn.request(method, path, data, headers)
                    resp = conn.getresponse()
                    raw = resp.read()
                except ConnectionErrorTypes as exc:
                    self._drop_conn()
                    kind = classify_error(exc)
                    if kind == "reset" and reused and attempt == 1:
                        # The daemon closed an idle kept-alive connection before
                        # reading our request: safe to send it again once.
                        continue
                    raise TransportError(
                        "%s %s to %s failed: %s" % (method, path, self.base_url, exc or type(exc).__name__),
                        kind=kind,
                        cause=exc,
                    )
                self._conn_used = True
                if resp.will_close:
                    self._drop_conn()
                return self._decode(method, path, resp.status, raw)

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

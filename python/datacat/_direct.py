"""Talking to the query service's direct-write endpoints instead of a daemon.

``use_daemon=False`` gives the client a ``DirectBackend`` in place of the
``DaemonManager``: the same ``request(method, path, body)`` interface, with the
daemon's paths mapped onto the query service's ``/api/sessions/...`` routes
(docs/query-api.md). Without a daemon nobody watches the process: a crash is
only reported if the client itself sees it (the uncaught-exception hook), and
hang detection is the client's ``HeartbeatMonitor`` alone.
"""

from __future__ import absolute_import

import os

from ._compat import parse_qs, quote, urlsplit
from ._payload import session_id_of
from ._transport import DEFAULT_DIRECT_TIMEOUT, HTTPJSONTransport

#: Daemon path -> the query service's path under /api/sessions/{id}.
_SESSION_PATHS = {
    "/state": "state",
    "/event": "events",
    "/metric": "metrics",
    "/heartbeat": "heartbeat",
    "/batch": "batch",
}

#: Hang monitoring lives in the daemon; without one these calls have nothing to do.
_DAEMON_ONLY = ("/start_heartbeat_monitor", "/stop_heartbeat_monitor", "/pause_heartbeat",
                "/resume_heartbeat")


class DirectBackend(object):
    """Sends the client's calls to ``base_url`` (the query service).

    ``token`` (default ``$DATACAT_WRITE_TOKEN``) is sent as a bearer token.
    """

    def __init__(self, base_url, token=None, timeout=DEFAULT_DIRECT_TIMEOUT):
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("use_daemon=False needs base_url=http(s)://host:port of the query service, got %r"
                             % (base_url,))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.transport = HTTPJSONTransport(parts.hostname, port, timeout=timeout,
                                           secure=parts.scheme == "https")
        self.prefix = parts.path.rstrip("/")
        token = token if token is not None else os.environ.get("DATACAT_WRITE_TOKEN")
        if token:
            self.transport.extra_headers["Authorization"] = "Bearer %s" % (token,)

    @property
    def base_url(self):
        return self.transport.base_url + self.prefix

    def request(self, method, path, body=None, timeout=None, deadline=None):
        route, body = self._route(method, path, body)
        if route is None:
            return {"status": "ok", "note": "no daemon: %s is not needed" % (path,)}
        return self.transport.request(method, self.prefix + route, body, timeout=timeout,
                                      deadline=deadline)

    def _route(self, method, path, body):
        if method == "GET":
            if path.startswith("/session?"):
                params = parse_qs(path.split("?", 1)[1])
                route = "/api/sessions/%s" % (quote(params.get("session_id", [""])[0], safe=""),)
                if params.get("min_seq"):
                    route += "?min_seq=%s" % (quote(params["min_seq"][0], safe=""),)
                return route, None
            if path == "/sessions":
                return "/api/sessions", None
            return path, None
        if path == "/register":
            body = dict(body)
            body.pop("parent_pid", None)
            body.pop("query_url", None)
            return "/api/sessions", body
        if path in _DAEMON_ONLY:
            return None, None
        session_id = session_id_of(body) or ""
        session = quote(session_id.encode("utf-8") if not isinstance(session_id, str) else session_id,
                        safe="")
        if path == "/end":
            crashed = not isinstance(body, bytes) and body.get("crashed")
            return "/api/sessions/%s/%s" % (session, "crash" if crashed else "end"), body
        if path in _SESSION_PATHS:
            return "/api/sessions/%s/%s" % (session, _SESSION_PATHS[path]), body
        raise ValueError("no direct-write route for %s %s" % (method, path))

    def close(self):
        self.transport.close()

"""``DatacatClient``: the lower-level API, one method per daemon endpoint.

Every method takes the session id explicitly. Transport problems (daemon
missing, exited, refusing, timing out, answering with an error) never raise:
they are logged on the ``datacat`` logger and counted in ``get_stats()``, and
the method returns False. Misuse of the API (missing product/version, a state
that is not a dict, a metric value that is not a number) raises
``ValueError``/``TypeError`` like any other Python API.

Timeouts: each call gives up after ``timeout`` (2 s to a loopback daemon, 5 s
to the query service without one); a peer that fails to answer is then left
alone for a backoff (``_transport.Backoff``) and calls fail at once meanwhile.
``end_session`` is bounded by one deadline (``end_timeout``: 2 s with a
daemon, which has the data on disk by then; 3 s without one).
"""

from __future__ import absolute_import

import logging
import os
import threading
import time
import traceback

from . import _accounting, _config, _payload
from ._compat import quote as _quote, string_types
from ._daemon import DaemonStartError, shared_daemon
from ._direct import DirectBackend
from ._ids import uuid7
from ._payload import InvalidRecord
from ._transport import (DEFAULT_DIRECT_TIMEOUT, DEFAULT_TIMEOUT, DaemonHTTPError, TransportError,
                         deadline_after, remaining)

log = logging.getLogger("datacat")

#: The whole of ``end``, requests included. With a daemon the session's data is in its
#: spool when ``/end`` answers (JetStream's acknowledgement is waited for only while time
#: is left); without one, ``end`` is a single request to the query service.
DEFAULT_END_TIMEOUT = 2.0
DEFAULT_DIRECT_END_TIMEOUT = 3.0

#: Reading a session back: the query service waits up to 2 s for the writer's last batch
#: to be applied, so reads get longer than other calls.
DEFAULT_READ_TIMEOUT = 5.0

#: Of an ``end`` deadline, what is kept for the answer to travel back: the daemon is asked
#: to wait for JetStream only for the rest.
_END_MARGIN = 0.5


_DAEMON_OPTIONS = ("startup_timeout", "log_path", "extra_args")

_FAILURES = (TransportError, DaemonHTTPError, DaemonStartError, InvalidRecord)


def _refused_as_sent(exc):
    """Whether a call was refused for what it is (invalid, or larger than the daemon takes:
    400 or 413), so that sending it again could not help."""
    if isinstance(exc, InvalidRecord):
        return True
    return isinstance(exc, DaemonHTTPError) and exc.status in (400, 413)
_UNREACHABLE = ("TransportError", "DaemonStartError")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _caller_stack():
    """The current stack without this package's own frames."""
    stack = traceback.extract_stack()
    while stack and os.path.dirname(os.path.abspath(stack[-1][0])) == _PACKAGE_DIR:
        stack.pop()
    return stack


def _build_batch(session_id, items, timestamp=None):
    # Each item carries its own call time; the request's own timestamp is not needed.
    return {"session_id": _payload._require_session_id(session_id), "items": items}


class DatacatClient(object):
    """Talks to this process's shared daemon (started on first use).

    ``base_url`` is the query service URL (default ``$DATACAT_URL``, then
    ``$DATACAT_QUERY_URL``):
    with ``use_daemon=False`` the calls go there (its direct-write endpoints;
    ``token`` or ``$DATACAT_WRITE_TOKEN`` as bearer token); with a daemon the
    daemon reads sessions back from it (``get_session``). ``daemon_port`` is
    ``"auto"`` or a fixed loopback port for the daemon; ``nats_url`` defaults
    to ``$DATACAT_NATS_URL``; ``daemon_binary`` overrides the binary lookup.
    ``daemon`` may be an explicit ``DaemonManager`` instead of the shared one.
    ``timeout``, ``end_timeout`` and ``read_timeout`` bound calls, ``end`` and
    reads (defaults above). ``disabled=True``: every call does nothing and
    returns False (or None for reads), no daemon is started, nothing is counted.
    ``capture_locals=True``: exceptions carry their innermost frames' local variables
    (as text, cut: ``_payload.LOCALS_*``); off by default, since they may hold secrets.
    """

    def __init__(self, base_url=None, daemon_port="auto", nats_url=None, daemon_binary=None,
                 timeout=None, end_timeout=None, daemon=None, use_daemon=True, token=None,
                 read_timeout=DEFAULT_READ_TIMEOUT, disabled=False, capture_locals=False,
                 **daemon_options):
        unknown = [k for k in daemon_options if k not in _DAEMON_OPTIONS]
        if unknown:
            raise TypeError("unexpected keyword argument(s): %s" % ", ".join(sorted(unknown)))
        base_url = _config.query_url(base_url)
        self.disabled = bool(disabled)
        self.capture_locals = bool(capture_locals)
        self.base_url = base_url.rstrip("/") if base_url else base_url
        self.use_daemon = bool(use_daemon)
        if timeout is None:
            timeout = DEFAULT_TIMEOUT if self.use_daemon else DEFAULT_DIRECT_TIMEOUT
        if end_timeout is None:
            end_timeout = DEFAULT_END_TIMEOUT if self.use_daemon else DEFAULT_DIRECT_END_TIMEOUT
        self.timeout = timeout
        self.end_timeout = end_timeout
        self.read_timeout = read_timeout
        if daemon is None and not use_daemon and not self.disabled:
            daemon = DirectBackend(base_url, token=token, timeout=timeout)
        if daemon is None and not self.disabled:
            daemon = shared_daemon(
                daemon_port=daemon_port, nats_url=nats_url, daemon_binary=daemon_binary, **daemon_options
            )
        self.daemon = daemon
        self._stats_lock = threading.Lock()
        self._sent = 0
        self._failed = 0
        self._problems = set()  # (call, error type) seen since the last success
        self._counter_totals = {}  # (session, name, tags) -> total, without a daemon only
        self._last_seq = {}  # session -> the last batch a write of it was published as
        self.last_error = None

    # Another name of ``daemon``.
    @property
    def daemon_manager(self):
        return self.daemon

    @property
    def daemon_url(self):
        return self.daemon.base_url if self.daemon is not None else None

    # -- bookkeeping -------------------------------------------------------------

    def get_stats(self):
        """``{"sent": n, "failed": n}``: calls the daemon accepted / that were lost."""
        with self._stats_lock:
            return {"sent": self._sent, "failed": self._failed}

    def _succeeded(self, calls=1):
        with self._stats_lock:
            self._sent += calls
            recovered = any(kind in _UNREACHABLE for _, kind in self._problems)
            self._problems.clear()
        if recovered:
            log.info("the daemon accepts calls again")

    def _failed_call(self, what, exc, calls=1):
        """``calls`` calls were lost because of ``exc``: counted, logged; returns False."""
        with self._stats_lock:
            self._failed += calls
        _accounting.count("invalid" if _refused_as_sent(exc) else "failed", calls)
        self._log_failure(what, exc)
        return False

    def _log_failure(self, what, exc):
        problem = "%s: %s" % (type(exc).__name__, exc)
        with self._stats_lock:
            key = (what, type(exc).__name__)
            repeated = key in self._problems
            self._problems.add(key)
            self.last_error = problem
        # One warning per kind of failure until a call succeeds again; repeats go to debug so that a dead
        # daemon does not flood the application's log at 60 calls a second.
        if repeated:
            log.debug("call %s failed: %s", what, problem)
        else:
            _accounting.report_problem("call %s failed, its data is lost: %s" % (what, problem))
            log.warning("call %s failed, its data is lost (repeats of this failure are logged at debug level): %s",
                        what, problem)

    def _post(self, path, build, *args, **kwargs):
        """Build a body (programming errors raise), send it (failures are counted)."""
        if self.disabled:
            return False
        timeout = kwargs.pop("_timeout", None) or self.timeout
        deadline = kwargs.pop("_deadline", None)
        try:
            body = build(*args, **kwargs)
        except InvalidRecord as exc:
            return self._failed_call(path, exc)
        try:
            result = self.request("POST", path, body, timeout=timeout, deadline=deadline)
        except _FAILURES as exc:
            return self._failed_call(path, exc)
        except Exception as exc:  # noqa: BLE001 - never let monitoring break the application
            log.debug("unexpected error", exc_info=True)
            return self._failed_call(path, exc)
        self._succeeded()
        return result

    def request(self, method, path, body=None, timeout=None, deadline=None):
        """One request to the daemon (or the query service); remembers the batch sequence
        a write answers with, for reading it back. Raises the transport's errors."""
        try:
            answer = self.daemon.request(method, path, body, timeout=timeout, deadline=deadline)
        except DaemonHTTPError as exc:
            self._remember_seq(body, exc.body)  # some items of a batch refused, the rest written
            raise
        if method == "POST":
            self._remember_seq(body, answer)
        return answer

    def _remember_seq(self, body, answer):
        seq = answer.get("seq", answer.get("last_seq")) if isinstance(answer, dict) else None
        if isinstance(seq, int) and not isinstance(seq, bool):
            session_id = _payload.session_id_of(body)
            if session_id:
                self.wrote(session_id, seq)

    def wrote(self, session_id, seq):
        """Remember that a write of ``session_id`` was published as batch ``seq``."""
        with self._stats_lock:
            if seq > self._last_seq.get(session_id, -1):
                self._last_seq[session_id] = seq

    def _session_call(self, path, build, session_id, *args, **kwargs):
        if self.disabled:
            return False
        if session_id is None:
            # create_session() could not register (daemon unavailable): keep
            # the application running and account for the lost call.
            return self._failed_call(path, TransportError("the session was never registered", kind="no-session"))
        if not isinstance(session_id, string_types):
            raise TypeError("session_id must be a string, got %r" % (session_id,))
        kwargs.setdefault("timestamp", time.time())
        return self._post(path, build, session_id, *args, **kwargs)

    # -- the endpoints -------------------------------------------------------------

    def create_session(self, product, version, session_id=None, timeout=None, environment=None,
                       tags=None):
        """Register a session; return its id, or None if it could not be registered.

        ``session_id`` names it (a UUID; by default the client mints a
        time-ordered one). Registering the same id again is harmless.
        ``environment`` (``production``, ``ci``, ...) and ``tags`` (a dict of text) are
        what the API filters on (``environment=``, ``tag=key:value``).
        """
        if not product or not version:
            raise ValueError("Product and version are required to create a session")
        if session_id is None:
            session_id = uuid7()
        result = self._post(
            "/register",
            _register_body,
            product,
            version,
            session_id,
            self.base_url if self.use_daemon else None,
            environment,
            tags,
            _timeout=timeout,
        )
        if result is False:
            return None
        answered = result.get("session_id") if isinstance(result, dict) else None
        if not answered:
            with self._stats_lock:
                self._sent -= 1
            self._failed_call("/register", TransportError(
                "daemon answered without a session_id: %r" % (result,), kind="bad-response"))
            return None
        return answered

    #: Another name of ``create_session``.
    register_session = create_session

    def update_state(self, session_id, state):
        """Deep-merge ``state`` into the session state (``None`` values delete keys)."""
        return self._session_call("/state", _payload.build_state, session_id, state)

    def log_event(self, session_id, name, level=None, category=None, labels=None, message=None,
                  data=None, group=None, exception=None):
        """Log an event. ``level``: debug/info/warning/error/critical (or a logging number)."""
        return self._session_call(
            "/event", _payload.build_event, session_id, name,
            level=level, category=category, labels=labels, message=message, data=data,
            group=group, exception=exception,
        )

    def log_metric(self, session_id, name, value, tags=None, unit=None, metric_type="gauge", count=None,
                   metadata=None, delta=None, buckets=None):
        """Log a metric point. ``metric_type``: gauge (default), counter, histogram, timer.

        A counter with ``delta`` is added to the daemon's running total; a histogram
        value is one observation, bucketed by ``buckets`` (or ``metadata["buckets"]``).
        """
        value, delta = self.counter_value(session_id, name, value, tags, metric_type, delta)
        return self._session_call(
            "/metric", _payload.build_metric, session_id, name, value,
            tags=tags, unit=unit, metric_type=metric_type, count=count,
            metadata=metadata, delta=delta, buckets=buckets,
        )

    def counter_value(self, session_id, name, value, tags, metric_type, delta):
        """``(value, delta)`` to send for a metric. The daemon keeps counters' running
        totals; the query service does not (it refuses ``delta``), so without a daemon
        the client adds the deltas up itself and sends the total."""
        if self.use_daemon or delta is None or metric_type != "counter":
            return value, delta
        key = (session_id, name, tuple(sorted(_payload._string_list(tags, "tags") or ())))
        with self._stats_lock:
            total = self._counter_totals.get(key, 0.0) + float(delta)
            self._counter_totals[key] = total
        return total, None

    def send_batch(self, session_id, items):
        """Many calls in one request (``items`` as built by ``_payload.batch_item``).

        Returns the answer, or None when the request was lost. Items the receiver
        rejects are logged; the others are applied.
        """
        return self._session_call("/batch", _build_batch, session_id, items)

    def log_exception(self, session_id, exc_info=None, extra_data=None, message=None, level="error",
                      with_locals=None):
        """Log an ``exception`` event for the current (or given) exception, with the chain
        behind it; with its frames' local variables when ``with_locals`` (default: the
        client's ``capture_locals``)."""
        exception = _payload.build_exception(
            exc_info, with_locals=self.capture_locals if with_locals is None else with_locals)
        if exception is None:
            # No exception being handled: record where log_exception was called from.
            exception = _payload.stack_exception(_caller_stack())
        return self.log_event(
            session_id,
            "exception",
            level=level,
            category="exception",
            group="exception",
            labels=["exception", exception["type"]],
            message=message if message is not None else exception["message"],
            data=extra_data,
            exception=exception,
        )

    def heartbeat(self, session_id):
        return self._session_call("/heartbeat", _payload.build_heartbeat, session_id)

    def start_heartbeat_monitor(self, session_id, timeout=None):
        """Ask the daemon to mark the session hung when a heartbeat is ``timeout`` s overdue."""
        return self._monitor_call("/start_heartbeat_monitor", session_id, timeout)

    def stop_heartbeat_monitor(self, session_id):
        return self._monitor_call("/stop_heartbeat_monitor", session_id)

    def pause_heartbeat_monitoring(self, session_id):
        return self._monitor_call("/pause_heartbeat", session_id)

    def resume_heartbeat_monitoring(self, session_id):
        return self._monitor_call("/resume_heartbeat", session_id)

    def _monitor_call(self, path, session_id, timeout=None):
        if self.disabled:
            return False
        if session_id is None:
            return self._failed_call(path, TransportError("the session was never registered", kind="no-session"))
        return self._post(path, _payload.build_heartbeat_monitor, session_id, timeout)

    def get_session(self, session_id):
        """The whole session (``state``, ``state_history``, ``events``, ``metrics``,
        ``active``, ``created_at``, ``ended_at``, ...) as the query service holds it,
        including every write this client made before the call; with a daemon and no
        reachable query service, what the daemon holds (state, no events: ``source``
        says which). None if neither can say."""
        path = "/session?session_id=%s" % (_quote(session_id or "", safe=""),)
        with self._stats_lock:
            seq = self._last_seq.get(session_id)
        if seq is not None:
            path += "&min_seq=%d" % (seq,)
        if self.use_daemon and self.base_url:
            path += "&query_url=%s" % (_quote(self.base_url, safe=""),)
        # The query service waits a bounded while (2 s by default) for ingest to apply this
        # client's last write; a busy ingest can take longer, so a read that came back
        # behind is asked again, within the read timeout.
        deadline = deadline_after(self.read_timeout)
        while True:
            answer = self._get(path, max(remaining(deadline), _MIN_READ))
            if not _behind(answer, seq) or remaining(deadline) < _READ_AGAIN:
                return answer
            time.sleep(_READ_PAUSE)  # a service that does not wait is not hammered

    def get_all_sessions(self):
        """The sessions of this process's daemon (or, without one, the query service's
        newest), as a list; None if unavailable."""
        answer = self._get("/sessions", self.timeout)
        if isinstance(answer, dict):
            return answer.get("sessions")
        return answer

    def _get(self, path, timeout):
        if self.disabled:
            return None
        try:
            return self.daemon.request("GET", path, timeout=timeout)
        except _FAILURES as exc:
            log.debug("GET %s failed: %s", path, exc)
            return None

    def end_session(self, session_id, reason=None, crashed=False, timeout=None, deadline=None):
        """End the session (``crashed=True``: as crashed). Returns the answer, or False.

        Bounded by ``deadline`` (a ``_transport._clock()`` value), else by
        ``timeout`` (default ``end_timeout``) from now. A daemon answers once
        JetStream has the session's data or, when time runs short, with the
        data in its spool (``delivered: false``; it is delivered later).
        """
        if deadline is None:
            deadline = deadline_after(self.end_timeout if timeout is None else timeout)
        wait = max(0.0, (remaining(deadline) or 0.0) - _END_MARGIN)
        result = self._session_call(
            "/end", _payload.build_end, session_id, reason=reason, crashed=crashed, wait=wait,
            _deadline=deadline,
        )
        if isinstance(result, dict) and result.get("delivered") is False:
            # The daemon keeps the data queued and goes on retrying; it is lost only if
            # the daemon itself dies before NATS comes back.
            log.warning("session %s ended, but NATS has not acknowledged its data yet; "
                        "the daemon keeps it queued", session_id)
        return result

    def health(self):
        """The daemon's ``GET /health`` answer, or None if it is unavailable."""
        if self.disabled:
            return None
        try:
            return self.daemon.request("GET", "/health", timeout=self.timeout)
        except _FAILURES as exc:
            log.debug("health check failed: %s", exc)
            return None


# A read is asked again only with this much time left (it waits server side), and each
# attempt gets at least the second.
_READ_AGAIN = 0.5
_MIN_READ = 0.5
_READ_PAUSE = 0.05


def _behind(answer, seq):
    """Whether ``answer`` (a session read) is from before this client's write ``seq``."""
    if not isinstance(answer, dict) or answer.get("source") == "daemon":
        return False
    if answer.get("caught_up") is False:  # the daemon compared for us
        return True
    applied = answer.get("last_seq")
    return ("caught_up" not in answer and seq is not None and isinstance(applied, int)
            and applied < seq)


def _register_body(product, version, session_id, query_url, environment=None, tags=None):
    body = _payload.build_register(product, version, parent_pid=os.getpid(), timestamp=time.time(),
                                   environment=environment, tags=tags)
    body["session_id"] = session_id
    if query_url:
        body["query_url"] = query_url
    return body


"""``AsyncSession``: the caller's thread only appends to a buffer.

A call appends one tuple to a bounded ``deque`` (the C-level append is atomic,
so no lock is taken on the caller's path) and returns. A background thread
takes up to ``batch_size`` tuples at a time, turns them into the daemon's
``/batch`` items and sends them over the client's kept-alive connection.

What the caller passes is copied at call time: a state or event data dict is
snapshotted with ``marshal`` (C speed), so a change the caller makes after the
call is not sent; and an exception is captured in the calling thread (in the
background thread ``sys.exc_info()`` is always empty).

Nothing is lost silently: a full buffer drops the new call (``drop_on_full``,
the default) or blocks until there is room, and every drop, every rejected
item, every item whose request failed and every call made after the session
ended (or when it could not be registered) is counted in ``get_stats()``; such
calls return False.

A session created in async mode is registered from the background thread:
creating it, like every call, costs the caller no request. Control calls
(heartbeat monitoring) are queued too, in order with the others.

Any object with ``Session``'s methods (``update_state``, ``log_event``,
``log_metric``, ``heartbeat``, ``end``) can be wrapped; it is then
called one method at a time from the background thread, with the keyword
arguments its methods accept (an ``end()`` that takes no ``reason`` is called
without one).
"""

from __future__ import absolute_import

import collections
import inspect
import json
import logging
import marshal
import os
import threading
import time

from . import _accounting, _payload
from ._compat import PY2, register_after_fork
from ._payload import InvalidRecord
from ._transport import DaemonHTTPError, deadline_after, remaining
from .client import DatacatClient, _caller_stack
from ._lifecycle import open_sessions
from .session import Session, _TypedMetrics

log = logging.getLogger("datacat")

_STATE, _EVENT, _METRIC, _HEARTBEAT, _STATE_JSON, _EVENT_JSON, _CONTROL = range(7)

#: Of a shutdown's deadline, the part kept for ending the session after the flush.
_END_RESERVE = 0.5

#: How long ``get_details()`` waits for the buffer to drain before reading.
_READ_FLUSH = 2.0

#: marshal handles dict/list/str/number/bool/None; anything else is copied through JSON.
_MARSHAL_ERRORS = (ValueError, TypeError)

_LEVEL_NAMES = frozenset(_payload.EVENT_LEVELS)
_INF = float("inf")

_time = time.time
_dumps = marshal.dumps


def _json_copy(value):
    """The copy for what marshal refuses (datetimes, custom objects): JSON text."""
    return json.loads(_payload.encode_json(value).decode("utf-8"))


class AsyncSession(_TypedMetrics):
    """Wraps a ``Session`` (or any object with its methods); calls return at once
    and are shipped in batches.

    ``queue_size``: calls buffered at most. ``drop_on_full``: drop (True, the
    default) or block the caller when the buffer is full. ``batch_size``: calls
    per request. ``flush_interval``: how long the shipper waits for more calls
    when the buffer is empty (seconds). ``exit_timeout``: the whole of ``end()``
    (and of the exit hook), flush and requests included (default: the client's
    ``end_timeout``, 2 s with a daemon).
    """

    def __init__(self, session, queue_size=10000, drop_on_full=True, batch_size=1000,
                 flush_interval=0.05, exit_timeout=None):
        self.session = session
        self.queue_size = max(1, int(queue_size))
        self.drop_on_full = bool(drop_on_full)
        self.batch_size = max(1, int(batch_size))
        self.flush_interval = float(flush_interval)
        # The wrapped session's breadcrumbs, when it keeps any (empty: false).
        self._crumbs = getattr(session, "breadcrumbs", None)
        # Our own sessions are sent in batches; anything else is called method by method.
        self._native = isinstance(session, Session) and isinstance(session.client, DatacatClient)
        if exit_timeout is None:
            exit_timeout = session.exit_timeout if self._native else 2.0
        self.exit_timeout = float(exit_timeout)
        self._buffer = collections.deque()
        self._append = self._buffer.append
        self._lock = threading.Lock()  # counters and the shipper's bookkeeping only
        self._progress = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._busy = False
        self._stopping = False
        self._stats = {"sent": 0, "dropped": 0, "failed": 0, "invalid": 0, "batches": 0}
        self._warned = set()
        self._ended = False
        self._end_result = None
        # Why calls are refused now (None: they are taken); the buffer then has no room, so
        # the caller's path needs no check of its own.
        self._refusing = None
        self._room = self.queue_size
        self._registering = self._native and session.registered is None
        if self._native and session.registered is False:
            self._refuse_calls("session %s was never registered" % (session.session_id,))
        self._pid = os.getpid()
        self._thread = self._sender = None
        self._start_thread()
        if hasattr(os, "register_at_fork"):
            register_after_fork(self._after_fork)
        else:  # Python < 3.7: notice a fork lazily, at the next call (one getpid each)
            self._append = self._append_checking_fork
        # The exit hook drains this buffer before the session ends, not the other way round.
        open_sessions.discard(session)
        if self._refusing is None:
            open_sessions.add(self)

    def __repr__(self):
        return "<datacat.AsyncSession %s queued=%d>" % (self.session_id, len(self._buffer))

    def add_breadcrumb(self, message, level="info", category=None, data=None):
        """See ``Session.add_breadcrumb`` (kept in this process; no call is queued)."""
        crumbs = self._crumbs
        if crumbs is None:
            return False
        crumbs.add(message, level=level, category=category, data=data)
        return True

    # -- forwarded -------------------------------------------------------------------

    @property
    def session_id(self):
        return getattr(self.session, "session_id", None)

    @property
    def client(self):
        return getattr(self.session, "client", None)

    @property
    def registered(self):
        return getattr(self.session, "registered", True)

    @property
    def ended(self):
        return self._ended

    # -- the caller's path: append and return ----------------------------------------

    def _refuse_calls(self, reason):
        self._refusing = reason
        self._room = -1

    def _refuse(self):
        """A call the session can no longer send: counted as failed, False."""
        return self._lost("failed", "datacat: calls are not sent (%s); they are counted in "
                          "get_stats()['failed']", self._refusing)

    def _lost(self, kind, warning, detail):
        """Count one call lost as ``kind``; warn the first time; False."""
        with self._lock:
            self._stats[kind] += 1
            first = kind not in self._warned
            self._warned.add(kind)
        _accounting.count(kind)
        if first:
            log.warning(warning, detail)
        return False

    def _full(self, entry):
        """The buffer is full, or calls are refused: count a drop (or a refusal), or wait
        for room. Returns True if queued."""
        if self._refusing is not None:
            return self._refuse()
        if self.drop_on_full or threading.current_thread() in (self._thread, self._sender):
            return self._lost("dropped", "datacat buffer full (%d calls): dropping calls; see "
                              "get_stats()['dropped']", self.queue_size)
        with self._progress:
            while len(self._buffer) >= self.queue_size and self._refusing is None:
                self._wake.set()
                self._progress.wait(0.1)
        if self._refusing is not None:  # ended while this call waited for room
            return self._refuse()
        self._append(entry)
        return True

    def update_state(self, state):
        """Deep-merge ``state`` into the session state (a copy is taken now)."""
        try:
            entry = (_STATE, _time(), _dumps(state))
        except _MARSHAL_ERRORS:
            entry = (_STATE_JSON, _time(), state)
            entry = self._copied(entry, 2)
        if len(self._buffer) >= self._room:
            return self._full(entry)
        self._append(entry)
        return True

    def log_event(self, name, level=None, category=None, labels=None, message=None, data=None,
                  group=None, exception=None):
        """Log an event (see ``Session.log_event``)."""
        if self._crumbs:  # something to attach to an error event
            level, data = _payload.event_level_and_data(level, data)
            data = self._crumbs.attach(level, data)
        try:
            entry = (_EVENT, _time(), name, level, category, labels, message,
                     data if data is None else _dumps(data), group, exception)
        except _MARSHAL_ERRORS:
            entry = self._copied((_EVENT_JSON, _time(), name, level, category, labels, message, data,
                                  group, exception), 7)
        if len(self._buffer) >= self._room:
            return self._full(entry)
        self._append(entry)
        return True

    def log_metric(self, name, value, tags=None, unit=None, metric_type="gauge", count=None,
                   metadata=None, delta=None, buckets=None):
        """Log a metric point (see ``Session.log_metric``)."""
        entry = (_METRIC, _time(), name, value, tags, unit, metric_type, count, metadata, delta,
                 buckets)
        if len(self._buffer) >= self._room:
            return self._full(entry)
        self._append(entry)
        return True

    def _copied(self, entry, index):
        """``entry`` with its value at ``index`` copied through JSON (None if it cannot be)."""
        try:
            value = _json_copy(entry[index])
        except InvalidRecord as exc:
            self._reject("call rejected: %s" % (exc,))
            value = None
        return entry[:index] + (value,) + entry[index + 1:]

    def heartbeat(self):
        """Tell the daemon the application is alive (and the session's monitor, if any)."""
        monitor = getattr(self.session, "_monitor", None)
        if monitor is not None:
            monitor.beat()
        entry = (_HEARTBEAT, _time())
        if len(self._buffer) >= self._room:
            return self._full(entry)
        self._append(entry)
        return True

    def _control(self, function, *args):
        """Queue a call to ``function`` (a daemon request), made in order with the others."""
        entry = (_CONTROL, _time(), function, args)
        if len(self._buffer) >= self._room:
            return self._full(entry)
        self._append(entry)
        return True

    def log_exception(self, exc_info=None, extra_data=None, message=None, level="error",
                      with_locals=None):
        """Log the exception being handled (captured now, in the calling thread; see
        ``Session.log_exception``)."""
        client = getattr(self.session, "client", None)
        if with_locals is None:
            with_locals = getattr(client, "capture_locals", False)
        exception = _payload.build_exception(exc_info, with_locals=with_locals)
        if exception is None:
            exception = _payload.stack_exception(_caller_stack())
        return self.log_event("exception", level=level, category="exception", group="exception",
                              labels=["exception", exception["type"]],
                              message=message if message is not None else exception["message"],
                              data=extra_data, exception=exception)

    # -- heartbeat monitoring (the daemon is told in order with the other calls) ---------

    def start_heartbeat_monitor(self, timeout=60, check_interval=5):
        if not self._native:
            return self._control(_call_accepting, self.session.start_heartbeat_monitor,
                                 {"timeout": timeout, "check_interval": check_interval})
        session = self.session
        return session.start_heartbeat_monitor(
            timeout=timeout, check_interval=check_interval, _beat=self.heartbeat,
            _tell_daemon=lambda: self._control(session.client.start_heartbeat_monitor,
                                               session.session_id, timeout))

    def stop_heartbeat_monitor(self):
        return self._monitor_call("stop", "stop_heartbeat_monitor")

    def pause_heartbeat_monitoring(self):
        return self._monitor_call("pause", "pause_heartbeat_monitoring")

    def resume_heartbeat_monitoring(self):
        return self._monitor_call("resume", "resume_heartbeat_monitoring")

    def _monitor_call(self, local, method):
        """The session's own monitor changes now; the daemon hears of it in order."""
        if not self._native:
            return self._control(getattr(self.session, method))
        monitor = self.session._monitor
        if monitor is not None:
            getattr(monitor, local)()
        if local == "stop":
            self.session._monitor = None
        return self._control(getattr(self.client, method), self.session_id)

    def get_details(self):
        """The session read back (see ``Session.get_details``), after the calls made
        so far were sent (waiting up to 2 s for that)."""
        self.flush(_READ_FLUSH)
        return self.session.get_details()

    # -- the shipper -------------------------------------------------------------------

    def _start_thread(self):
        # Two stages, so that turning calls into JSON overlaps with the daemon's work on
        # the previous request: the packer converts and encodes, the sender posts (one
        # request at a time, in order).
        self._ready = collections.deque()
        self._sending = None  # the batch being sent
        self._abandoned = None  # ... that shutdown() stopped waiting for
        self._packing = 0  # calls the packer has taken and not yet handed on
        self._cut = False  # shutdown() has counted what was left: nothing more is sent
        self._thread = threading.Thread(target=self._pack_loop, name="datacat-async-%s" % (self.session_id,))
        self._thread.daemon = True
        self._thread.start()
        self._sender = threading.Thread(target=self._send_loop, name="datacat-send-%s" % (self.session_id,))
        self._sender.daemon = True
        self._sender.start()

    def _append_checking_fork(self, entry):
        if os.getpid() != self._pid:
            self._after_fork()
        self._buffer.append(entry)

    def _after_fork(self):
        # The child has a copy of the parent's buffer (the parent sends it) and no
        # shipper threads: start clean.
        self._buffer.clear()
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._busy = False
        self._registering = False  # the parent registers its session
        self._pid = os.getpid()
        if not self._stopping:
            self._start_thread()

    def _pending(self):
        """Calls made but not yet answered for (call with the lock held)."""
        return bool(self._buffer or self._busy or self._ready or self._sending or self._registering)

    def _pack_loop(self):
        buffer, pop = self._buffer, self._buffer.popleft
        while True:
            if not buffer:
                if self._stopping:
                    with self._progress:
                        self._progress.notify_all()
                    return
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                continue
            entries = []
            control = None
            with self._progress:
                while len(self._ready) >= 2 and not self._cut:  # the sender is behind: hold the calls here
                    self._progress.wait(0.1)
                self._busy = True
                # Taken under the lock, so that shutdown() accounts for them at its cut.
                try:
                    for _ in range(self.batch_size):
                        entry = pop()
                        if entry[0] == _CONTROL:
                            control = entry  # sent after the calls before it
                            break
                        entries.append(entry)
                except IndexError:
                    pass
                taken = len(entries) + (control is not None)
                self._packing = taken
                cut_before = self._cut
            try:
                packed = self._pack(entries) if entries else None
            except Exception:  # noqa: BLE001 - the shipper must survive anything
                log.exception("datacat: packing %d calls failed", len(entries))
                self._count("failed", len(entries))
                packed = None
            with self._progress:
                self._busy = False
                self._packing = 0
                self._progress.notify_all()
                if not self._cut:
                    if packed is not None:
                        self._ready.append(packed)
                    if control is not None:
                        self._ready.append((control, 1))
                    continue
            # The session has ended: not sent. shutdown() counted what it saw being packed;
            # what was taken after it looked is counted here.
            if cut_before:
                self._count("failed", taken)

    def _register(self):
        """Register the session (created in async mode), before sending any call of it."""
        session = self.session
        try:
            answered = session.client.create_session(session.product, session.version,
                                                     session_id=session.session_id,
                                                     environment=session.environment,
                                                     tags=session.tags)
        except Exception:  # noqa: BLE001
            log.debug("registering failed", exc_info=True)
            answered = None
        session.registered = answered is not None
        if not session.registered:
            self._refuse_calls("session %s could not be registered" % (session.session_id,))
            open_sessions.discard(self)
        with self._progress:
            self._registering = False
            self._progress.notify_all()

    def _send_loop(self):
        if self._registering:
            self._register()
        while True:
            with self._progress:
                while not self._ready:
                    if self._stopping and not self._thread.is_alive():
                        return
                    self._progress.wait(0.1)
                packed = self._ready.popleft()
                self._sending = packed
            try:
                self._send(*packed)
            except Exception:  # noqa: BLE001
                log.exception("datacat: sending %d calls failed", packed[1])
                self._count("failed", packed[1])
            with self._progress:
                self._sending = None
                abandoned, self._abandoned = self._abandoned is packed, None
                self._progress.notify_all()
            if abandoned:
                # shutdown() counted these as failed when it stopped waiting for them;
                # _send has counted them as they really went.
                self._count("failed", -packed[1])

    def _pack(self, entries):
        """The ``/batch`` body (JSON bytes) for ``entries`` and how many items it holds;
        None when nothing is left to send. A foreign session's entries go as they are."""
        if not self._native:
            return entries, len(entries)
        items = []
        for entry in entries:
            try:
                items.append(self._item(entry))
            except (TypeError, ValueError, InvalidRecord) as exc:
                self._reject("call rejected before sending: %s" % (exc,))
        if not items:
            return None
        # session_id first, always (DirectBackend reads it from the head of the bytes).
        head = _payload.encode_json({"session_id": self.session_id})[:-1] + b',"items":'
        try:
            return head + _payload.encode_json(items) + b"}", len(items)
        except InvalidRecord:
            pass
        # Some item cannot be JSON (a NaN deep in its data): reject it, keep the others.
        encoded = []
        for item in items:
            try:
                encoded.append(_payload.encode_json(item))
            except InvalidRecord as exc:
                self._reject("call rejected before sending: %s" % (exc,))
        if not encoded:
            return None
        return head + b"[" + b",".join(encoded) + b"]}", len(encoded)

    def _send(self, body, count):
        if isinstance(body, tuple):  # a control entry
            self._send_control(body)
            return
        if not self._native:
            self._send_foreign(body)
            return
        if self.session.registered is False:
            self._count("failed", count)
            return
        try:
            answer = self.client.request("POST", "/batch", body, timeout=self.client.timeout)
        except DaemonHTTPError as exc:
            accepted = (exc.body or {}).get("accepted", 0) if isinstance(exc.body, dict) else 0
            rejected = (exc.body or {}).get("rejected", []) if isinstance(exc.body, dict) else []
            for problem in rejected:
                self._reject("item rejected by the daemon: %s" % (problem.get("message"),))
            self._count("sent", accepted)
            self._count("failed", count - accepted - len(rejected))
            if not rejected:
                self.client._log_failure("/batch", exc)
            return
        except Exception as exc:  # noqa: BLE001 - transport failures are counted, never raised
            self._count("failed", count)
            self.client._log_failure("/batch", exc)
            return
        self._count("sent", int(answer.get("accepted", count)) if isinstance(answer, dict) else count)
        self._count("batches", 1)
        self.client._succeeded(0)

    def _send_control(self, entry):
        _, _, function, args = entry
        if self._native and self.session.registered is False:
            self._count("failed", 1)
            return
        try:
            function(*args)
        except Exception:  # noqa: BLE001
            log.debug("datacat: a control call failed", exc_info=True)

    def _send_foreign(self, entries):
        """Calls the wrapped object's methods, one per call, with the arguments it takes."""
        for entry in entries:
            try:
                result = _call_foreign(self.session, entry)
            except Exception as exc:  # noqa: BLE001 - the wrapped session's errors are counted
                self._count("failed", 1)
                first = type(exc).__name__ not in self._warned
                with self._lock:
                    self._warned.add(type(exc).__name__)
                (log.warning if first else log.debug)(
                    "datacat: the wrapped session raised %s: %s", type(exc).__name__, exc)
                continue
            self._count("failed" if result is False else "sent", 1)

    def _item(self, entry):
        kind, timestamp, sid = entry[0], entry[1], self.session_id or "-"
        if kind == _EVENT or kind == _EVENT_JSON:
            _, _, name, level, category, labels, message, data, group, exception = entry
            if kind == _EVENT and data is not None:
                data = marshal.loads(data)
            # The common shapes skip the general builder: it is most of the shipper's time.
            if (name and name.__class__ is str and (level is None or level in _LEVEL_NAMES)
                    and (data is None or data.__class__ is dict)
                    and (message is None or message.__class__ is str)
                    and category is None and labels is None and group is None and exception is None):
                item = {"kind": "event", "timestamp": timestamp, "name": name}
                if level is not None:
                    item["level"] = level
                if message is not None:
                    item["message"] = message
                if data is not None:
                    item["data"] = data
                return item
            body = _payload.build_event(sid, name, level=level, category=category, labels=labels,
                                        message=message, data=data, group=group, exception=exception,
                                        timestamp=timestamp)
            return _payload.batch_item("event", body)
        if kind == _METRIC:
            _, _, name, value, tags, unit, metric_type, count, metadata, delta, buckets = entry
            value, delta = self.client.counter_value(sid, name, value, tags, metric_type, delta)
            if (name and name.__class__ is str and value.__class__ in (int, float)
                    and metric_type == "gauge" and -_INF < value < _INF and tags is None
                    and unit is None and count is None and metadata is None and delta is None
                    and buckets is None):
                return {"kind": "metric", "timestamp": timestamp, "name": name,
                        "value": float(value), "type": "gauge"}
            body = _payload.build_metric(sid, name, value, tags=tags, unit=unit, metric_type=metric_type,
                                         count=count, timestamp=timestamp, delta=delta, buckets=buckets,
                                         metadata=metadata)
            return _payload.batch_item("metric", body)
        if kind == _STATE or kind == _STATE_JSON:
            state = marshal.loads(entry[2]) if kind == _STATE else entry[2]
            body = _payload.build_state(sid, state, timestamp=timestamp)
            return _payload.batch_item("state", body)
        return _payload.batch_item("heartbeat", _payload.build_heartbeat(sid, timestamp=timestamp))

    def _count(self, what, n):
        if n:
            with self._lock:
                self._stats[what] += n
            if what in ("failed", "dropped", "invalid"):
                _accounting.count(what, n)

    def _reject(self, message):
        with self._lock:
            self._stats["invalid"] += 1
            first = message not in self._warned
            if len(self._warned) < 100:
                self._warned.add(message)
        _accounting.count("invalid")
        (log.warning if first else log.debug)("datacat: %s", message)

    # -- flush, stats, end --------------------------------------------------------------

    def flush(self, timeout=5.0):
        """Wait until every call made before this one has been sent (or counted as lost).

        Returns True when the buffer drained within ``timeout`` seconds.
        """
        deadline = time.time() + max(0.0, timeout)
        if self._pid != os.getpid():
            self._after_fork()
        with self._progress:
            while self._pending():
                remaining = deadline - time.time()
                if remaining <= 0 or not self._sender.is_alive():
                    return False
                self._wake.set()
                self._progress.wait(min(remaining, 0.05))
        return True

    def get_stats(self):
        """Counts: ``sent`` (accepted by the daemon), ``dropped`` (buffer full),
        ``failed`` (not delivered: request lost, or not sendable because the session
        had ended, was never registered, or the end's deadline passed), ``invalid``
        (rejected items), ``queued`` (waiting now), ``batches`` (requests sent), and
        the client's own ``client`` counts."""
        with self._lock:
            stats = dict(self._stats)
        stats["queued"] = len(self._buffer)
        client = self.client
        if isinstance(client, DatacatClient):
            stats["client"] = client.get_stats()
        return stats

    def shutdown(self, timeout=None, reason=None, crashed=False, deadline=None):
        """Flush, stop the shipper and end the session, all within ``timeout`` seconds
        (default ``exit_timeout``) or by ``deadline``; returns ``end``'s answer (False
        if it could not be sent). Calls still buffered at the deadline are counted as
        failed."""
        with self._lock:
            if self._ended:
                return self._end_result
            self._ended = True
            self._refuse_calls(self._refusing or "session %s has ended" % (self.session_id,))
        open_sessions.discard(self)
        if deadline is None:
            deadline = deadline_after(self.exit_timeout if timeout is None else timeout)
        total = max(0.0, remaining(deadline))
        self.flush(max(0.0, total - min(_END_RESERVE, total / 4.0)))
        self._stopping = True
        self._wake.set()
        with self._progress:
            self._progress.notify_all()
        # The threads end on their own once idle; one stuck in a request is not waited for.
        self._thread.join(min(0.05, max(0.0, remaining(deadline))))
        # The cut: every call not sent by now is counted as failed, once.
        with self._lock:
            self._cut = True
            left = len(self._buffer) + sum(packed[1] for packed in self._ready) + self._packing
            self._buffer.clear()
            self._ready.clear()
            if self._sending is not None:
                # Not known to have arrived: failed, unless its request still succeeds.
                self._abandoned = self._sending
                left += self._sending[1]
        if left:
            self._count("failed", left)
            log.warning("datacat: %d calls still buffered when the session ended were not sent", left)
        if self._native:
            self._end_result = self.session.end(reason=reason, crashed=crashed, deadline=deadline)
        else:
            self._end_result = _bounded(deadline, _call_accepting, self.session.end,
                                        {"reason": reason, "crashed": crashed or None})
        with self._lock:
            # A call that passed the room check just as the session ended.
            late = len(self._buffer)
            self._buffer.clear()
        self._count("failed", late)
        return self._end_result

    def end(self, reason=None, crashed=False, timeout=None, deadline=None):
        """End the session after sending everything buffered (see ``shutdown``)."""
        return self.shutdown(timeout=timeout, reason=reason, crashed=crashed, deadline=deadline)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        if exc_type is not None:
            self.log_exception((exc_type, exc_value, tb))
        self.end(reason="exception" if exc_type is not None else None)
        return False


# -- wrapping any session-like object --------------------------------------------------


def _keyword_names(function):
    """The keyword arguments ``function`` takes, or None if it takes any (``**kwargs``)
    or cannot be inspected."""
    try:
        if PY2:
            spec = inspect.getargspec(function)
            return None if spec.keywords else set(spec.args)
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return None
    return set(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _call_accepting(function, keywords, *args):
    """``function(*args, **keywords)`` with the keywords it does not take (and those that
    are None) left out: a session class with fewer parameters gets the call it takes."""
    accepted = _keyword_names(function)
    keywords = dict((k, v) for k, v in keywords.items()
                    if v is not None and (accepted is None or k in accepted))
    return function(*args, **keywords)


def _call_foreign(session, entry):
    """Make one buffered call on a wrapped session of another class."""
    kind, timestamp = entry[0], entry[1]
    if kind in (_STATE, _STATE_JSON):
        return session.update_state(marshal.loads(entry[2]) if kind == _STATE else entry[2])
    if kind in (_EVENT, _EVENT_JSON):
        _, _, name, level, category, labels, message, data, group, exception = entry
        if kind == _EVENT and data is not None:
            data = marshal.loads(data)
        keywords = {"level": level, "category": category, "labels": labels, "message": message,
                    "data": data, "group": group, "exception": exception}
        accepted = _keyword_names(session.log_event)
        if exception is not None and accepted is not None and "exception" not in accepted:
            keywords["stacktrace"] = exception.get("stacktrace")  # the flat traceback
        return _call_accepting(session.log_event, keywords, name)
    if kind == _METRIC:
        _, _, name, value, tags, unit, metric_type, count, metadata, delta, buckets = entry
        accepted = _keyword_names(session.log_metric)
        if buckets is not None and accepted is not None and "buckets" not in accepted:
            metadata = dict(metadata or {}, buckets=list(buckets))  # where it takes them
        keywords = {"tags": tags, "unit": unit, "metric_type": metric_type, "count": count,
                    "metadata": metadata, "delta": delta, "buckets": buckets}
        return _call_accepting(session.log_metric, keywords, name, value)
    heartbeat = getattr(session, "heartbeat", None)
    return heartbeat() if heartbeat is not None else None


def _bounded(deadline, function, *args):
    """``function(*args)``, waited for until ``deadline`` at most (then False): a wrapped
    session's ``end`` may block, and the exit must not."""
    result = [False]

    def run():
        try:
            result[0] = function(*args)
        except Exception:  # noqa: BLE001
            log.debug("ending the wrapped session failed", exc_info=True)

    try:
        thread = threading.Thread(target=run, name="datacat-end")
        thread.daemon = True
        thread.start()
    except RuntimeError:  # no new threads at interpreter shutdown (3.12+)
        run()
        return result[0]
    thread.join(max(0.0, remaining(deadline)))
    return result[0]

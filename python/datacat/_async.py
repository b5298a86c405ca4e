"""``AsyncSession``: the caller's thread only appends to a buffer.

A call appends one tuple to a bounded ``deque`` (the C-level append is atomic,
so no lock is taken on the caller's path) and returns. A background thread
takes up to ``batch_size`` tuples at a time, turns them into the daemon's
``/batch`` items and sends them over the client's kept-alive connection.

What the caller passes is copied at call time: a state or event data dict is
snapshotted with ``marshal`` (C speed; the original sent whatever the dict
held when the queue got to it), and an exception is captured in the calling
thread (the original resolved ``sys.exc_info()`` in the background thread,
where it is always empty).

Nothing is lost silently: a full buffer drops the new call (``drop_on_full``,
the default) or blocks until there is room, and every drop, every rejected
item and every item whose request failed is counted in ``get_stats()``.
"""

from __future__ import absolute_import

import collections
import json
import logging
import marshal
import os
import threading
import time

from . import _payload
from ._compat import register_after_fork
from ._payload import InvalidRecord
from ._transport import DaemonHTTPError
from .client import _caller_stack
from .session import _TypedMetrics, _open_sessions, _track_open_session

log = logging.getLogger("datacat")

_STATE, _EVENT, _METRIC, _HEARTBEAT = range(4)

#: marshal handles dict/list/str/number/bool/None; anything else is copied through JSON.
_MARSHAL_ERRORS = (ValueError, TypeError)

_time = time.time


def _snapshot(value):
    """A frozen copy of a dict the caller may change after the call returns."""
    try:
        return (True, marshal.dumps(value))
    except _MARSHAL_ERRORS:
        return (False, _payload.encode_json(value))


def _thaw(snapshot):
    marshalled, data = snapshot
    if marshalled:
        return marshal.loads(data)
    return json.loads(data.decode("utf-8"))


class AsyncSession(_TypedMetrics):
    """Wraps a ``Session``; calls return at once and are shipped in batches.

    ``queue_size``: calls buffered at most. ``drop_on_full``: drop (True, the
    default) or block the caller when the buffer is full. ``batch_size``: calls
    per request. ``flush_interval``: how long the shipper waits for more calls
    when the buffer is empty (seconds). ``exit_timeout``: how long the exit
    hook waits for the buffer to drain.
    """

    def __init__(self, session, queue_size=10000, drop_on_full=True, batch_size=1000,
                 flush_interval=0.05, exit_timeout=5.0):
        self.session = session
        self.queue_size = max(1, int(queue_size))
        self.drop_on_full = bool(drop_on_full)
        self.batch_size = max(1, int(batch_size))
        self.flush_interval = float(flush_interval)
        self.exit_timeout = float(exit_timeout)
        self._buffer = collections.deque()
        self._append = self._buffer.append
        self._lock = threading.Lock()  # counters and the shipper's bookkeeping only
        self._progress = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._busy = False
        self._stopping = False
        self._stats = {"queued_total": 0, "sent": 0, "dropped": 0, "failed": 0, "invalid": 0,
                       "batches": 0}
        self._warned = set()
        self._ended = False
        self._end_result = None
        self._pid = os.getpid()
        self._thread = None
        self._start_thread()
        if hasattr(os, "register_at_fork"):
            register_after_fork(self._after_fork)
        else:  # Python < 3.7: notice a fork lazily, at the next call (one getpid each)
            self._append = self._append_checking_fork
        # The exit hook drains this buffer before the session ends, not the other way round.
        _open_sessions.discard(session)
        if session.session_id is not None:
            _track_open_session(self)

    def __repr__(self):
        return "<datacat.AsyncSession %s queued=%d>" % (self.session_id, len(self._buffer))

    # -- forwarded -------------------------------------------------------------------

    @property
    def session_id(self):
        return self.session.session_id

    @property
    def client(self):
        return self.session.client

    @property
    def ended(self):
        return self._ended

    # -- the caller's path: append and return ----------------------------------------

    def _full(self, entry):
        """The buffer is full: count a drop, or wait for room. Returns True if queued."""
        if self.drop_on_full or threading.current_thread() is self._thread:
            with self._lock:
                self._stats["dropped"] += 1
                first = "dropped" not in self._warned
                self._warned.add("dropped")
            if first:
                log.warning("datacat buffer full (%d calls): dropping calls; see get_stats()['dropped']",
                            self.queue_size)
            return False
        with self._progress:
            while len(self._buffer) >= self.queue_size and not self._stopping:
                self._wake.set()
                self._progress.wait(0.1)
        self._append(entry)
        return True

    def update_state(self, state):
        """Deep-merge ``state`` into the session state (a copy is taken now)."""
        entry = (_STATE, _time(), _snapshot(state) if isinstance(state, dict) else state)
        if len(self._buffer) >= self.queue_size:
            return self._full(entry)
        self._append(entry)
        return True

    def log_event(self, name, level=None, category=None, labels=None, message=None, data=None,
                  group=None, exception=None):
        """Log an event (see ``Session.log_event``)."""
        entry = (_EVENT, _time(), name, level, category, labels, message,
                 data if data is None else _snapshot(data), group, exception)
        if len(self._buffer) >= self.queue_size:
            return self._full(entry)
        self._append(entry)
        return True

    def log_metric(self, name, value, tags=None, unit=None, metric_type="gauge", count=None,
                   metadata=None, delta=None, buckets=None):
        """Log a metric point (see ``Session.log_metric``)."""
        entry = (_METRIC, _time(), name, value, tags, unit, metric_type, count, metadata, delta,
                 buckets)
        if len(self._buffer) >= self.queue_size:
            return self._full(entry)
        self._append(entry)
        return True

    def heartbeat(self):
        """Tell the daemon the application is alive (and the session's monitor, if any)."""
        monitor = self.session._monitor
        if monitor is not None:
            monitor.beat()
        entry = (_HEARTBEAT, _time())
        if len(self._buffer) >= self.queue_size:
            return self._full(entry)
        self._append(entry)
        return True

    def log_exception(self, exc_info=None, extra_data=None, message=None, level="error"):
        """Log the exception being handled (captured now, in the calling thread)."""
        exception = _payload.build_exception(exc_info)
        if exception is None:
            exception = _payload.stack_exception(_caller_stack())
        return self.log_event("exception", level=level, category="exception", group="exception",
                              labels=["exception", exception["type"]],
                              message=message if message is not None else exception["message"],
                              data=extra_data, exception=exception)

    # -- heartbeat monitoring (control calls go straight to the daemon) ----------------

    def start_heartbeat_monitor(self, timeout=60, check_interval=5):
        return self.session.start_heartbeat_monitor(timeout=timeout, check_interval=check_interval,
                                                    _beat=self.heartbeat)

    def stop_heartbeat_monitor(self):
        return self.session.stop_heartbeat_monitor()

    def pause_heartbeat_monitoring(self):
        return self.session.pause_heartbeat_monitoring()

    def resume_heartbeat_monitoring(self):
        return self.session.resume_heartbeat_monitoring()

    def get_details(self):
        return self.session.get_details()

    # -- the shipper -------------------------------------------------------------------

    def _start_thread(self):
        self._thread = threading.Thread(target=self._run, name="datacat-async-%s" % (self.session_id,))
        self._thread.daemon = True
        self._thread.start()

    def _append_checking_fork(self, entry):
        if os.getpid() != self._pid:
            self._after_fork()
        self._buffer.append(entry)

    def _after_fork(self):
        # The child has a copy of the parent's buffer (the parent sends it) and no
        # shipper thread: start clean.
        self._buffer.clear()
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._busy = False
        self._pid = os.getpid()
        if not self._stopping:
            self._start_thread()

    def _run(self):
        buffer, pop = self._buffer, self._buffer.popleft
        while True:
            if not buffer:
                if self._stopping:
                    return
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                continue
            with self._lock:
                self._busy = True
            entries = []
            try:
                for _ in range(self.batch_size):
                    entries.append(pop())
            except IndexError:
                pass
            try:
                self._ship(entries)
            except Exception:  # noqa: BLE001 - the shipper must survive anything
                log.exception("datacat: shipping %d calls failed", len(entries))
                self._count("failed", len(entries))
            with self._progress:
                self._busy = False
                self._progress.notify_all()

    def _ship(self, entries):
        items = []
        for entry in entries:
            try:
                items.append(self._item(entry))
            except (TypeError, ValueError, InvalidRecord) as exc:
                self._reject("call rejected before sending: %s" % (exc,))
        if not items or self.session_id is None:
            self._count("failed", len(items))
            return
        body = {"session_id": self.session_id, "items": items}
        try:
            answer = self.client.daemon.request("POST", "/batch", body, timeout=self.client.timeout)
        except DaemonHTTPError as exc:
            accepted = (exc.body or {}).get("accepted", 0) if isinstance(exc.body, dict) else 0
            rejected = (exc.body or {}).get("rejected", []) if isinstance(exc.body, dict) else []
            for problem in rejected:
                self._reject("item rejected by the daemon: %s" % (problem.get("message"),))
            self._count("sent", accepted)
            self._count("failed", len(items) - accepted - len(rejected))
            if not rejected:
                self.client._failed_call("/batch", exc)
            return
        except Exception as exc:  # noqa: BLE001 - transport failures are counted, never raised
            self._count("failed", len(items))
            self.client._failed_call("/batch", exc)
            return
        self._count("sent", int(answer.get("accepted", len(items))) if isinstance(answer, dict) else len(items))
        self._count("batches", 1)
        self.client._succeeded()

    def _item(self, entry):
        kind, timestamp, sid = entry[0], entry[1], self.session_id or "-"
        if kind == _EVENT:
            _, _, name, level, category, labels, message, data, group, exception = entry
            body = _payload.build_event(sid, name, level=level, category=category, labels=labels,
                                        message=message, data=data if data is None else _thaw(data),
                                        group=group, exception=exception, timestamp=timestamp)
            return _payload.batch_item("event", body)
        if kind == _METRIC:
            _, _, name, value, tags, unit, metric_type, count, metadata, delta, buckets = entry
            body = _payload.build_metric(sid, name, value, tags=tags, unit=unit, metric_type=metric_type,
                                         count=count, timestamp=timestamp, delta=delta, buckets=buckets,
                                         metadata=metadata)
            return _payload.batch_item("metric", body)
        if kind == _STATE:
            state = entry[2]
            body = _payload.build_state(sid, _thaw(state) if isinstance(state, tuple) else state,
                                        timestamp=timestamp)
            return _payload.batch_item("state", body)
        return _payload.batch_item("heartbeat", _payload.build_heartbeat(sid, timestamp=timestamp))

    def _count(self, what, n):
        if n:
            with self._lock:
                self._stats[what] += n

    def _reject(self, message):
        with self._lock:
            self._stats["invalid"] += 1
            first = message not in self._warned
            if len(self._warned) < 100:
                self._warned.add(message)
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
            while self._buffer or self._busy:
                remaining = deadline - time.time()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._wake.set()
                self._progress.wait(min(remaining, 0.05))
        return True

    def get_stats(self):
        """Counts: ``sent`` (accepted by the daemon), ``dropped`` (buffer full),
        ``failed`` (request lost), ``invalid`` (rejected items), ``queued`` (waiting
        now), ``batches`` (requests sent), and the client's own ``client`` counts."""
        with self._lock:
            stats = dict(self._stats)
        stats.pop("queued_total", None)
        stats["queued"] = len(self._buffer)
        stats["client"] = self.client.get_stats()
        return stats

    def shutdown(self, timeout=5.0, reason=None, crashed=False):
        """Flush (up to ``timeout`` s), stop the shipper, end the session; returns
        ``end``'s answer. Calls still buffered after the deadline are counted as failed."""
        with self._lock:
            if self._ended:
                return self._end_result
            self._ended = True
        _open_sessions.discard(self)
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(max(0.1, min(timeout, 1.0)))
        left = len(self._buffer)
        if left:
            self._buffer.clear()
            self._count("failed", left)
            log.warning("datacat: %d calls still buffered at shutdown were not sent", left)
        self._end_result = self.session.end(reason=reason, crashed=crashed)
        return self._end_result

    def end(self, reason=None, crashed=False):
        """End the session after sending everything buffered (see ``shutdown``)."""
        return self.shutdown(timeout=self.exit_timeout, reason=reason, crashed=crashed)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        if exc_type is not None:
            self.log_exception((exc_type, exc_value, tb))
        self.end(reason="exception" if exc_type is not None else None)
        return False

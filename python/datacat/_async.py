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

_STATE, _EVENT, _METRIC, _HEARTBEAT, _STATE_JSON, _EVENT_JSON = range(6)

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
        self._stats = {"sent": 0, "dropped": 0, "failed": 0, "invalid": 0, "batches": 0}
        self._warned = set()
        self._ended = False
        self._end_result = None
        self._pid = os.getpid()
        self._thread = self._sender = None
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
        if self.drop_on_full or threading.current_thread() in (self._thread, self._sender):
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
        try:
            entry = (_STATE, _time(), _dumps(state))
        except _MARSHAL_ERRORS:
            entry = (_STATE_JSON, _time(), state)
            entry = self._copied(entry, 2)
        if len(self._buffer) >= self.queue_size:
            return self._full(entry)
        self._append(entry)
        return True

    def log_event(self, name, level=None, category=None, labels=None, message=None, data=None,
                  group=None, exception=None):
        """Log an event (see ``Session.log_event``)."""
        try:
            entry = (_EVENT, _time(), name, level, category, labels, message,
                     data if data is None else _dumps(data), group, exception)
        except _MARSHAL_ERRORS:
            entry = self._copied((_EVENT_JSON, _time(), name, level, category, labels, message, data,
                                  group, exception), 7)
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
        # Two stages, so that turning calls into JSON overlaps with the daemon's work on
        # the previous request: the packer converts and encodes, the sender posts (one
        # request at a time, in order).
        self._ready = collections.deque()
        self._sending = False
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
        self._pid = os.getpid()
        if not self._stopping:
            self._start_thread()

    def _pending(self):
        """Calls made but not yet answered for (call with the lock held)."""
        return bool(self._buffer or self._busy or self._ready or self._sending)

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
            with self._progress:
                while len(self._ready) >= 2:  # the sender is behind: hold the calls here
                    self._progress.wait(0.1)
                self._busy = True
            entries = []
            try:
                for _ in range(self.batch_size):
                    entries.append(pop())
            except IndexError:
                pass
            try:
                packed = self._pack(entries)
            except Exception:  # noqa: BLE001 - the shipper must survive anything
                log.exception("datacat: packing %d calls failed", len(entries))
                self._count("failed", len(entries))
                packed = None
            with self._progress:
                if packed is not None:
                    self._ready.append(packed)
                self._busy = False
                self._progress.notify_all()

    def _send_loop(self):
        while True:
            with self._progress:
                while not self._ready:
                    if self._stopping and not self._thread.is_alive():
                        return
                    self._progress.wait(0.1)
                packed = self._ready.popleft()
                self._sending = True
            try:
                self._send(*packed)
            except Exception:  # noqa: BLE001
                log.exception("datacat: sending %d calls failed", packed[1])
                self._count("failed", packed[1])
            with self._progress:
                self._sending = False
                self._progress.notify_all()

    def _pack(self, entries):
        """The ``/batch`` body (JSON bytes) for ``entries`` and how many items it holds;
        None when nothing is left to send."""
        items = []
        for entry in entries:
            try:
                items.append(self._item(entry))
            except (TypeError, ValueError, InvalidRecord) as exc:
                self._reject("call rejected before sending: %s" % (exc,))
        if not items:
            return None
        if self.session_id is None:
            self._count("failed", len(items))
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
        try:
            answer = self.client.daemon.request("POST", "/batch", body, timeout=self.client.timeout)
        except DaemonHTTPError as exc:
            accepted = (exc.body or {}).get("accepted", 0) if isinstance(exc.body, dict) else 0
            rejected = (exc.body or {}).get("rejected", []) if isinstance(exc.body, dict) else []
            for problem in rejected:
                self._reject("item rejected by the daemon: %s" % (problem.get("message"),))
            self._count("sent", accepted)
            self._count("failed", count - accepted - len(rejected))
            if not rejected:
                self.client._failed_call("/batch", exc)
            return
        except Exception as exc:  # noqa: BLE001 - transport failures are counted, never raised
            self._count("failed", count)
            self.client._failed_call("/batch", exc)
            return
        self._count("sent", int(answer.get("accepted", count)) if isinstance(answer, dict) else count)
        self._count("batches", 1)
        self.client._succeeded()

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
            while self._pending():
                remaining = deadline - time.time()
                if remaining <= 0 or not self._sender.is_alive():
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
        self._sender.join(max(0.1, min(timeout, 1.0)))
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

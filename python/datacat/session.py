"""``Session``: the object applications use (``create_session()`` makes one)."""

from __future__ import absolute_import

import functools
import inspect
import logging
import os
import threading
import time

from . import _payload
from ._breadcrumbs import DEFAULT_LIMIT as _BREADCRUMBS, Breadcrumbs
from ._lifecycle import open_sessions
from ._transport import TransportError

log = logging.getLogger("datacat")

_monotonic = getattr(time, "perf_counter", time.time)

class Timer(object):
    """Times a block (or a decorated function) and logs a ``timer`` metric.

    ``unit``: ``"seconds"`` (default) or ``"milliseconds"``/``"ms"``. ``count``
    (settable inside the block as ``timer.count``) is sent when > 0. The metric
    is logged even when the block raises; the exception is not swallowed.
    """

    def __init__(self, session, name, count=None, tags=None, unit="seconds"):
        self.session = session
        self.name = name
        self.count = count or 0
        self.tags = tags
        self.unit = unit
        self.elapsed = None
        self._started = None

    def __enter__(self):
        self._started = _monotonic()
        return self

    def __exit__(self, exc_type, exc_value, tb):
        seconds = _monotonic() - self._started
        self.elapsed = seconds
        value = seconds * 1000.0 if self.unit in ("ms", "milliseconds") else seconds
        self.session.log_metric(self.name, value, tags=self.tags, unit=self.unit,
                                metric_type="timer", count=self.count if self.count > 0 else None)
        return False

    def __call__(self, function):
        if _is_coroutine_function(function):
            return _timed_coroutine(self, function)

        @functools.wraps(function)
        def timed(*args, **kwargs):
            with self._again():
                return function(*args, **kwargs)

        return timed

    def _again(self):
        """A timer like this one, for one call of a decorated function."""
        return Timer(self.session, self.name, self.count, self.tags, self.unit)


_is_coroutine_function = getattr(inspect, "iscoroutinefunction", lambda function: False)

# ``async def`` is a syntax error to Python 2's compiler (which byte-compiles every module
# of the package when it is installed), so the wrapper of coroutine functions is compiled
# only where there are coroutine functions to wrap.
_TIMED_COROUTINE = """
def timed_coroutine(timer, function):
    @functools.wraps(function)
    async def timed(*args, **kwargs):
        with timer._again():
            return await function(*args, **kwargs)
    return timed
"""


def _timed_coroutine(timer, function):
    """``function`` (an ``async def``), timed from its start to its end, not its creation."""
    namespace = {"functools": functools}
    exec(_TIMED_COROUTINE, namespace)
    return namespace["timed_coroutine"](timer, function)


class _TypedMetrics(object):
    """Typed metric helpers over ``log_metric`` (shared by Session and AsyncSession)."""

    def log_gauge(self, name, value, tags=None, unit=None):
        """A value that goes up and down (memory, fps)."""
        return self.log_metric(name, value, tags=tags, unit=unit, metric_type="gauge")

    def log_counter(self, name, delta=1, tags=None, unit=None):
        """Add ``delta`` to a running total the daemon keeps."""
        return self.log_metric(name, 0, tags=tags, unit=unit, metric_type="counter", delta=delta)

    def log_histogram(self, name, value, unit=None, tags=None, buckets=None, metadata=None):
        """One observation of a distribution, bucketed by ``buckets`` (upper bounds)."""
        return self.log_metric(name, value, tags=tags, unit=unit, metric_type="histogram",
                               metadata=metadata, buckets=buckets)

    def log_timer(self, name, duration, count=None, tags=None, unit="seconds"):
        """A measured duration."""
        return self.log_metric(name, duration, tags=tags, unit=unit, metric_type="timer", count=count)

    def timer(self, name, count=None, tags=None, unit="seconds"):
        """``with session.timer("load"):`` (or ``@session.timer("load")``) logs a timer."""
        return Timer(self, name, count=count, tags=tags, unit=unit)


class Session(_TypedMetrics):
    """One run of the application: state, events, metrics, end.

    All methods return the daemon's JSON answer (a dict) on success and False
    when the call was not delivered (logged on the ``datacat`` logger and
    counted in ``get_stats()``); they never raise for transport problems.
    ``registered`` is False if the session could not be registered (daemon or
    query service unavailable): it then refuses every call, counting it as
    failed (None while an async session's registration is under way).

    A session not ended when the process exits normally is ended then, as
    ``ended`` with the exit reason (within ``exit_timeout`` seconds for all of
    them together). Usable as a context manager: the session ends when the block
    exits.
    """

    def __init__(self, client, session_id, product=None, version=None, registered=True,
                 exit_timeout=None, max_breadcrumbs=_BREADCRUMBS, environment=None, tags=None):
        self.client = client
        self.environment = environment
        self.tags = tags
        self.breadcrumbs = Breadcrumbs(max_breadcrumbs)
        self.session_id = session_id
        self.product = product
        self.version = version
        self.registered = registered
        self.exit_timeout = client.end_timeout if exit_timeout is None else float(exit_timeout)
        self._end_lock = threading.Lock()
        self._ended = False
        self._end_result = None
        self._monitor = None
        self._pid = os.getpid()
        if session_id is not None and registered is not False:
            open_sessions.add(self)

    def __repr__(self):
        return "<datacat.Session %s %s/%s%s>" % (
            self.session_id, self.product, self.version, " ended" if self._ended else "")

    @property
    def ended(self):
        return self._ended

    def _closed(self, what):
        """Refuse (count, log) a call the session cannot send: True if refused. A
        disabled client's sessions refuse every call without a word."""
        if getattr(self.client, "disabled", False):
            return True
        if self._ended:
            problem = "session %s has already ended" % (self.session_id,)
        elif self.registered is False:
            problem = "session %s was never registered" % (self.session_id,)
        else:
            return False
        self.client._failed_call(what, TransportError(problem, kind="not-sendable"))
        return True

    def update_state(self, state):
        """Deep-merge ``state`` into the session state: objects merge, arrays and
        scalars replace, ``None`` deletes the key."""
        if self._closed("/state"):
            return False
        return self.client.update_state(self.session_id, state)

    def log_event(self, name, level=None, category=None, labels=None, message=None, data=None,
                  group=None, exception=None):
        """Log an event; ``level`` is debug/info/warning/error/critical (default info).

        ``log_event("name", {"k": "v"})`` (data in the first optional slot) is
        accepted.
        """
        if self._closed("/event"):
            return False
        level, data = _payload.event_level_and_data(level, data)
        data = self.breadcrumbs.attach(level, data)
        return self.client.log_event(self.session_id, name, level=level, category=category,
                                     labels=labels, message=message, data=data, group=group,
                                     exception=exception)

    def log_metric(self, name, value, tags=None, unit=None, metric_type="gauge", count=None,
                   metadata=None, delta=None, buckets=None):
        """Log one metric point (``metric_type``: gauge, counter, histogram, timer)."""
        if self._closed("/metric"):
            return False
        return self.client.log_metric(self.session_id, name, value, tags=tags, unit=unit,
                                      metric_type=metric_type, count=count, metadata=metadata,
                                      delta=delta, buckets=buckets)

    def log_exception(self, exc_info=None, extra_data=None, message=None, level="error",
                      with_locals=None):
        """Log the exception being handled (or ``exc_info``) with its traceback and the
        exceptions behind it; ``with_locals`` (default: ``create_session``'s
        ``capture_locals``) adds its innermost frames' local variables."""
        if self._closed("/event"):
            return False
        return self.client.log_exception(self.session_id, exc_info=exc_info,
                                         extra_data=self.breadcrumbs.attach(level, extra_data),
                                         message=message, level=level, with_locals=with_locals)

    def add_breadcrumb(self, message, level="info", category=None, data=None):
        """Keep ``message`` in this process (no request) until the next error event, which
        carries the last ``max_breadcrumbs`` of them as its data's ``breadcrumbs``."""
        self.breadcrumbs.add(message, level=level, category=category, data=data)
        return True

    def heartbeat(self):
        """Tell the daemon (and this session's heartbeat monitor) the application is alive."""
        if self._closed("/heartbeat"):
            return False
        if self._monitor is not None:
            self._monitor.beat()
        return self.client.heartbeat(self.session_id)

    # -- hang detection --------------------------------------------------------------

    def start_heartbeat_monitor(self, timeout=60, check_interval=5, _beat=None, _tell_daemon=None):
        """Watch for hangs: the daemon marks the session hung when ``heartbeat()`` is
        ``timeout`` s overdue, and this process sends the stacks of all its threads
        then. Calling it again restarts the monitor with the new settings."""
        from ._monitor import HeartbeatMonitor

        if self._monitor is not None:
            self._monitor.stop()
        self._monitor = HeartbeatMonitor(self, timeout=timeout, check_interval=check_interval,
                                         beat=_beat, tell_daemon=_tell_daemon)
        return self._monitor.start()

    def stop_heartbeat_monitor(self):
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()
        return self.client.stop_heartbeat_monitor(self.session_id)

    def pause_heartbeat_monitoring(self):
        """Suspend hang detection (a long load screen that cannot beat)."""
        if self._monitor is not None:
            self._monitor.pause()
        return self.client.pause_heartbeat_monitoring(self.session_id)

    def resume_heartbeat_monitoring(self):
        if self._monitor is not None:
            self._monitor.resume()
        return self.client.resume_heartbeat_monitoring(self.session_id)

    def end(self, reason=None, crashed=False, timeout=None, deadline=None):
        """End the session (``crashed=True``: as crashed). Returns within ``timeout``
        seconds (default: the client's ``end_timeout``), the request included; with a
        daemon, the data is in its spool by then and delivered even if NATS is slow.

        Calling it again does nothing and returns the first call's result.
        """
        with self._end_lock:
            if self._ended:
                return self._end_result
            if self.registered is False:
                self._closed("/end")
            self._ended = True
            open_sessions.discard(self)
            if self._monitor is not None:
                self._monitor.stop(timeout=0.2)
            if self.registered is False:
                self._end_result = False
                return False
            self._end_result = self.client.end_session(
                self.session_id, reason=reason, crashed=crashed, timeout=timeout, deadline=deadline)
            return self._end_result

    def shutdown(self, timeout=None, reason=None, crashed=False):
        """Same as ``end`` (a blocking session has nothing buffered)."""
        return self.end(reason=reason, crashed=crashed, timeout=timeout)

    def flush(self, timeout=None):
        """Nothing to wait for: a blocking session's calls are sent when made."""
        return True

    def get_details(self):
        """The whole session as the query service holds it (``state``, ``events``,
        ``metrics``, ``state_history``, ``active``, ...), including every call made
        before this one; what the daemon holds when the query service cannot say
        (``source`` tells which); None when neither can."""
        return self.client.get_session(self.session_id)

    def get_stats(self):
        """``{"sent": n, "failed": n}`` for this session's client."""
        return self.client.get_stats()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        self.end(reason="exception" if exc_type is not None else None)
        return False

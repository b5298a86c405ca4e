"""``Session`` (the object applications use) and ``create_session()``."""

from __future__ import absolute_import

import atexit
import logging
import os
import threading
import weakref

from .client import DatacatClient
from ._transport import TransportError

log = logging.getLogger("datacat")

# The reason recorded for a session still open when the interpreter exits normally: the
# application did not crash, it just never called end(). (A process that dies is reported
# as crashed by the daemon, which sees its pipe close.)
EXIT_REASON = "process exited without calling end()"

_open_sessions = weakref.WeakSet()
_exit_hook_lock = threading.Lock()
_exit_hook_installed = []


def _end_open_sessions():
    pid = os.getpid()
    for session in list(_open_sessions):
        # A forked child inherits its parent's sessions; they are the parent's to end.
        if session._pid == pid and not session.ended:
            session.end(reason=EXIT_REASON)


def _track_open_session(session):
    with _exit_hook_lock:
        if not _exit_hook_installed:
            atexit.register(_end_open_sessions)
            _exit_hook_installed.append(True)
        _open_sessions.add(session)


# Options of the original create_session() that this version accepts and ignores.
_LEGACY_OPTIONS = ("async_mode", "queue_size", "use_daemon")


class Session(object):
    """One run of the application: state, events, metrics, end.

    All methods return the daemon's JSON answer (a dict) on success and None
    when the call was lost (logged on the ``datacat`` logger and counted in
    ``get_stats()``); they never raise for transport problems. ``session_id``
    is None if the session could not be registered (daemon unavailable); the
    session then drops every call, counting it as failed.

    Usable as a context manager: the session ends when the block exits.
    """

    def __init__(self, client, session_id, product=None, version=None):
        self.client = client
        self.session_id = session_id
        self.product = product
        self.version = version
        self._end_lock = threading.Lock()
        self._ended = False
        self._end_result = None
        self._pid = os.getpid()
        if session_id is not None:
            _track_open_session(self)

    def __repr__(self):
        return "<datacat.Session %s %s/%s%s>" % (
            self.session_id, self.product, self.version, " ended" if self._ended else "")

    @property
    def ended(self):
        return self._ended

    def _closed(self, what):
        if not self._ended:
            return False
        self.client._failed_call(what, TransportError(
            "session %s has already ended" % (self.session_id,), kind="ended"))
        return True

    def update_state(self, state):
        """Deep-merge ``state`` into the session state: objects merge, arrays and
        scalars replace, ``None`` deletes the key."""
        if self._closed("/state"):
            return None
        return self.client.update_state(self.session_id, state)

    def log_event(self, name, level=None, category=None, labels=None, message=None, data=None,
                  group=None):
        """Log an event; ``level`` is debug/info/warning/error/critical (default info).

        ``log_event("name", {"k": "v"})`` (data in the first optional slot, as
        in the original documentation) is accepted.
        """
        if self._closed("/event"):
            return None
        return self.client.log_event(self.session_id, name, level=level, category=category,
                                     labels=labels, message=message, data=data, group=group)

    def log_metric(self, name, value, tags=None, unit=None, metric_type="gauge", count=None):
        """Log one metric point (``metric_type``: gauge, counter, histogram, timer)."""
        if self._closed("/metric"):
            return None
        return self.client.log_metric(self.session_id, name, value, tags=tags, unit=unit,
                                      metric_type=metric_type, count=count)

    def log_exception(self, exc_info=None, extra_data=None, message=None):
        """Log the exception being handled (or ``exc_info``) with its traceback."""
        if self._closed("/event"):
            return None
        return self.client.log_exception(self.session_id, exc_info=exc_info,
                                         extra_data=extra_data, message=message)

    def heartbeat(self):
        """Tell the daemon the application is alive."""
        if self._closed("/heartbeat"):
            return None
        return self.client.heartbeat(self.session_id)

    def end(self, reason=None):
        """End the session. Blocks until the daemon has flushed the session's data.

        Calling it again does nothing and returns the first call's result.
        """
        with self._end_lock:
            if self._ended:
                return self._end_result
            self._ended = True
            _open_sessions.discard(self)
            self._end_result = self.client.end_session(self.session_id, reason=reason)
            return self._end_result

    def get_stats(self):
        """``{"sent": n, "failed": n}`` for this session's client."""
        return self.client.get_stats()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        self.end(reason="exception" if exc_type is not None else None)
        return False


def create_session(base_url=None, product=None, version=None, nats_url=None, daemon_port="auto",
                   **kwargs):
    """Register a new session with this process's daemon and return a ``Session``.

    ``product`` and ``version`` are required (``ValueError`` otherwise).
    ``base_url`` is the query service URL, kept for compatibility. ``nats_url``
    (default ``$DATACAT_NATS_URL``) is handed to the daemon when it starts.
    Further keyword arguments go to ``DatacatClient`` (``daemon_binary``,
    ``timeout``, ``end_timeout``, ``startup_timeout``, ``log_path``).

    If the daemon cannot be started or reached, the returned session has
    ``session_id`` None and drops its calls (logged and counted): monitoring
    never stops the application.
    """
    if not product or not version:
        raise ValueError("Product and version are required to create a session")
    for option in _LEGACY_OPTIONS:
        if option in kwargs:
            value = kwargs.pop(option)
            if option == "async_mode" and value:
                log.warning("async_mode is not available in this version; "
                            "using a blocking session")
    client = DatacatClient(base_url, daemon_port=daemon_port, nats_url=nats_url, **kwargs)
    session_id = client.create_session(product, version)
    return Session(client, session_id, product=product, version=version)

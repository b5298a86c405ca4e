"""Breadcrumbs: what led up to an error, kept in the process rather than sent.

A session keeps its last ``limit`` breadcrumbs (``Session.add_breadcrumb``, and the records
``DatacatHandler`` takes below its ``event_level``). They cost no request; the next event
at level ``error`` or ``critical`` (a ``log_exception`` too, and the crash an uncaught
exception ends a session with) carries them, oldest first, as its data's ``breadcrumbs``,
and the buffer starts again empty.
"""

from __future__ import absolute_import

import collections
import threading
import time

from . import _payload

DEFAULT_LIMIT = 100
_ERROR_LEVELS = frozenset(("error", "critical"))


class Breadcrumbs(object):
    def __init__(self, limit=DEFAULT_LIMIT):
        self._crumbs = collections.deque(maxlen=max(0, int(limit)))
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._crumbs)

    def add(self, message, level="info", category=None, data=None, timestamp=None):
        crumb = {
            "timestamp": time.time() if timestamp is None else float(timestamp),
            "level": _payload.normalize_level(level) or "info",
            "message": _payload._as_text(message),
        }
        if category is not None:
            crumb["category"] = _payload._as_text(category)
        if data:
            crumb["data"] = data
        with self._lock:
            self._crumbs.append(crumb)

    def attach(self, level, data):
        """``data`` for an event at ``level``: with the breadcrumbs taken out of the buffer
        when the level is an error's (a new dict; the caller's is not changed)."""
        if not self._crumbs or _payload.normalize_level(level) not in _ERROR_LEVELS:
            return data
        with self._lock:
            crumbs = list(self._crumbs)
            self._crumbs.clear()
        if not crumbs:
            return data
        # A bare value is wrapped as every event's is (``_payload._as_object``).
        attached = dict(_payload._as_object(data)) if data is not None else {}
        attached["breadcrumbs"] = crumbs
        return attached

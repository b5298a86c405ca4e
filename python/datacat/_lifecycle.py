"""How the sessions of a process end when the process ends.

Every session not ended yet is held here, strongly: one the application dropped without
ending is still ended (``ended``, with the exit reason) when the process exits normally,
instead of being collected and then reported crashed by the daemon when the process's pipe
closes. ``sys.exit`` is wrapped to remember its status for that reason (``SystemExit``
never reaches ``sys.excepthook``). At exit, after the sessions, one line on stderr says how
many calls of the process were not delivered, if any.
"""

from __future__ import absolute_import

import atexit
import logging
import os
import sys
import threading

from . import _accounting
from ._transport import deadline_after

log = logging.getLogger("datacat")

# The reason recorded for a session still open when the interpreter exits normally: the
# application did not crash, it just never called end(). (A process that dies is reported
# as crashed by the daemon, which sees its pipe close.)
EXIT_REASON = "process exited without calling end()"


class _OpenSessions(object):
    """Every session of this process not ended yet (anything with ``ended``, ``end``,
    ``exit_timeout`` and the ``_pid`` it was created in)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sessions = []

    def add(self, session):
        with self._lock:
            if not any(s is session for s in self._sessions):
                self._sessions.append(session)

    def discard(self, session):
        with self._lock:
            self._sessions = [s for s in self._sessions if s is not session]

    def of_this_process(self):
        """The open sessions this process created (a forked child inherits its
        parent's list; those are the parent's to end)."""
        pid = os.getpid()
        with self._lock:
            return [s for s in self._sessions if s._pid == pid and not s.ended]


open_sessions = _OpenSessions()

_exit_status = []
_exit_wrapped = []


def exit_status():
    """``(status,)`` as last passed to ``sys.exit`` in this process, or None."""
    return tuple(_exit_status) if _exit_status else None


def remember_exit_status():
    """Wrap ``sys.exit`` (once) to remember its status."""
    if _exit_wrapped:
        return
    _exit_wrapped.append(True)
    previous_exit = sys.exit

    def exit(status=None):
        # In another thread it only ends that thread.
        if isinstance(threading.current_thread(), threading._MainThread):
            _exit_status[:] = [status]
        return previous_exit(status)

    exit.__doc__ = previous_exit.__doc__
    sys.exit = exit


def exit_reason():
    """Why the process is exiting, for the sessions it leaves open."""
    status = exit_status()
    if status is None:
        return EXIT_REASON
    code, = status
    if code is None or code == 0:
        return "process exited (sys.exit(0)) without calling end()"
    if isinstance(code, int):
        return "process exited with status %d (sys.exit) without calling end()" % (code,)
    return "process exited (sys.exit(%r)) without calling end()" % (code,)


def end_open_sessions(reason=None, timeout=None, crashed=False, before_end=None):
    """End every open session of this process (``ended``, with ``reason``; ``crashed``
    if asked), all within one deadline: ``timeout``, by default the longest
    ``exit_timeout`` among them. ``before_end(session)`` is called first for each."""
    sessions = open_sessions.of_this_process()
    if not sessions:
        return
    if timeout is None:
        timeout = max(s.exit_timeout for s in sessions)
    deadline = deadline_after(timeout)
    reason = reason if reason is not None else exit_reason()
    for session in sessions:
        try:
            if before_end is not None:
                before_end(session)
            session.end(reason=reason, crashed=crashed, deadline=deadline)
        except Exception:  # noqa: BLE001 - never raise at exit
            log.debug("ending a session at exit failed", exc_info=True)


def _at_exit():
    end_open_sessions()
    _accounting.report_at_exit()


# Registered when the package is imported, so that it runs after the application's own
# exit handlers (registered later, run first) and reports undelivered calls even of
# programs that never had a session open.
atexit.register(_at_exit)



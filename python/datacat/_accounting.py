"""Calls this process made that were not delivered, counted for the exit line.

Every client and async session counts its own calls (``get_stats()``); this
keeps the process-wide total so that, at exit, one line on stderr says how
many calls never reached DataCat (none: nothing is printed). Monitoring that
loses data without a word is worse than none.
"""

from __future__ import absolute_import

import sys
import threading

_lock = threading.Lock()
_undelivered = {"dropped": 0, "failed": 0, "invalid": 0}
# DATACAT_DEBUG: the first problem goes to stderr (once), whatever the logging setup.
_debug = {"on": False, "reported": False}


def set_debug(on):
    with _lock:
        _debug["on"] = bool(on) or _debug["on"]


def report_problem(problem, stream=None):
    """With ``DATACAT_DEBUG`` on, write the first problem of this process to stderr."""
    with _lock:
        if not _debug["on"] or _debug["reported"]:
            return
        _debug["reported"] = True
    stream = stream if stream is not None else sys.stderr
    try:
        stream.write("datacat (DATACAT_DEBUG): %s\n"
                     "datacat (DATACAT_DEBUG): further problems go to the 'datacat' logger only; "
                     "a line at exit counts the calls not delivered\n" % (problem,))
        stream.flush()
    except Exception:  # noqa: BLE001 - stderr may be closed
        pass


def count(kind, n=1):
    """``n`` calls were not delivered: ``dropped`` (buffer full), ``failed`` (lost in
    transport, or not sendable: session ended, never registered, deadline passed)
    or ``invalid`` (refused as invalid)."""
    if n:
        with _lock:
            _undelivered[kind] += n


def undelivered():
    with _lock:
        return dict(_undelivered)


def report_at_exit(stream=None):
    """Write the one line about undelivered calls, if there were any."""
    counts = undelivered()
    total = sum(counts.values())
    if not total:
        return
    stream = stream if stream is not None else sys.stderr
    try:
        stream.write("datacat: %d call(s) of this process were not delivered (%s); "
                     "see get_stats() and the 'datacat' logger\n"
                     % (total, ", ".join("%s %d" % (k, v) for k, v in sorted(counts.items()) if v)))
        stream.flush()
    except Exception:  # noqa: BLE001 - stderr may be closed at exit
        pass

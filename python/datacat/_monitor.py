"""``HeartbeatMonitor``: hang detection with the stacks of every thread.

The daemon decides that a session is hung (it has the clock that survives the
application); this monitor tells it the timeout and, because only the process
itself can see where its threads are stuck, captures the stacks of all threads
when the heartbeat is overdue and sends them as an ``application_hang_stacks``
event. One event per hang: the next heartbeat re-arms it.
"""

from __future__ import absolute_import

import logging
import sys
import threading
import time
import traceback

from . import _payload

log = logging.getLogger("datacat")

#: Frames kept per thread (innermost last).
MAX_FRAMES = 100


def thread_stacks():
    """The stack of every live thread: ``[{"name", "id", "daemon", "frames"}]``."""
    frames = sys._current_frames()  # noqa: SLF001 - the documented way to see other threads
    threads = dict((t.ident, t) for t in threading.enumerate())
    stacks = []
    for ident, frame in sorted(frames.items(), key=lambda item: item[0]):
        thread = threads.get(ident)
        if thread is not None and thread.name.startswith("datacat-"):
            continue  # our own threads are never the hang
        entries = traceback.extract_stack(frame)[-MAX_FRAMES:]
        stacks.append({
            "name": thread.name if thread is not None else "thread-%d" % ident,
            "id": ident,
            "daemon": bool(thread.daemon) if thread is not None else None,
            "frames": [_payload._frame(*entry[:4]) for entry in entries],
        })
    return stacks


class HeartbeatMonitor(object):
    """Watches one session's heartbeats (``Session.start_heartbeat_monitor``)."""

    def __init__(self, session, timeout=60, check_interval=5, beat=None, tell_daemon=None):
        if timeout <= 0 or check_interval <= 0:
            raise ValueError("timeout and check_interval must be positive")
        self.session = session
        self.timeout = float(timeout)
        self.check_interval = float(check_interval)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._last_beat = time.time()
        self._paused = False
        self._reported = False
        self._send_beat = beat or session.heartbeat
        # How the daemon learns the timeout (an async session queues it behind its calls).
        self._tell_daemon = tell_daemon or (
            lambda: session.client.start_heartbeat_monitor(session.session_id, self.timeout))
        self.hangs_reported = 0

    def start(self):
        """Tell the daemon the timeout and start watching. Idempotent; returns self."""
        with self._lock:
            self._last_beat = time.time()
            self._reported = False
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="datacat-heartbeat-monitor")
            self._thread.daemon = True
            self._thread.start()
        self._tell_daemon()
        return self

    def stop(self, timeout=1.0):
        """Stop watching; waits at most ``timeout`` s for the thread (it may be sending
        a hang report)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, min(self.check_interval + 1.0, timeout)))

    def is_running(self):
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def beat(self):
        """Record a heartbeat (the session sends it to the daemon)."""
        with self._lock:
            self._last_beat = time.time()
            self._reported = False

    def heartbeat(self):
        """Beat and send (through the session's buffer in async mode)."""
        return self._send_beat()

    def pause(self):
        with self._lock:
            self._paused = True

    def resume(self):
        with self._lock:
            self._paused = False
            self._last_beat = time.time()
            self._reported = False

    def _run(self):
        while not self._stop.wait(min(self.check_interval, self.timeout / 2.0)):
            with self._lock:
                overdue = time.time() - self._last_beat
                due = not self._paused and not self._reported and overdue > self.timeout
                if due:
                    self._reported = True
            if due:
                self._report(overdue)

    def _report(self, overdue):
        try:
            stacks = thread_stacks()
            self.hangs_reported += 1
            data = {"seconds_since_heartbeat": round(overdue, 3), "timeout_seconds": self.timeout,
                    "threads": stacks}
            # Straight to the daemon, not through an async buffer: this is the one event
            # that must get out while the application is stuck.
            self.session.client.log_event(
                self.session.session_id, "application_hang_stacks", level="error", category="hang",
                group="datacat", message="no heartbeat for %.0f s (timeout %.0f s): stacks of %d threads"
                % (overdue, self.timeout, len(stacks)),
                data=data)
        except Exception:  # noqa: BLE001 - the monitor never raises into anything
            log.debug("reporting a hang failed", exc_info=True)

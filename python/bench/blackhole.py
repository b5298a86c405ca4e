"""Benchmark: what a server that accepts connections and never answers costs the application.

Prints figures; asserts nothing. A "black hole" (a hung proxy, a paused VM) stands in for
the query service and for NATS, and every client call is timed as the application sees it:

1. direct mode (``use_daemon=False``) against a black-holed query service: creating a
   session (blocking and async), blocking calls, async calls, ``end()``;
2. daemon mode with NATS and the query service black-holed: creating a session, calls,
   ``get_details()`` (and the keys it answers), ``end()``;
3. a program that opens an async direct session, logs, and returns without ending it:
   how long its exit takes.

Needs the daemon binary (``DATACAT_DAEMON_BIN``, else the workspace's target/ build).

    python bench/blackhole.py
"""

from __future__ import absolute_import, print_function

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
sys.path.insert(0, PYTHON_DIR)
sys.path.insert(0, os.path.join(PYTHON_DIR, "tests"))

import datacat  # noqa: E402
from blackhole import BlackHole, HangingServer  # noqa: E402

_clock = getattr(time, "perf_counter", time.time)


def timed(label, function, *args, **kwargs):
    started = _clock()
    result = function(*args, **kwargs)
    print("  %-58s %8.3f s" % (label, _clock() - started))
    sys.stdout.flush()
    return result


def direct_mode(query_url):
    print("1. direct mode, query service black-holed (%s)" % (query_url,))
    session = timed("create_session(async_mode=True)", datacat.create_session, query_url,
                    product="bh", version="1", use_daemon=False, async_mode=True,
                    capture_uncaught=False)
    started = _clock()
    for i in range(1000):
        session.log_event("tick", data={"i": i})
    print("  %-58s %8.3f s" % ("1000 async log_event calls", _clock() - started))
    timed("async end()", session.end)
    print("  async get_stats(): %s" % (session.get_stats(),))
    blocking = timed("create_session() (blocking)", datacat.create_session, query_url,
                     product="bh", version="1", use_daemon=False, capture_uncaught=False)
    for i in range(3):
        timed("blocking log_event #%d" % (i + 1,), blocking.log_event, "tick")
    timed("blocking end()", blocking.end)


def direct_mode_hanging_later():
    server = HangingServer()
    url = "http://127.0.0.1:%d" % (server.port,)
    print("1b. direct mode, the query service answers registration, then hangs")
    blocking = timed("create_session() (blocking, answered)", datacat.create_session, url,
                     product="bh", version="1", use_daemon=False, capture_uncaught=False)
    asynchronous = timed("create_session(async_mode=True) (answered)", datacat.create_session, url,
                         product="bh", version="1", use_daemon=False, async_mode=True,
                         capture_uncaught=False)
    asynchronous.flush(5)  # registered before the server hangs
    server.hang()
    for i in range(3):
        timed("blocking log_event #%d" % (i + 1,), blocking.log_event, "tick")
    timed("blocking end()", blocking.end)
    started = _clock()
    for i in range(1000):
        asynchronous.log_event("tick", data={"i": i})
    print("  %-58s %8.3f s" % ("1000 async log_event calls", _clock() - started))
    time.sleep(0.2)  # the shipper is now stuck in its request
    timed("async shutdown(timeout=2.0)", asynchronous.shutdown, 2.0)
    print("  async get_stats(): %s" % (asynchronous.get_stats(),))
    print("  a call after shutdown returns %r" % (asynchronous.log_event("late"),))


def daemon_mode(query_url, nats_url):
    print("2. daemon mode, NATS (%s) and query service (%s) black-holed" % (nats_url, query_url))
    session = timed("create_session() (blocking; starts the daemon)", datacat.create_session,
                    query_url, product="bh", version="1", nats_url=nats_url,
                    capture_uncaught=False)
    timed("update_state", session.update_state, {"level": 1})
    timed("log_event", session.log_event, "tick")
    details = timed("get_details()", session.get_details)
    print("  get_details() keys: %s" % (sorted(details) if isinstance(details, dict) else details,))
    timed("get_details() again", session.get_details)
    timed("end()", session.end)
    details = timed("get_details() after end()", session.get_details)
    if isinstance(details, dict):
        print("  after end(): active=%r" % (details.get("active"),))
    asynchronous = timed("create_session(async_mode=True)", datacat.create_session, query_url,
                         product="bh", version="1", nats_url=nats_url, async_mode=True,
                         capture_uncaught=False)
    asynchronous.log_event("tick")
    timed("async end()", asynchronous.end)


EXITING_APP = r"""
import sys
sys.path.insert(0, %r)
import datacat
def main():
    s = datacat.create_session(%r, product="bh", version="1", use_daemon=False, async_mode=True)
    for i in range(10):
        s.log_event("tick")
main()
"""


def exiting_program(query_url):
    print("3. a program that returns without end(), query service black-holed")
    script = EXITING_APP % (PYTHON_DIR, query_url)
    started = _clock()
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    _, err = proc.communicate()
    print("  %-58s %8.3f s" % ("process run and exit", _clock() - started))
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines[-3:]:
        print("  stderr: %s" % (line,))


def main():
    os.environ.setdefault("DATACAT_SPOOL_DIR", tempfile.mkdtemp(prefix="datacat-bh-spool-"))
    os.environ.setdefault("DATACAT_DAEMON_LOG", os.devnull)
    query, nats = BlackHole(), BlackHole()
    query_url = "http://127.0.0.1:%d" % (query.port,)
    nats_url = "nats://127.0.0.1:%d" % (nats.port,)
    direct_mode(query_url)
    direct_mode_hanging_later()
    daemon_mode(query_url, nats_url)
    exiting_program(query_url)


if __name__ == "__main__":
    main()

"""Benchmark: the Python client's per-call cost in async mode and its delivery rate.

Prints figures; asserts nothing (these machines are shared and noisy).

1. Median per-call cost of ``log_event``, ``log_metric`` and ``update_state``
   on an ``AsyncSession`` whose shipper is held back (so the figure is the
   caller's cost only), next to the floor: a bare ``deque.append``.
2. Events per second delivered from one process to a real daemon: N events
   logged as fast as possible (``drop_on_full=False``: the caller waits for
   room instead of dropping, so nothing is lost and the figure is the
   delivery rate), clock stopped when ``flush()`` returns (every event
   accepted by the daemon).

Needs the daemon binary (``DATACAT_DAEMON_BIN`` or target/release, else
target/debug) and ``DATACAT_NATS_URL`` pointing at a JetStream server, or
``DATACAT_NATS_SERVER_BIN`` to start one.

    python bench/bench_client.py [events]
"""

from __future__ import absolute_import, print_function

import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(PYTHON_DIR)
sys.path.insert(0, PYTHON_DIR)
sys.path.insert(0, os.path.join(PYTHON_DIR, "tests"))

import datacat  # noqa: E402
from datacat import AsyncSession, DatacatClient, Session  # noqa: E402

_clock = getattr(time, "perf_counter", time.time)


class HeldBack(object):
    """A backend whose requests wait until released: the shipper takes nothing away
    from the caller's thread while the per-call cost is measured."""

    base_url = "http://held-back"

    def __init__(self):
        self.release = threading.Event()

    def request(self, method, path, body=None, timeout=None, deadline=None):
        if path == "/register":
            return {"session_id": "bench"}
        self.release.wait()
        return {"status": "ok"}


def per_call_ns(call, reset, calls=20000, rounds=25):
    """Median over rounds of the mean cost of one call (ns); the buffer is emptied between
    rounds (outside the clock), as the shipper would."""
    results = []
    for _ in range(rounds):
        reset()
        started = _clock()
        for _ in range(calls):
            call()
        results.append((_clock() - started) / calls * 1e9)
    results.sort()
    return results[len(results) // 2]


def call_costs():
    backend = HeldBack()
    client = DatacatClient(daemon=backend)
    session = AsyncSession(Session(client, client.create_session("bench", "1"), "bench", "1"),
                           queue_size=10 ** 7)
    floor = collections.deque()
    append = floor.append
    state = {"player": {"level": 3, "health": 80}, "scene": "menu"}
    reset = session._buffer.clear
    figures = [
        ("deque.append (the floor)", per_call_ns(lambda: append(("e", 1.0, "frame")), floor.clear)),
        ("log_event(name)", per_call_ns(lambda: session.log_event("frame"), reset)),
        ("log_event(name, level, data)", per_call_ns(
            lambda: session.log_event("frame", level="info", data={"n": 1}), reset)),
        ("log_metric(name, value)", per_call_ns(lambda: session.log_metric("fps", 59.5), reset)),
        ("update_state(small nested dict)", per_call_ns(lambda: session.update_state(state), reset)),
    ]
    dropped = session.get_stats()["dropped"]
    session._buffer.clear()
    backend.release.set()
    session.end()
    return figures, dropped


def daemon_binary():
    for candidate in (os.environ.get("DATACAT_DAEMON_BIN"),
                      os.path.join(REPO, "target", "release", "datacat-daemon"),
                      os.path.join(REPO, "target", "debug", "datacat-daemon")):
        if candidate and os.path.isfile(candidate):
            return candidate
    raise SystemExit("datacat-daemon not built (cargo build --release -p datacat-daemon)")


def start_nats():
    """A JetStream nats-server on a free port with the session stream; (url, stop)."""
    binary = os.environ.get("DATACAT_NATS_SERVER_BIN") or "nats-server"
    store = tempfile.mkdtemp(prefix="datacat-bench-nats-")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
                            stdout=open(os.devnull, "w"), stderr=subprocess.STDOUT)
    url = "nats://127.0.0.1:%d" % port
    import natsutil

    deadline = time.time() + 20
    while True:
        try:
            natsutil.ensure_stream(url)
            break
        except Exception:  # noqa: BLE001
            if time.time() > deadline:
                raise
            time.sleep(0.1)

    def stop():
        proc.terminate()
        proc.wait()
        shutil.rmtree(store, ignore_errors=True)

    return url, stop


def delivery_rate(events):
    nats_url, stop_nats = (os.environ["DATACAT_NATS_URL"], None) if os.environ.get(
        "DATACAT_NATS_URL") else start_nats()
    spool = tempfile.mkdtemp(prefix="datacat-bench-spool-")
    os.environ["DATACAT_SPOOL_DIR"] = spool
    try:
        session = datacat.create_session(product="bench", version="1", nats_url=nats_url,
                                         daemon_binary=daemon_binary(), async_mode=True,
                                         queue_size=100000, drop_on_full=False,
                                         capture_uncaught=False)
        assert session.session_id, "the daemon did not register the session"
        log_event = session.log_event
        started = _clock()
        for i in range(events):
            log_event("frame", data={"i": i})
        logged = _clock() - started
        drained = session.flush(120)
        seconds = _clock() - started
        stats = session.get_stats()
        session.end()
        return events, logged, seconds, drained, stats
    finally:
        datacat._daemon.stop_shared_daemons(timeout=10.0)
        shutil.rmtree(spool, ignore_errors=True)
        if stop_nats is not None:
            stop_nats()


def main():
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 500000
    print("python client benchmark (CPython %s)" % sys.version.split()[0])
    figures, dropped = call_costs()
    for name, ns in figures:
        print("  async %-34s median %6.0f ns per call" % (name, ns))
    print("  (target: log_event, log_metric, update_state <= 500 ns; %d dropped while measuring)"
          % dropped)
    events, logged, seconds, drained, stats = delivery_rate(events)
    print("  delivered to a real daemon: %d events in %.2f s = %.0f events/s (target >= 200000)"
          % (events, seconds, events / seconds))
    print("    logging took %.2f s; flushed: %s; sent %d, dropped %d, failed %d, invalid %d, batches %d"
          % (logged, drained, stats["sent"], stats["dropped"], stats["failed"], stats["invalid"],
             stats["batches"]))


if __name__ == "__main__":
    main()

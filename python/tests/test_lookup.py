"""Unit tests: finding the daemon binary, the command line, the handshake."""

from __future__ import absolute_import

import os
import stat
import sys
import textwrap

import pytest

from datacat import _daemon
from datacat._daemon import DaemonManager, DaemonStartError, locate_daemon_binary

NAME = _daemon.daemon_binary_name()
posix_only = pytest.mark.skipif(os.name == "nt", reason="uses executable scripts")


def make_exe(path, content="#!/bin/sh\nexit 0\n"):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory)
    with open(path, "w") as handle:
        handle.write(content)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_env_var_wins(tmpdir):
    on_path = make_exe(os.path.join(str(tmpdir), "bin", NAME))
    env = {"DATACAT_DAEMON_BIN": "/explicit/datacat-daemon", "PATH": os.path.dirname(on_path)}
    assert locate_daemon_binary(start_dir=str(tmpdir), environ=env) == ("/explicit/datacat-daemon", "env")


def test_empty_env_var_is_ignored(tmpdir):
    on_path = make_exe(os.path.join(str(tmpdir), "bin", NAME))
    env = {"DATACAT_DAEMON_BIN": "", "PATH": os.path.dirname(on_path)}
    assert locate_daemon_binary(start_dir=str(tmpdir), environ=env) == (on_path, "path")


@posix_only
def test_the_wheels_daemon_before_path(tmpdir, monkeypatch):
    root = str(tmpdir)
    paths = {"purelib": os.path.join(root, "env", "lib"), "scripts": os.path.join(root, "env", "bin")}
    monkeypatch.setattr(_daemon.sysconfig, "get_scheme_names", lambda: ("elsewhere", "env"))
    monkeypatch.setattr(
        _daemon.sysconfig, "get_paths",
        lambda scheme: paths if scheme == "env" else {"purelib": "/nowhere", "scripts": "/nowhere"})
    installed = make_exe(os.path.join(paths["scripts"], NAME))
    on_path = make_exe(os.path.join(root, "bin", NAME))
    env = {"PATH": os.path.dirname(on_path)}
    package = os.path.join(paths["purelib"], "datacat")
    assert locate_daemon_binary(start_dir=root, environ=env, package_dir=package) == (installed, "package")
    # A package that is not where the scheme installs (a checkout) does not look there.
    elsewhere = os.path.join(root, "checkout", "datacat")
    assert locate_daemon_binary(start_dir=root, environ=env, package_dir=elsewhere) == (on_path, "path")
    # Nor when the wheel's daemon is missing.
    os.remove(installed)
    assert locate_daemon_binary(start_dir=root, environ=env, package_dir=package) == (on_path, "path")


def test_path_before_workspace(tmpdir):
    root = str(tmpdir)
    on_path = make_exe(os.path.join(root, "bin", NAME))
    make_exe(os.path.join(root, "ws", "target", "debug", NAME))
    env = {"PATH": os.path.join(root, "nothing") + os.pathsep + os.path.dirname(on_path)}
    assert locate_daemon_binary(start_dir=os.path.join(root, "ws"), environ=env) == (on_path, "path")


def test_path_ignores_non_executable(tmpdir):
    path = os.path.join(str(tmpdir), "bin", NAME)
    make_exe(path)
    os.chmod(path, 0o644)
    env = {"PATH": os.path.dirname(path)}
    assert locate_daemon_binary(start_dir=str(tmpdir), environ=env) == (None, None)


def test_workspace_walks_up_and_prefers_debug(tmpdir):
    root = str(tmpdir)
    debug = make_exe(os.path.join(root, "target", "debug", NAME))
    make_exe(os.path.join(root, "target", "release", NAME))
    start = os.path.join(root, "python", "datacat")
    os.makedirs(start)
    env = {"PATH": ""}
    assert locate_daemon_binary(start_dir=start, environ=env) == (debug, "workspace")


def test_workspace_release_when_no_debug(tmpdir):
    root = str(tmpdir)
    release = make_exe(os.path.join(root, "target", "release", NAME))
    start = os.path.join(root, "a", "b", "c")
    os.makedirs(start)
    assert locate_daemon_binary(start_dir=start, environ={"PATH": ""}) == (release, "workspace")


def test_nearest_workspace_first(tmpdir):
    root = str(tmpdir)
    make_exe(os.path.join(root, "target", "debug", NAME))
    inner = make_exe(os.path.join(root, "inner", "target", "release", NAME))
    start = os.path.join(root, "inner", "python")
    os.makedirs(start)
    assert locate_daemon_binary(start_dir=start, environ={"PATH": ""}) == (inner, "workspace")


def test_workspace_candidates_order(tmpdir):
    start = os.path.join(str(tmpdir), "x")
    candidates = _daemon.workspace_candidates(start)
    assert candidates[0] == os.path.join(start, "target", "debug", NAME)
    assert candidates[1] == os.path.join(start, "target", "release", NAME)
    assert candidates[2] == os.path.join(str(tmpdir), "target", "debug", NAME)


def test_nothing_found(tmpdir):
    assert locate_daemon_binary(start_dir=str(tmpdir), environ={"PATH": ""}) == (None, None)


def test_not_found_error_is_clear(monkeypatch):
    monkeypatch.setattr(_daemon, "locate_daemon_binary", lambda *a, **k: (None, None))
    with pytest.raises(DaemonStartError) as info:
        DaemonManager().start()
    assert "DATACAT_DAEMON_BIN" in str(info.value)


def test_missing_explicit_binary_is_named(monkeypatch):
    monkeypatch.setenv("DATACAT_DAEMON_BIN", "/no/such/datacat-daemon")
    with pytest.raises(DaemonStartError) as info:
        DaemonManager().start()
    assert "/no/such/datacat-daemon" in str(info.value)
    assert "DATACAT_DAEMON_BIN" in str(info.value)


def test_command_line(monkeypatch):
    monkeypatch.delenv("DATACAT_NATS_URL", raising=False)
    args = DaemonManager()._command("/bin/d")
    assert args == ["/bin/d", "--parent-pid", str(os.getpid())]

    # The NATS URL (it may carry a password) is never an argument: it is in the environment.
    manager = DaemonManager(nats_url="nats://u:secret@h:1", daemon_port=4567)
    args = manager._command("/bin/d")
    assert args == ["/bin/d", "--parent-pid", str(os.getpid()), "--listen", "127.0.0.1:4567"]
    assert manager._environment()["DATACAT_NATS_URL"] == "nats://u:secret@h:1"

    monkeypatch.setenv("DATACAT_NATS_URL", "nats://env:2")
    assert DaemonManager()._environment()["DATACAT_NATS_URL"] == "nats://env:2"
    assert "nats://env:2" not in DaemonManager()._command("/bin/d")


def test_shared_daemon_is_per_settings():
    try:
        a = _daemon.shared_daemon(nats_url="nats://x:1", daemon_binary="/bin/true")
        b = _daemon.shared_daemon(nats_url="nats://x:1", daemon_binary="/bin/true")
        c = _daemon.shared_daemon(nats_url="nats://y:1", daemon_binary="/bin/true")
        assert a is b
        assert a is not c
    finally:
        _daemon.stop_shared_daemons()


def test_log_path_setting(tmpdir, monkeypatch):
    monkeypatch.delenv("DATACAT_DAEMON_LOG", raising=False)
    handle, path = _daemon._open_log(os.path.join(str(tmpdir), "sub", "d.log"))
    handle.close()
    assert path == os.path.join(str(tmpdir), "sub", "d.log")
    assert os.path.isfile(path)
    handle, path = _daemon._open_log("devnull")
    assert path is None
    assert _daemon.default_log_path().endswith("daemon-%d.log" % os.getpid())


# -- the handshake against small scripts ------------------------------------------------


def script(tmpdir, name, body):
    return make_exe(
        os.path.join(str(tmpdir), name),
        "#!%s\n%s" % (sys.executable, textwrap.dedent(body)),
    )


@posix_only
def test_handshake_reads_port_and_keeps_stdin(tmpdir):
    # Prints noise first (tolerated), then the ready line; exits when stdin closes.
    path = script(tmpdir, "ok", """
        import sys
        sys.stdout.write("hello\\nDATACAT_DAEMON_READY 4242\\n")
        sys.stdout.flush()
        sys.stdin.read()
        sys.stderr.write("stdin closed\\n")
    """)
    log_path = os.path.join(str(tmpdir), "d.log")
    manager = DaemonManager(daemon_binary=path, log_path=log_path)
    assert manager.start() == 4242
    proc = manager.process
    assert proc.stdout.closed
    assert not proc.stdin.closed
    assert proc.poll() is None
    assert manager.stop(timeout=10) == 0
    with open(log_path) as handle:
        assert "stdin closed" in handle.read()


def failed_start(tmpdir, name, body, **options):
    """Start a manager on a script that fails the handshake: the text of the
    ``DaemonStartError`` it raises (it must keep no process)."""
    manager = DaemonManager(daemon_binary=script(tmpdir, name, body), **options)
    with pytest.raises(DaemonStartError) as info:
        manager.start()
    assert manager.process is None
    return str(info.value)


@posix_only
def test_handshake_exit_before_ready(tmpdir):
    text = failed_start(tmpdir, "dies", """
        import sys
        sys.stderr.write("boom: cannot bind\\n")
        sys.exit(3)
    """, log_path=os.path.join(str(tmpdir), "d.log"))
    assert "exit code 3" in text
    assert "boom: cannot bind" in text


@posix_only
def test_handshake_timeout(tmpdir):
    text = failed_start(tmpdir, "silent", """
        import time
        time.sleep(60)
    """, startup_timeout=0.5, log_path="devnull")
    assert "within 0.5 s" in text


@posix_only
def test_handshake_malformed_line(tmpdir):
    text = failed_start(tmpdir, "bad", """
        import sys, time
        sys.stdout.write("DATACAT_DAEMON_READY notaport\\n")
        sys.stdout.flush()
        time.sleep(60)
    """, startup_timeout=5, log_path="devnull")
    assert "malformed ready line" in text


@posix_only
def test_refused_request_starts_a_new_daemon_and_retries_once(tmpdir):
    """A daemon that is alive but no longer listening is replaced; the request is retried."""
    # Announces a port nobody listens on, then waits for stdin EOF.
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead_port = sock.getsockname()[1]
    sock.close()
    path = script(tmpdir, "deaf", """
        import sys
        sys.stdout.write("DATACAT_DAEMON_READY %d\\n")
        sys.stdout.flush()
        sys.stdin.read()
    """ % dead_port)
    from datacat._transport import TransportError
    manager = DaemonManager(daemon_binary=path, log_path="devnull")
    manager.start()
    first = manager.process
    with pytest.raises(TransportError) as info:
        manager.request("POST", "/heartbeat", {"session_id": "s"})
    assert info.value.kind == "refused"
    assert manager.starts == 2  # replaced once, retried once, then gave up
    assert manager.process is not first
    assert _compat_wait(first, 10) == 0  # the old one was asked to exit (stdin closed)
    manager.stop(timeout=10)


def _compat_wait(proc, timeout):
    from datacat._compat import popen_wait
    return popen_wait(proc, timeout)


@posix_only
def test_the_default_log_directory_must_be_private_and_ours(tmpdir, monkeypatch):
    """Another user's (or a shared) directory in the temp dir is not logged into."""
    import stat
    from datacat import _daemon
    monkeypatch.setattr(_daemon.tempfile, "gettempdir", lambda: str(tmpdir))
    path = _daemon.default_log_path()
    directory = os.path.dirname(path)
    handle, opened = _daemon._open_log(None)
    handle.close()
    assert opened == path
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # Opened up by someone: made private again.
    os.chmod(directory, 0o777)
    handle, opened = _daemon._open_log(None)
    handle.close()
    assert opened == path and stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    # Another user's: not used (only root can make one here for the test).
    if os.getuid() == 0:
        os.chown(directory, 65534, 65534)
        handle, opened = _daemon._open_log(None)
        handle.close()
        assert not opened.startswith(directory + os.sep), opened
        os.chown(directory, 0, 0)
    # A link planted in its place is not followed: a fresh private directory instead.
    os.remove(path)
    os.rmdir(directory)
    elsewhere = tmpdir.mkdir("elsewhere")
    os.symlink(str(elsewhere), directory)
    handle, opened = _daemon._open_log(None)
    handle.close()
    assert not opened.startswith(directory + os.sep), opened
    assert stat.S_IMODE(os.stat(os.path.dirname(opened)).st_mode) == 0o700
    assert os.listdir(str(elsewhere)) == []
    # A planted link at the log file itself is not followed either.
    os.remove(directory)
    os.mkdir(directory, 0o700)
    target = elsewhere.join("victim")
    target.write("keep")
    os.symlink(str(target), path)
    handle, opened = _daemon._open_log(None)
    assert opened is None  # O_NOFOLLOW refused it: the null device
    assert target.read() == "keep"

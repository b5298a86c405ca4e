"""Finding, starting and sharing the per-application ``datacat-daemon``.

Contract: docs/daemon-api.md ("Starting the daemon").

* Binary lookup: ``$DATACAT_DAEMON_BIN``, then the ``datacat-daemon`` the
  wheel installed with this package (the scripts directory of the
  installation scheme whose library directory holds the package: the virtual
  environment's, the system's or the user's), then ``datacat-daemon`` on
  ``PATH``, then ``target/debug/datacat-daemon`` and
  ``target/release/datacat-daemon`` in the package directory or any directory
  above it (a workspace checkout).
* Readiness handshake: the daemon is started with stdin and stdout as pipes;
  it prints ``DATACAT_DAEMON_READY <port> <token>`` once; we read that line
  (with a timeout) and send the token with every call (other local users'
  processes can reach the port, not the token), close our end of stdout and keep stdin open without ever writing
  to it. When this process dies the OS closes stdin and the daemon sees EOF.
  Closing stdin ourselves asks the daemon to flush and exit.
* The daemon's stderr goes to a log file (or the null device), never to a
  pipe nobody reads.
* One daemon per application process, shared by all of its sessions
  (``shared_daemon()``); a forked child notices the PID change and starts its
  own. A request refused because the daemon has exited starts a new daemon
  and is retried once.
"""

from __future__ import absolute_import

import logging
import os
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import weakref

from ._compat import PY2, open_devnull, popen_wait, register_after_fork, set_cloexec
from ._transport import DEFAULT_TIMEOUT, Backoff, HTTPJSONTransport, TransportError, remaining

log = logging.getLogger("datacat")

ENV_BINARY = "DATACAT_DAEMON_BIN"
ENV_NATS_URL = "DATACAT_NATS_URL"
ENV_LOG = "DATACAT_DAEMON_LOG"
READY_PREFIX = "DATACAT_DAEMON_READY"
DEFAULT_STARTUP_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"

_NO_LOG_VALUES = ("", "-", "none", "off", "devnull", os.devnull)


def daemon_binary_name():
    return "datacat-daemon.exe" if sys.platform == "win32" else "datacat-daemon"


class DaemonStartError(Exception):
    """The daemon binary could not be found or did not complete the handshake."""


# -- binary lookup --------------------------------------------------------------


def _is_executable(path):
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def which(name, path=None):
    """``shutil.which`` for Python 2 as well (files only, executable bit set)."""
    if path is None:
        path = os.environ.get("PATH", os.defpath)
    exts = [""]
    if sys.platform == "win32":
        exts += [e for e in os.environ.get("PATHEXT", ".EXE").split(os.pathsep) if e]
    for directory in path.split(os.pathsep):
        if not directory:
            continue
        for ext in exts:
            candidate = os.path.join(directory, name + ext)
            if _is_executable(candidate):
                return candidate
    return None


def installed_candidates(package_dir=None):
    """Where a wheel of this package put ``datacat-daemon``: the scripts directory of each
    installation scheme whose library directory holds the package."""
    if package_dir is None:
        package_dir = os.path.dirname(os.path.abspath(__file__))
    site_dir = os.path.normcase(os.path.realpath(os.path.dirname(package_dir)))
    out = []
    for scheme in sysconfig.get_scheme_names():
        try:
            paths = sysconfig.get_paths(scheme)
        except (KeyError, ValueError):  # a scheme this platform cannot expand
            continue
        libraries = [paths.get(key) for key in ("purelib", "platlib")]
        if any(lib and os.path.normcase(os.path.realpath(lib)) == site_dir for lib in libraries):
            candidate = os.path.join(paths["scripts"], daemon_binary_name())
            if candidate not in out:
                out.append(candidate)
    return out


def workspace_candidates(start_dir=None):
    """``target/{debug,release}/datacat-daemon`` in ``start_dir`` and every parent."""
    if start_dir is None:
        start_dir = os.path.dirname(os.path.abspath(__file__))
    name = daemon_binary_name()
    out = []
    current = os.path.abspath(start_dir)
    while True:
        for profile in ("debug", "release"):
            out.append(os.path.join(current, "target", profile, name))
        parent = os.path.dirname(current)
        if parent == current:
            return out
        current = parent


def find_daemon_binary(start_dir=None, environ=None, path=None, package_dir=None):
    """The daemon binary the lookup order selects, or None."""
    return locate_daemon_binary(start_dir, environ, path, package_dir)[0]


def locate_daemon_binary(start_dir=None, environ=None, path=None, package_dir=None):
    """Return ``(path, source)`` for the daemon binary, or ``(None, None)``.

    ``source`` says which rule matched: ``"env"``, ``"package"``, ``"path"`` or
    ``"workspace"``. An explicit ``$DATACAT_DAEMON_BIN`` is returned even if it
    does not exist, so that the error names it instead of silently running
    some other binary.
    """
    if environ is None:
        environ = os.environ
    explicit = environ.get(ENV_BINARY)
    if explicit:
        return explicit, "env"
    for candidate in installed_candidates(package_dir):
        if _is_executable(candidate):
            return candidate, "package"
    if path is None:
        path = environ.get("PATH", os.defpath)
    found = which(daemon_binary_name(), path)
    if found:
        return found, "path"
    for candidate in workspace_candidates(start_dir):
        if _is_executable(candidate):
            return candidate, "workspace"
    return None, None


def _not_found_message():
    return (
        "cannot find the %s binary: install the datacat-sessions wheel (it carries the "
        "daemon), set $%s to its path, put it on PATH, or build it in the workspace "
        "(cargo build -p datacat-daemon -> target/debug/%s)"
        % (daemon_binary_name(), ENV_BINARY, daemon_binary_name())
    )


# -- log file -------------------------------------------------------------------


def default_log_path():
    user = getattr(os, "getuid", None)
    suffix = str(user()) if user is not None else (os.environ.get("USERNAME") or "user")
    directory = os.path.join(tempfile.gettempdir(), "datacat-" + suffix)
    return os.path.join(directory, "daemon-%d.log" % os.getpid())


def _private_dir(directory):
    """Whether ``directory`` is a real directory of ours that only we can use, making it
    so if it does not exist (or is ours but open to others). A directory in the shared temp
    dir that someone else made, or a link, is not used: another user could read the log, or
    plant a link in it to a file of ours."""
    getuid = getattr(os, "getuid", None)
    try:
        os.mkdir(directory, 0o700)
    except OSError:
        pass  # it exists (or cannot be made: checked below)
    if getuid is None:
        return os.path.isdir(directory)  # no owners to check here (Windows)
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != getuid():
        return False
    if info.st_mode & 0o077:
        try:
            os.chmod(directory, 0o700)
        except OSError:
            return False
    return True


def _open_private(path):
    """Open ``path`` to append, created 0600, never through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o600), "ab")


def _open_log(log_path):
    """Open the daemon's stderr target. Returns ``(file_or_constant, path_or_None)``."""
    default = False
    if log_path is None:
        log_path = os.environ.get(ENV_LOG)
        if log_path is None:
            log_path, default = default_log_path(), True
    if log_path.strip().lower() in _NO_LOG_VALUES:
        return open_devnull(), None
    try:
        directory = os.path.dirname(log_path)
        if default and not _private_dir(directory):
            # Not ours to write in: a fresh private directory of this process instead.
            log.warning("datacat: %s is not a private directory of this user; "
                        "the daemon logs to a new one", directory)
            directory = tempfile.mkdtemp(prefix="datacat-")
            log_path = os.path.join(directory, os.path.basename(log_path))
        elif directory and not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        return _open_private(log_path), log_path
    except (OSError, IOError) as exc:
        log.debug("cannot open daemon log %s (%s); using the null device", log_path, exc)
        return open_devnull(), None


def _log_tail(path, limit=2000):
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", "replace").strip()
    except (OSError, IOError):
        return ""


def _read_ready_line(proc, timeout):
    """Read stdout lines until ``DATACAT_DAEMON_READY <port> <token>``.

    Returns ``((port, token), None)``, or ``(None, problem)``. (A daemon from
    before tokens prints no token: ``token`` is then None.)

    Runs the blocking reads in a helper thread so the wait is bounded on every
    platform and Python version (no ``select`` on Windows pipes, no
    ``readline(timeout)`` on Python 2).
    """
    result = {"other": []}

    def reader():
        try:
            while True:
                line = proc.stdout.readline(4096)
                if not line:
                    result["eof"] = True
                    return
                text = line.decode("utf-8", "replace").strip()
                if text.startswith(READY_PREFIX):
                    result["line"] = text
                    return
                if len(result["other"]) < 5:
                    result["other"].append(text)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=reader, name="datacat-daemon-handshake")
    thread.daemon = True
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None, "did not print %s within %.1f s" % (READY_PREFIX, timeout)
    if "line" in result:
        parts = result["line"].split()
        if len(parts) in (2, 3) and parts[0] == READY_PREFIX:
            try:
                port = int(parts[1])
            except ValueError:
                port = 0
            if 0 < port < 65536:
                return (port, parts[2] if len(parts) == 3 else None), None
        return None, "malformed ready line %r" % (result["line"],)
    if "error" in result:
        return None, "reading its stdout failed: %s" % (result["error"],)
    detail = "exited before printing %s" % (READY_PREFIX,)
    if result["other"]:
        detail += " (stdout: %s)" % (" | ".join(result["other"]),)
    return None, detail


# -- the manager ----------------------------------------------------------------

_all_managers = weakref.WeakSet() if hasattr(weakref, "WeakSet") else None


class DaemonManager(object):
    """One daemon process (restarted on demand) and the connection to it.

    ``daemon_port``: ``"auto"`` (default: the daemon picks a free port) or a
    fixed port, passed as ``--listen 127.0.0.1:PORT``. ``nats_url`` (default
    ``$DATACAT_NATS_URL``) is passed as ``--nats-url``. ``daemon_binary``
    overrides the lookup. ``server_url`` is accepted and not used (the daemon
    publishes to NATS; reads go to the query service named per session).
    """

    def __init__(self, daemon_port="auto", server_url=None, daemon_binary=None, nats_url=None,
                 startup_timeout=DEFAULT_STARTUP_TIMEOUT, request_timeout=DEFAULT_TIMEOUT,
                 log_path=None, extra_args=None):
        self.daemon_port = daemon_port
        self.server_url = server_url
        self.daemon_binary = daemon_binary
        self.nats_url = nats_url
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self.log_path = log_path
        self.extra_args = list(extra_args or [])
        self.process = None
        self.port = None
        # What every call carries (the last word of the daemon's ready line).
        self.token = None
        self.binary_path = None
        self.current_log_path = None
        self.starts = 0
        # A daemon that cannot be started is not tried again at every call.
        self._start_backoff = Backoff()
        self._transport = None
        self._lock = threading.RLock()
        # A start in progress (outside the lock: it can take startup_timeout), and the
        # condition other requests wait on for it.
        self._starting = False
        self._started = threading.Condition(self._lock)
        self._pid = os.getpid()
        if _all_managers is not None:
            _all_managers.add(self)

    def __repr__(self):
        return "<DaemonManager pid=%s port=%s binary=%r>" % (self.pid, self.port, self.binary_path)

    # -- fork handling ---------------------------------------------------------

    def _reset_after_fork(self):
        """In a forked child: forget the parent's daemon (it is not ours)."""
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._starting = False
        self._started = threading.Condition(self._lock)
        proc, self.process = self.process, None
        if proc is not None and proc.stdin is not None:
            # Close only our inherited copy of the write end, so that the
            # parent's daemon still sees EOF when the parent dies.
            try:
                proc.stdin.close()
            except (OSError, IOError):
                pass
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()  # our copies of the sockets; no request is in flight here
        self.port = None

    def _check_fork(self):
        if self._pid != os.getpid():
            self._reset_after_fork()

    # -- state -----------------------------------------------------------------

    @property
    def pid(self):
        proc = self.process
        return proc.pid if proc is not None else None

    @property
    def base_url(self):
        return "http://%s:%d" % (LOOPBACK, self.port) if self.port else None

    def is_running(self):
        self._check_fork()
        proc = self.process
        return proc is not None and proc.poll() is None

    # -- start / stop ------------------------------------------------------------

    def _command(self, binary):
        # (The NATS URL goes in the environment, never on the command line: it may carry a
        # password, and any local user can read another process's arguments.)
        args = [binary, "--parent-pid", str(os.getpid())]
        port = self.daemon_port
        if port not in (None, "", "auto", 0, "0"):
            args += ["--listen", "%s:%d" % (LOOPBACK, int(port))]
        return args + self.extra_args

    def _spawn(self):
        """Start a daemon and complete the handshake (lock held)."""
        try:
            self._start_backoff.check("starting %s" % (daemon_binary_name(),))
        except TransportError as exc:
            raise DaemonStartError(str(exc))
        try:
            proc = self._start()
        except DaemonStartError:
            self._start_backoff.failed()
            raise
        self._start_backoff.succeeded()
        return proc

    def _environment(self):
        """The daemon's environment: ours, with the NATS URL this manager was given."""
        env = dict(os.environ)
        if self.nats_url:
            env[ENV_NATS_URL] = self.nats_url
        return env

    def _start(self):
        binary, source = (self.daemon_binary, "argument") if self.daemon_binary else locate_daemon_binary()
        if not binary:
            raise DaemonStartError(_not_found_message())
        if not _is_executable(binary):
            raise DaemonStartError(
                "%s binary %r (from %s) does not exist or is not executable"
                % (daemon_binary_name(), binary, "$" + ENV_BINARY if source == "env" else source)
            )
        args = self._command(binary)
        stderr, log_path = _open_log(self.log_path)
        kwargs = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": stderr,
                  "env": self._environment()}
        if os.name == "nt":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        else:
            kwargs["close_fds"] = True
            # Own session: a Ctrl-C aimed at the application must not kill the
            # daemon before the application's own end() calls reach it.
            if PY2:
                kwargs["preexec_fn"] = os.setsid
            else:
                kwargs["start_new_session"] = True
        try:
            proc = subprocess.Popen(args, **kwargs)
        except (OSError, ValueError) as exc:
            raise DaemonStartError("failed to start daemon binary %r: %s" % (binary, exc))
        finally:
            if hasattr(stderr, "close"):
                stderr.close()  # the child has its own copy
        set_cloexec(proc.stdin)
        ready, problem = _read_ready_line(proc, self.startup_timeout)
        if ready is None:
            # Kill first: on a timeout the handshake thread is still blocked
            # reading stdout, and closing the pipe under it would wait for it.
            if proc.poll() is None:
                proc.kill()
            code = popen_wait(proc, 2.0)
            for pipe in (proc.stdout, proc.stdin):
                try:
                    pipe.close()
                except (OSError, IOError):
                    pass
            message = "daemon %r %s (exit code %s)" % (binary, problem, code)
            tail = _log_tail(log_path)
            if tail:
                message += "; its log %s ends with:\n%s" % (log_path, tail)
            elif log_path:
                message += "; log: %s" % (log_path,)
            raise DaemonStartError(message)
        try:
            proc.stdout.close()  # the daemon never writes stdout again
        except (OSError, IOError):
            pass
        port, token = ready
        self.process = proc
        self.port = port
        self.token = token
        self.binary_path = binary
        self.current_log_path = log_path
        self.starts += 1
        if self._transport is not None:
            self._transport.close()
        self._transport = HTTPJSONTransport(LOOPBACK, port, timeout=self.request_timeout)
        if token:
            self._transport.extra_headers["Authorization"] = "Bearer " + token
        log.debug("started daemon pid %d on port %d (%s)", proc.pid, port, binary)
        return proc

    def start(self):
        """Start the daemon unless it is running; return its port."""
        self._ensure()
        return self.port

    def _retire(self, proc):
        """Let go of a daemon process we no longer use (lock held)."""
        if proc is None:
            return
        if proc is self.process:
            self.process = None
            self.port = None
        if proc.stdin is not None:
            try:
                proc.stdin.close()  # asks a still-running daemon to flush and exit
            except (OSError, IOError):
                pass
        proc.poll()  # reap it if it has exited

    def stop(self, timeout=5.0):
        """Close the daemon's stdin (it flushes and exits); kill it after ``timeout``.

        Returns the exit code, or None if no daemon was running.
        """
        self._check_fork()
        with self._lock:
            proc = self.process
            self._retire(proc)
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        if proc is None:
            return None
        code = popen_wait(proc, timeout)
        if code is None:
            log.warning("daemon pid %d did not exit within %.1f s; killing it", proc.pid, timeout)
            try:
                proc.kill()
            except OSError:
                pass
            code = popen_wait(proc, 5.0)
        return code

    # -- requests ------------------------------------------------------------------

    def _ensure(self, deadline=None, replacing=None):
        """The running daemon's (process, transport), starting one if needed (or if the
        running one is ``replacing``, which did not answer).

        A start that another thread has under way is waited for, but with a ``deadline``
        only until it passes; and with a deadline no daemon is started: a new daemon
        would not know the sessions of the one that is gone, and its start-up is not
        bounded by the caller's time.
        """
        self._check_fork()
        with self._lock:
            while True:
                proc = self.process
                if proc is not None and proc is not replacing and proc.poll() is None:
                    return proc, self._transport
                if not self._starting:
                    break
                left = remaining(deadline)
                if left is not None and left <= 0:
                    raise TransportError("the daemon is still starting", kind="deadline")
                self._started.wait(0.05 if left is None else min(0.05, left))
            if deadline is not None:
                raise TransportError("no daemon is running (a new one would not know the session)",
                                     kind="refused")
            if proc is not None:
                log.info("daemon pid %d has exited or does not answer (code %s); starting a new one",
                         proc.pid, proc.poll())
                self._retire(proc)
            self._starting = True
        try:
            self._spawn()
        finally:
            with self._lock:
                self._starting = False
                self._started.notify_all()
        return self.process, self._transport

    def request(self, method, path, body=None, timeout=None, deadline=None):
        """Send a request to the daemon, starting it first if necessary.

        If the request is refused (or the connection breaks) because the
        daemon has exited, a new daemon is started and the request is sent
        again, once; except with a ``deadline`` (a ``_transport._clock()``
        value), which bounds the request and never starts a daemon (see
        ``_ensure``). Raises ``DaemonStartError``, ``TransportError`` or
        ``DaemonHTTPError``.
        """
        proc, transport = self._ensure(deadline)
        try:
            return transport.request(method, path, body, timeout=timeout, deadline=deadline)
        except TransportError as exc:
            if exc.kind not in ("refused", "reset"):
                raise
            if proc.poll() is None and exc.kind == "reset":
                # Possibly an exit in progress: give it a moment to finish.
                left = remaining(deadline)
                popen_wait(proc, 1.0 if left is None else max(0.0, min(1.0, left)))
            if exc.kind != "refused" and proc.poll() is None:
                raise
            log.info("daemon unreachable (%s); starting a new one and retrying once", exc)
            proc, transport = self._ensure(deadline, replacing=proc)
            return transport.request(method, path, body, timeout=timeout, deadline=deadline)

    def health(self, timeout=None):
        return self.request("GET", "/health", timeout=timeout)


# -- one shared daemon per application process -------------------------------------

_shared_lock = threading.Lock()
_shared = {}


def shared_daemon(daemon_port="auto", nats_url=None, daemon_binary=None, **options):
    """The process-wide ``DaemonManager`` for these settings (created on first use).

    All sessions of one application process normally share one daemon; only a
    different ``daemon_port``/``nats_url``/``daemon_binary`` gets another one.
    Extra ``options`` (``startup_timeout``, ``request_timeout``, ``log_path``)
    apply when the manager is first created.
    """
    if nats_url is None:
        nats_url = os.environ.get(ENV_NATS_URL) or None
    key = (str(daemon_port), nats_url, daemon_binary)
    with _shared_lock:
        manager = _shared.get(key)
        if manager is None:
            manager = DaemonManager(
                daemon_port=daemon_port, nats_url=nats_url, daemon_binary=daemon_binary, **options
            )
            _shared[key] = manager
        return manager


def shared_daemons():
    with _shared_lock:
        return list(_shared.values())


def stop_shared_daemons(timeout=5.0):
    """Stop every shared daemon of this process (they flush first) and forget them."""
    with _shared_lock:
        managers = list(_shared.values())
        _shared.clear()
    for manager in managers:
        manager.stop(timeout=timeout)


def _after_fork_in_child():
    global _shared_lock
    _shared_lock = threading.Lock()
    if _all_managers is not None:
        for manager in list(_all_managers):
            manager._reset_after_fork()


register_after_fork(_after_fork_in_child)

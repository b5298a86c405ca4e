"""Python 2 / 3 compatibility shims (standard library only).

Everything version-dependent lives here so the other modules stay free of
``try: import ... except ImportError`` blocks.
"""

from __future__ import absolute_import

import os
import subprocess
import sys

PY2 = sys.version_info[0] == 2

if PY2:  # pragma: no cover - exercised on 2.7 only
    import httplib as http_client  # noqa: F401
    from urllib import quote  # noqa: F401
    from urlparse import parse_qs, urlsplit  # noqa: F401

    string_types = (basestring,)  # noqa: F821
    text_type = unicode  # noqa: F821
    integer_types = (int, long)  # noqa: F821
else:
    import http.client as http_client  # noqa: F401
    from urllib.parse import parse_qs, quote, urlsplit  # noqa: F401

    string_types = (str,)
    text_type = str
    integer_types = (int,)

try:
    from subprocess import DEVNULL as _SUBPROCESS_DEVNULL
except ImportError:  # Python 2
    _SUBPROCESS_DEVNULL = None

# Errors an HTTP exchange can fail with at the connection level.
try:
    ConnectionErrorTypes = (OSError, IOError, http_client.HTTPException)
except AttributeError:  # pragma: no cover
    ConnectionErrorTypes = (OSError, IOError)


def open_devnull():
    """A writable file object (or subprocess constant) that discards output."""
    if _SUBPROCESS_DEVNULL is not None:
        return _SUBPROCESS_DEVNULL
    return open(os.devnull, "wb")


def popen_wait(proc, timeout):
    """``proc.wait(timeout)`` that also works on Python 2 (polling).

    Returns the exit code, or None if the process is still running after
    ``timeout`` seconds.
    """
    import time

    if not PY2:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    deadline = time.time() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            return code
        if time.time() >= deadline:
            return None
        time.sleep(0.02)


def set_cloexec(fileobj):
    """Keep a pipe end from leaking into unrelated child processes.

    Python 3.4+ already creates non-inheritable pipes; on Python 2 the
    ``subprocess`` pipes are inheritable, so an unrelated child started later
    with ``close_fds=False`` would hold the daemon's stdin open and defeat its
    parent-death detection.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        return
    try:
        fd = fileobj.fileno()
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
    except (OSError, IOError, ValueError, AttributeError):
        pass


def register_after_fork(callback):
    """Run ``callback()`` in the child after ``os.fork()`` where supported (3.7+).

    Older Pythons rely on the lazy ``os.getpid()`` checks instead.
    """
    hook = getattr(os, "register_at_fork", None)
    if hook is not None:
        hook(after_in_child=callback)

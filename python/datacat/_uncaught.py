"""An uncaught exception ends this process's open sessions as ``crashed``.

``sys.excepthook`` sees the exception that is about to kill the main thread:
each open session logs it (type, message, frames) and ends ``crashed`` with it
as the reason, before the previous hook prints the traceback as usual. An
exception that ends another thread (``threading.excepthook``, 3.8+) does not
end the process: it is logged as an error event only. ``KeyboardInterrupt``
ends sessions normally, with the reason ``interrupted``.

Installing the hooks also makes ``sys.exit`` remember its status, for the reason
the sessions still open at exit end with (``_lifecycle``).
"""

from __future__ import absolute_import

import logging
import sys
import threading

from ._lifecycle import end_open_sessions, open_sessions, remember_exit_status

log = logging.getLogger("datacat")

_installed = []
_lock = threading.Lock()


def _describe(etype, value):
    try:
        return "%s: %s" % (etype.__name__, value)
    except Exception:  # noqa: BLE001
        return etype.__name__


def _on_uncaught(etype, value, tb):
    try:
        if issubclass(etype, KeyboardInterrupt):
            end_open_sessions(reason="interrupted (KeyboardInterrupt)")
            return

        def log_it(session):
            session.log_exception((etype, value, tb), level="critical",
                                  extra_data={"uncaught": True})

        end_open_sessions(reason="uncaught %s" % (_describe(etype, value),), crashed=True,
                          before_end=log_it)
    except Exception:  # noqa: BLE001 - never hide the application's own traceback
        log.debug("reporting an uncaught exception failed", exc_info=True)


def _on_thread_exception(args):
    if args.exc_type is not SystemExit:
        try:
            name = args.thread.name if args.thread is not None else "?"
            for session in open_sessions.of_this_process():
                session.log_exception((args.exc_type, args.exc_value, args.exc_traceback),
                                      extra_data={"uncaught": True, "thread": name})
        except Exception:  # noqa: BLE001
            log.debug("reporting a thread's exception failed", exc_info=True)


def install_uncaught_hook():
    """Installs the hooks once per process, chaining to the hooks already there."""
    with _lock:
        if _installed:
            return
        _installed.append(True)
        previous = sys.excepthook

        def excepthook(etype, value, tb):
            _on_uncaught(etype, value, tb)
            previous(etype, value, tb)

        sys.excepthook = excepthook
        remember_exit_status()
        previous_thread_hook = getattr(threading, "excepthook", None)
        if previous_thread_hook is not None:
            def thread_excepthook(args):
                _on_thread_exception(args)
                previous_thread_hook(args)

            threading.excepthook = thread_excepthook

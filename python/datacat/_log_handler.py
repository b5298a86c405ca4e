"""``DatacatHandler``: standard ``logging`` records as session events, or breadcrumbs.

A record becomes an event named ``log.<logger>`` at the record's level, with the formatted
message, the logger as group, and where it was logged from as data; the fields the caller
gave with ``extra=`` are its data's ``extra`` (values JSON cannot hold as their ``repr``).
A record with ``exc_info`` keeps its message and level and carries the exception (type,
message, frames) too.

With ``event_level`` (say ``logging.WARNING``), records below it are not sent: they are
kept in the process as the session's breadcrumbs, and the next error event carries the last
of them (``datacat/_breadcrumbs.py``).

Records of the ``datacat`` logger itself are never sent (they would loop).
"""

from __future__ import absolute_import

import json
import logging

from . import _payload

_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}

# The attributes every LogRecord has: whatever else a record carries came with ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))) | frozenset(
    ("message", "asctime", "taskName"))


def _json_value(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def extra_fields(record):
    """The fields ``extra=`` gave ``record`` (JSON-safe), or None."""
    extra = dict((key, _json_value(value)) for key, value in vars(record).items()
                 if key not in _STANDARD and not key.startswith("_"))
    return extra or None


class DatacatHandler(logging.Handler):
    """Sends log records to ``session`` (a ``Session`` or ``AsyncSession``): as events, or,
    below ``event_level``, as breadcrumbs."""

    def __init__(self, session, level=logging.NOTSET, include_exceptions=True, event_level=None):
        logging.Handler.__init__(self, level)
        self.session = session
        self.include_exceptions = include_exceptions
        self.event_level = event_level

    def emit(self, record):
        if record.name == "datacat" or record.name.startswith("datacat."):
            return
        try:
            level = _LEVELS.get(record.levelno) or _payload.normalize_level(record.levelno)
            extra = extra_fields(record)
            if self.event_level is not None and record.levelno < self.event_level:
                add = getattr(self.session, "add_breadcrumb", None)
                if add is not None:
                    add(self.format(record), level=level, category="log.%s" % (record.name,),
                        data=extra)
                return
            data = {
                "logger": record.name,
                "level_name": record.levelname,
                "pathname": record.pathname,
                "lineno": record.lineno,
                "funcName": record.funcName,
                "module": record.module,
                "thread": record.threadName,
            }
            if extra:
                data["extra"] = extra
            exception = None
            if self.include_exceptions and record.exc_info and record.exc_info[0] is not None:
                client = getattr(self.session, "client", None)
                exception = _payload.build_exception(
                    record.exc_info, with_locals=getattr(client, "capture_locals", False))
            self.session.log_event(
                "log.%s" % (record.name,),
                level=level,
                category="log",
                group=record.name,
                labels=[record.levelname.lower(), record.name, record.funcName or ""],
                message=record.getMessage() if exception is not None else self.format(record),
                data=data,
                exception=exception,
            )
        except Exception:  # noqa: BLE001 - logging's own contract
            self.handleError(record)


#: Other names of the handler.
DatacatLogHandler = DatacatHandler
DatacatLoggingHandler = DatacatHandler

"""``DatacatHandler``: standard ``logging`` records as session events.

A record becomes an event named ``log.<logger>`` at the record's level, with
the formatted message, the logger as group, and where it was logged from as
data. A record with ``exc_info`` keeps its message and level and carries the
exception (type, message, frames) too.
Records of the ``datacat`` logger itself are never sent (they would loop).
"""

from __future__ import absolute_import

import logging

from . import _payload

_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


class DatacatHandler(logging.Handler):
    """Sends log records to ``session`` (a ``Session`` or ``AsyncSession``)."""

    def __init__(self, session, level=logging.NOTSET, include_exceptions=True):
        logging.Handler.__init__(self, level)
        self.session = session
        self.include_exceptions = include_exceptions

    def emit(self, record):
        if record.name == "datacat" or record.name.startswith("datacat."):
            return
        try:
            level = _LEVELS.get(record.levelno) or _payload.normalize_level(record.levelno)
            data = {
                "logger": record.name,
                "level_name": record.levelname,
                "pathname": record.pathname,
                "lineno": record.lineno,
                "funcName": record.funcName,
                "module": record.module,
                "thread": record.threadName,
            }
            exception = None
            if self.include_exceptions and record.exc_info and record.exc_info[0] is not None:
                exception = _payload.build_exception(record.exc_info)
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

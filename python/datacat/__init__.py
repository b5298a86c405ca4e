"""DataCat Python client: session-based application monitoring.

    import datacat
    session = datacat.create_session(product="space-game", version="1.5.0")
    session.update_state({"player": {"level": 3}})
    session.log_event("level_up", level="info", data={"level": 3})
    session.log_metric("fps", 59.8, unit="fps")
    session.end()

Calls go over HTTP to a ``datacat-daemon`` that this process starts on first
use and shares between all of its sessions (see docs/daemon-api.md), or with
``use_daemon=False`` to the query service's direct-write endpoints.
``async_mode=True`` makes every call a buffer append, shipped in batches by a
background thread.
Standard library only; Python 2.7.4+ and 3.8+.
"""

from __future__ import absolute_import

import logging as _logging

from ._async import AsyncSession
from ._daemon import DaemonManager, DaemonStartError, find_daemon_binary
from ._direct import DirectBackend
from ._log_handler import DatacatHandler, DatacatLoggingHandler, DatacatLogHandler
from ._monitor import HeartbeatMonitor
from ._transport import DaemonHTTPError, TransportError
from .client import DatacatClient
from ._create import create_session
from .session import Session, Timer

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "create_session",
    "Session",
    "AsyncSession",
    "Timer",
    "HeartbeatMonitor",
    "DatacatHandler",
    "DatacatLogHandler",
    "DatacatLoggingHandler",
    "DatacatClient",
    "DirectBackend",
    "DaemonManager",
    "DaemonStartError",
    "DaemonHTTPError",
    "TransportError",
    "find_daemon_binary",
]

_logging.getLogger("datacat").addHandler(_logging.NullHandler())

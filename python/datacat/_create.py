"""``create_session()``: the one call most applications make."""

from __future__ import absolute_import

from . import _accounting, _config
from ._async import AsyncSession
from ._ids import uuid7
from ._uncaught import install_uncaught_hook
from .client import DatacatClient
from .session import Session


def create_session(base_url=None, product=None, version=None, nats_url=None, daemon_port="auto",
                   async_mode=False, queue_size=10000, use_daemon=True, drop_on_full=True,
                   capture_uncaught=True, disabled=None, debug=None, max_breadcrumbs=100,
                   environment=None, tags=None, **kwargs):
    """Register a new session and return a ``Session`` (or an ``AsyncSession``).

    ``product`` and ``version`` (default ``$DATACAT_PRODUCT``, ``$DATACAT_VERSION``)
    are required (``ValueError`` otherwise).

    * ``base_url`` (default ``$DATACAT_URL``, then ``$DATACAT_QUERY_URL``): the
      query service. With a
      daemon, sessions are read back from it (``get_details()``).
    * ``use_daemon`` (default True): calls go to this process's shared daemon
      (started on first use; ``nats_url``, default ``$DATACAT_NATS_URL``, is
      handed to it). ``use_daemon=False`` sends them to the query service at
      ``base_url`` instead (its direct-write endpoints; ``token=`` or
      ``$DATACAT_WRITE_TOKEN``).
    * ``async_mode``: returns at once, without waiting for the daemon or the
      network: the session is registered from the background thread, and
      every call only appends to a buffer of ``queue_size`` calls shipped in
      batches; ``drop_on_full`` (default) drops and counts calls when it is
      full, False blocks the caller instead. Further options: ``batch_size``,
      ``flush_interval``, ``exit_timeout``.
    * ``capture_uncaught`` (default True): an uncaught exception is logged and
      the session ends ``crashed`` with it.
    * ``environment`` (default ``$DATACAT_ENVIRONMENT``: ``production``, ``ci``, ...)
      and ``tags`` (a dict of text: ``{"team": "rendering"}``): the API filters sessions on
      them (``environment=``, ``tag=key:value``) and the dashboard shows them.
    * ``max_breadcrumbs``: how many breadcrumbs (``add_breadcrumb``, and log records
      below a ``DatacatHandler``'s ``event_level``) the session keeps for its next error
      event.
    * ``disabled`` (default ``$DATACAT_DISABLED``): the session records nothing,
      starts no daemon and returns False from every call (``registered`` is False).
    * ``debug`` (default ``$DATACAT_DEBUG``): the first problem (no daemon binary,
      nothing listening, a refused call) is written to stderr, once per process.

    Other keyword arguments go to ``DatacatClient`` (``capture_locals``: exceptions
    carry their frames' local variables; ``daemon_binary``,
    ``timeout``, ``end_timeout``, ``read_timeout``, ``startup_timeout``,
    ``log_path``, ``token``). The session's id is minted here (a time-ordered
    UUID), so ``session_id`` is known at once. If the session cannot be
    registered, ``registered`` is False and it refuses its calls (logged and
    counted): monitoring never stops the application.
    """
    product = _config.text(_config.ENV_PRODUCT, product)
    version = _config.text(_config.ENV_VERSION, version)
    if not product or not version:
        raise ValueError(
            "Product and version are required to create a session (arguments, or "
            "$%s and $%s)" % (_config.ENV_PRODUCT, _config.ENV_VERSION))
    _accounting.set_debug(_config.flag(_config.ENV_DEBUG, debug))
    disabled = _config.flag(_config.ENV_DISABLED, disabled)
    environment = _config.text(_config.ENV_ENVIRONMENT, environment)
    labels = {"environment": environment, "tags": tags, "max_breadcrumbs": max_breadcrumbs}
    async_options = {}
    for option in ("batch_size", "flush_interval", "exit_timeout"):
        if option in kwargs:
            async_options[option] = kwargs.pop(option)
    client = DatacatClient(base_url, daemon_port=daemon_port, nats_url=nats_url,
                           use_daemon=use_daemon, disabled=disabled, **kwargs)
    session_id = uuid7()
    if disabled:
        return Session(client, session_id, product=product, version=version, registered=False,
                       **labels)
    if async_mode:
        session = Session(client, session_id, product=product, version=version, registered=None,
                          **labels)
        session = AsyncSession(session, queue_size=queue_size, drop_on_full=drop_on_full,
                               **async_options)
    else:
        answered = client.create_session(product, version, session_id=session_id,
                                         environment=environment, tags=tags)
        session = Session(client, answered or session_id, product=product, version=version,
                          registered=answered is not None, **labels)
    if capture_uncaught:
        install_uncaught_hook()
    return session

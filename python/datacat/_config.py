"""Settings a program can leave to its environment, the way SDK users expect them
(sentry-python's ``SENTRY_*``, OpenTelemetry's ``OTEL_*``): an argument given to
``create_session`` wins, else the variable, else the default.

    DATACAT_URL          the query service (``DATACAT_QUERY_URL`` is read too)
    DATACAT_PRODUCT      the product, when ``create_session`` names none
    DATACAT_VERSION      the product's version, likewise
    DATACAT_ENVIRONMENT  where the program runs (``production``, ``ci``, ...)
    DATACAT_DISABLED     1/true/yes/on: sessions record nothing and start no daemon
    DATACAT_DEBUG        1/true/yes/on: the first problem is reported on stderr, once
"""

from __future__ import absolute_import

import os

ENV_URL = "DATACAT_URL"
ENV_QUERY_URL = "DATACAT_QUERY_URL"
ENV_PRODUCT = "DATACAT_PRODUCT"
ENV_VERSION = "DATACAT_VERSION"
ENV_ENVIRONMENT = "DATACAT_ENVIRONMENT"
ENV_DISABLED = "DATACAT_DISABLED"
ENV_DEBUG = "DATACAT_DEBUG"

_TRUE = ("1", "true", "yes", "on")


def text(name, given=None, environ=None):
    """``given`` if it is set, else the variable ``name`` (None when unset or empty)."""
    if given:
        return given
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None


def flag(name, given=None, environ=None):
    """``given`` if it is not None, else whether the variable ``name`` says yes."""
    if given is not None:
        return bool(given)
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip().lower() in _TRUE


def query_url(given=None, environ=None):
    """The query service's URL: ``given``, ``$DATACAT_URL``, ``$DATACAT_QUERY_URL``."""
    return text(ENV_URL, given, environ) or text(ENV_QUERY_URL, None, environ)

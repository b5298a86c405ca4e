"""Breadcrumbs and the log handler's ``extra=`` fields, with a stub daemon (what reaches it
is what the client sends)."""

from __future__ import absolute_import

import json
import logging

from datacat import AsyncSession, DatacatClient, DatacatHandler, Session
from datacat._breadcrumbs import Breadcrumbs

from test_client_unit import StubDaemon


def make_session(limit=100):
    stub = StubDaemon()
    return stub, Session(DatacatClient(daemon=stub), "sid-1", product="p", version="1",
                         max_breadcrumbs=limit)


def events(stub):
    return stub.bodies("/event")


def test_breadcrumbs_cost_no_request_and_ride_on_the_next_error_only():
    stub, session = make_session()
    session.add_breadcrumb("opened the map", category="ui", data={"zoom": 2})
    session.add_breadcrumb("loaded level 3", level="debug")
    assert events(stub) == []
    session.log_event("level_up", level="info", data={"level": 4})
    assert "breadcrumbs" not in events(stub)[-1]["data"]
    session.log_event("hull_breach", level="error", data={"deck": 3})
    crumbs = events(stub)[-1]["data"]["breadcrumbs"]
    assert [c["message"] for c in crumbs] == ["opened the map", "loaded level 3"]
    assert crumbs[0]["category"] == "ui" and crumbs[0]["data"] == {"zoom": 2}
    assert crumbs[1]["level"] == "debug" and crumbs[0]["level"] == "info"
    assert events(stub)[-1]["data"]["deck"] == 3
    session.log_event("again", level="critical")
    assert "data" not in events(stub)[-1], "the buffer starts again empty"


def test_only_the_last_ones_are_kept():
    stub, session = make_session(limit=3)
    for n in range(10):
        session.add_breadcrumb("step %d" % n)
    try:
        raise ValueError("boom")
    except ValueError:
        session.log_exception(extra_data={"where": "loader"})
    data = events(stub)[-1]["data"]
    assert [c["message"] for c in data["breadcrumbs"]] == ["step 7", "step 8", "step 9"]
    assert data["where"] == "loader"


def test_the_callers_data_is_not_changed():
    crumbs = Breadcrumbs()
    crumbs.add("x")
    mine = {"a": 1}
    attached = crumbs.attach("error", mine)
    assert mine == {"a": 1} and attached["a"] == 1 and len(attached["breadcrumbs"]) == 1
    assert crumbs.attach(40, None) is None  # a logging number works; nothing left to attach


def test_an_async_session_attaches_them_too():
    stub, session = make_session()
    async_session = AsyncSession(session, flush_interval=0.01)
    async_session.add_breadcrumb("clicked start")
    async_session.log_event("failed", level="error")
    assert async_session.flush(timeout=5)
    async_session.end()
    batches = [body if isinstance(body, dict) else json.loads(body.decode("utf-8"))
               for body in stub.bodies("/batch")]
    sent = [item for body in batches for item in body["items"]]
    failed = [item for item in sent if item.get("name") == "failed"]
    assert [c["message"] for c in failed[0]["data"]["breadcrumbs"]] == ["clicked start"]


def test_the_handler_keeps_extra_fields_and_sends_low_records_as_breadcrumbs():
    stub, session = make_session()
    logger = logging.getLogger("game.loader")
    logger.propagate = False
    handler = DatacatHandler(session, event_level=logging.WARNING)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.info("loading %s", "level 3", extra={"level": 3, "path": object()})
        logger.debug("cache miss")
        assert events(stub) == []
        logger.warning("slow disk", extra={"ms": 950})
        warning = events(stub)[-1]
        assert warning["level"] == "warning" and warning["data"]["extra"] == {"ms": 950}
        assert "breadcrumbs" not in warning["data"]
        logger.error("could not load", extra={"level": 3})
        error = events(stub)[-1]["data"]
        assert error["extra"] == {"level": 3}
        crumbs = error["breadcrumbs"]
        assert [c["message"] for c in crumbs] == ["loading level 3", "cache miss"]
        assert crumbs[0]["category"] == "log.game.loader" and crumbs[0]["data"]["level"] == 3
        assert crumbs[0]["data"]["path"].startswith("<object object")
    finally:
        logger.removeHandler(handler)


def test_without_event_level_every_record_is_an_event():
    stub, session = make_session()
    logger = logging.getLogger("game.all")
    logger.propagate = False
    handler = DatacatHandler(session)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("d")
        logger.info("i")
        assert [e["level"] for e in events(stub)] == ["debug", "info"]
        assert "extra" not in events(stub)[0]["data"]
    finally:
        logger.removeHandler(handler)

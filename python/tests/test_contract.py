"""The client contract (api/fixtures/client-calls.json): every call produces exactly the body
the fixture gives, blocking and async (the async buffer's fast path and its general one),
the same bodies the Go client and the daemon's parser are tested against."""

from __future__ import absolute_import

import io
import json
import os

import pytest

from datacat import AsyncSession, DatacatClient, Session

from conftest import REPO_ROOT
from test_async_unit import BatchStub
from test_client_unit import StubDaemon

with io.open(os.path.join(REPO_ROOT, "api", "fixtures", "client-calls.json"), encoding="utf-8") as f:
    CASES = json.load(f)["calls"]

VOLATILE = ("session_id", "timestamp", "kind")


def call(session, case):
    """The call a case describes, made the way an application makes it."""
    kind, args = case["kind"], dict(case["call"])
    if kind == "state":
        return session.update_state(args["state"])
    if kind == "event":
        return session.log_event(args.pop("name"), **args)
    if kind == "heartbeat":
        return session.heartbeat()
    metric, name = args.pop("metric"), args.pop("name")
    if metric == "gauge":
        return session.log_gauge(name, args.pop("value"), **args)
    if metric == "counter":
        return session.log_counter(name, args.pop("delta"), **args)
    if metric == "histogram":
        buckets = [float("inf") if b == "+Inf" else b for b in args.pop("buckets")]
        return session.log_histogram(name, args.pop("value"), buckets=buckets, **args)
    return session.log_timer(name, args.pop("seconds"), **args)


def stable(body):
    return dict((k, v) for k, v in body.items() if k not in VOLATILE)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_a_blocking_call_sends_the_contracts_body(case):
    stub = StubDaemon()
    session = Session(DatacatClient(daemon=stub), "sid", "p", "1")
    call(session, case)
    (_, _, body, _), = stub.calls
    assert stable(body) == case["body"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_an_async_call_sends_the_contracts_body(case):
    stub = BatchStub()
    session = AsyncSession(Session(DatacatClient(daemon=stub), "sid", "p", "1"))
    call(session, case)
    assert session.flush(5)
    item, = stub.items()
    assert item["kind"] == case["kind"]
    assert stable(item) == case["body"]
    session.end()

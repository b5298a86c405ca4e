"""Exceptions as structure: the chain behind one (Python 3's ``raise ... from`` and
raising while handling), and, opted in, the innermost frames' local variables, cut."""

from __future__ import absolute_import

import sys

import pytest

from datacat import DatacatClient, Session, _payload

from test_client_unit import StubDaemon

py3 = pytest.mark.skipif(sys.version_info[0] < 3, reason="Python 2 exceptions have no chain")


def load(path):
    secret_size = 4096
    blob = "x" * 1000
    return {}[path]


def chained():
    try:
        load("level-3")
    except KeyError as error:
        exec("raise ValueError('could not load level-3') from error", {"error": error})


def test_locals_are_opt_in_and_cut():
    try:
        load("level-3")
    except KeyError:
        without = _payload.build_exception()
        exception = _payload.build_exception(with_locals=True)
    assert all("locals" not in frame for frame in without["frames"])
    innermost = exception["frames"][-1]
    assert innermost["function"] == "load"
    assert innermost["locals"]["path"] == "'level-3'"
    assert innermost["locals"]["secret_size"] == "4096"
    assert len(innermost["locals"]["blob"]) == _payload.LOCAL_CHARS
    assert innermost["locals"]["blob"].endswith("...")


def test_at_most_so_many_variables_and_frames():
    def deep(n, **many):
        if n == 0:
            raise RuntimeError("bottom")
        deep(n - 1, **many)

    many = dict(("v%02d" % i, i) for i in range(50))
    try:
        deep(15, **many)
    except RuntimeError:
        exception = _payload.build_exception(with_locals=True)
    with_locals = [frame for frame in exception["frames"] if "locals" in frame]
    assert len(with_locals) == _payload.LOCALS_FRAMES
    assert with_locals[-1] is exception["frames"][-1]
    assert with_locals[-1]["locals"]["n"] == "0"
    assert len(with_locals[-1]["locals"]["many"]) == _payload.LOCAL_CHARS


def test_at_most_so_many_variables_a_frame():
    namespace = {}
    assignments = "".join("    v%02d = %d\n" % (i, i) for i in range(50))
    exec("def crowded():\n" + assignments + "    raise RuntimeError('crowded')\n", namespace)
    try:
        namespace["crowded"]()
    except RuntimeError:
        exception = _payload.build_exception(with_locals=True)
    shown = exception["frames"][-1]["locals"]
    assert len(shown) == _payload.LOCALS_PER_FRAME
    assert sorted(shown)[0] == "v00"


@py3
def test_the_chain_is_structure_nearest_first():
    try:
        try:
            chained()
        except ValueError:
            raise TypeError("while reporting")
    except TypeError:
        exception = _payload.build_exception()
    assert exception["type"] == "TypeError"
    assert [(c["type"], c["relation"]) for c in exception["causes"]] == [
        ("ValueError", "context"), ("KeyError", "cause")]
    assert exception["causes"][1]["message"] == "'level-3'"
    assert exception["causes"][1]["frames"][-1]["function"] == "load"


@py3
def test_a_suppressed_context_is_left_out():
    try:
        try:
            load("x")
        except KeyError:
            exec("raise ValueError('clean') from None")
    except ValueError:
        exception = _payload.build_exception()
    assert "causes" not in exception


def test_the_clients_setting_decides_unless_the_call_does():
    stub = StubDaemon()
    session = Session(DatacatClient(daemon=stub, capture_locals=True), "sid-1", product="p",
                      version="1")
    try:
        load("a")
    except KeyError:
        session.log_exception()
        session.log_exception(with_locals=False)
    first, second = [body["exception"] for body in stub.bodies("/event")]
    assert "locals" in first["frames"][-1] and "locals" not in second["frames"][-1]


@py3
def test_a_long_chain_is_cut():
    def nested(depth):
        try:
            if depth == 0:
                raise KeyError("bottom")
            nested(depth - 1)
        except KeyError as error:
            raise KeyError("level %d" % depth) if depth else error

    try:
        nested(_payload.MAX_CAUSES + 5)
    except KeyError:
        exception = _payload.build_exception()
    assert len(exception["causes"]) == _payload.MAX_CAUSES
    try:
        nested(3)
    except KeyError:
        exception = _payload.build_exception()
    assert len(exception["causes"]) == 3

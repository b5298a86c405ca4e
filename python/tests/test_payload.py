# -*- coding: utf-8 -*-
"""Unit tests: the JSON bodies sent to the daemon (docs/daemon-api.md)."""

from __future__ import absolute_import

import datetime
import json
import logging
import sys

import pytest

from datacat import _payload as p


def test_register():
    assert p.build_register("space-game", "1.4.0", parent_pid=12, timestamp=5) == {
        "product": "space-game", "version": "1.4.0", "parent_pid": 12, "timestamp": 5.0}
    with pytest.raises(ValueError):
        p.build_register("", "1")
    with pytest.raises(ValueError):
        p.build_register("x", None)


def test_state():
    body = p.build_state("sid", {"a": {"b": None}}, timestamp=1.5)
    assert body == {"session_id": "sid", "state": {"a": {"b": None}}, "timestamp": 1.5}
    assert json.loads(p.encode_json(body).decode("utf-8"))["state"] == {"a": {"b": None}}
    with pytest.raises(TypeError):
        p.build_state("sid", ["not", "a", "dict"])
    with pytest.raises(ValueError):
        p.build_state("", {})


def test_event_minimal_omits_optional_fields():
    assert p.build_event("sid", "started") == {"session_id": "sid", "name": "started"}


def test_event_full():
    body = p.build_event("sid", "boss_fight", level="WARN", category="gameplay", labels=("a", 2),
                         message="hi", data={"x": 1}, group="g", timestamp=3)
    assert body == {"session_id": "sid", "name": "boss_fight", "level": "warning",
                    "category": "gameplay", "labels": ["a", "2"], "message": "hi",
                    "data": {"x": 1}, "group": "g", "timestamp": 3.0}


def test_event_levels():
    assert p.normalize_level(None) is None
    assert p.normalize_level("Error") == "error"
    assert p.normalize_level("fatal") == "critical"
    assert p.normalize_level(logging.DEBUG) == "debug"
    assert p.normalize_level(logging.INFO) == "info"
    assert p.normalize_level(logging.WARNING) == "warning"
    assert p.normalize_level(logging.ERROR) == "error"
    assert p.normalize_level(logging.CRITICAL) == "critical"
    assert p.normalize_level("custom") == "custom"  # the daemon judges unknown names
    with pytest.raises(TypeError):
        p.normalize_level(1.5)


def test_event_data_in_level_slot_is_data():
    # log_event("player_moved", {"x": 10}): data in the first optional slot
    body = p.build_event("sid", "player_moved", {"x": 10})
    assert body["data"] == {"x": 10}
    assert "level" not in body


def test_event_single_label_and_non_dict_data():
    body = p.build_event("sid", "e", labels="solo", data=[1, 2])
    assert body["labels"] == ["solo"]
    assert body["data"] == {"value": [1, 2]}


def test_event_requires_name():
    with pytest.raises(ValueError):
        p.build_event("sid", "")
    with pytest.raises(ValueError):
        p.build_event("sid", None)


def test_metric():
    body = p.build_metric("sid", "fps", 60, tags=["scene:menu"], unit="fps", timestamp=2)
    assert body == {"session_id": "sid", "name": "fps", "value": 60.0, "type": "gauge",
                    "unit": "fps", "tags": ["scene:menu"], "timestamp": 2.0}
    assert isinstance(body["value"], float)
    body = p.build_metric("sid", "load", "1.5", metric_type="TIMER", count=3)
    assert body["type"] == "timer" and body["value"] == 1.5 and body["count"] == 3
    assert p.build_metric("sid", "m", 1, tags={"host": "a", "b": 2})["tags"] == ["b:2", "host:a"]


def test_metric_programming_errors_raise():
    with pytest.raises(ValueError):
        p.build_metric("sid", "m", "abc")
    with pytest.raises(TypeError):
        p.build_metric("sid", "m", None)
    with pytest.raises(TypeError):
        p.build_metric("sid", "m", True)
    with pytest.raises(ValueError):
        p.build_metric("sid", "m", 1, metric_type="bogus")


def test_metric_non_finite_is_invalid_record():
    with pytest.raises(p.InvalidRecord):
        p.build_metric("sid", "m", float("nan"))
    with pytest.raises(p.InvalidRecord):
        p.build_metric("sid", "m", float("inf"))


def test_heartbeat_and_end():
    assert p.build_heartbeat("sid", timestamp=1) == {"session_id": "sid", "timestamp": 1.0}
    assert p.build_end("sid") == {"session_id": "sid"}
    assert p.build_end("sid", reason="done") == {"session_id": "sid", "reason": "done"}


def test_encode_json_fallbacks_and_strictness():
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    text = p.encode_json({"s": set([1]), "t": (1, 2), "d": when, "u": u"\u00e9", "o": object})
    assert isinstance(text, bytes)
    decoded = json.loads(text.decode("utf-8"))
    assert decoded["s"] == [1] and decoded["t"] == [1, 2]
    assert decoded["d"] == "2024-01-02T03:04:05" and decoded["u"] == u"\u00e9"
    with pytest.raises(p.InvalidRecord):
        p.encode_json({"x": float("nan")})


def test_exception_payload():
    def inner():
        raise ValueError("bad thing")

    try:
        inner()
    except ValueError:
        exc = p.build_exception(sys.exc_info())
    assert exc["type"] == "ValueError"
    assert exc["message"] == "bad thing"
    assert exc["stacktrace"][0].startswith("Traceback")
    assert exc["frames"][-1]["function"] == "inner"
    assert exc["frames"][-1]["code"] == 'raise ValueError("bad thing")'
    assert isinstance(exc["frames"][-1]["line"], int)
    assert p.build_exception((None, None, None)) is None


def test_exception_frames_always_complete():
    frame = p._frame(None, None, None, None)
    assert frame == {"file": "", "line": 0, "function": "", "code": ""}
    import traceback
    exc = p.stack_exception(traceback.extract_stack())
    assert exc["type"] == "Unknown" and exc["message"] == ""
    assert exc["frames"][-1]["function"] == "test_exception_frames_always_complete"

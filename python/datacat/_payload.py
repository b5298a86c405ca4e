"""Building the JSON bodies of the daemon's endpoints (see docs/daemon-api.md).

Pure functions, no I/O: easy to unit-test and shared by the blocking client
and (later) the async queue, which will send the same items through
``POST /batch``.

Two kinds of problems are told apart:

* programming errors (missing name, state that is not a dict, non-numeric
  metric value, unknown metric type) raise ``TypeError``/``ValueError`` at the
  call site, like any misuse of a Python API;
* data-dependent problems that can appear in a correct program at run time
  (a NaN metric, a state that cannot be encoded as JSON) raise
  ``InvalidRecord``; the client logs and counts those and never lets them
  escape into the application.
"""

from __future__ import absolute_import

import datetime
import json
import logging
import math
import re
import sys
import traceback

from ._compat import integer_types, string_types, text_type

_log = logging.getLogger("datacat")

EVENT_LEVELS = ("debug", "info", "warning", "error", "critical")
METRIC_TYPES = ("gauge", "counter", "histogram", "timer")

_LEVEL_ALIASES = {
    "warn": "warning",
    "err": "error",
    "fatal": "critical",
    "crit": "critical",
    "information": "info",
    "notset": "debug",
    "trace": "debug",
}


try:
    RecursionError_ = RecursionError
except NameError:  # Python 2
    RecursionError_ = RuntimeError


class InvalidRecord(ValueError):
    """A record that cannot be sent (e.g. NaN value, unencodable state)."""


def _json_default(obj):
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    return text_type(obj)


def encode_json(obj):
    """Serialise ``obj`` to UTF-8 JSON bytes, strictly (no NaN/Infinity).

    Objects JSON does not know (sets, datetimes, custom classes) are converted
    with a best-effort fallback instead of failing the whole record.
    """
    try:
        text = json.dumps(
            obj,
            default=_json_default,
            allow_nan=False,
            separators=(",", ":"),
            ensure_ascii=True,
        )
    except (TypeError, ValueError, UnicodeError, RecursionError_) as exc:
        raise InvalidRecord("cannot encode record as JSON: %s" % (exc,))
    if isinstance(text, text_type):
        text = text.encode("utf-8")
    return text



def _require_text(value, what):
    if not isinstance(value, string_types) or not value:
        raise ValueError("%s must be a non-empty string, got %r" % (what, value))
    return value


def _require_session_id(session_id):
    return _require_text(session_id, "session_id")


def _string_list(values, what):
    """labels / tags: a list of strings (a single string becomes a 1-item list)."""
    if values is None:
        return None
    if isinstance(values, string_types):
        return [values]
    if isinstance(values, dict):
        # tags={"host": "a"} is a common habit: turn it into ["host:a"].
        return ["%s:%s" % (k, v) for k, v in sorted(values.items())]
    try:
        items = list(values)
    except TypeError:
        raise TypeError("%s must be a list of strings, got %r" % (what, values))
    return [v if isinstance(v, string_types) else text_type(v) for v in items]


def normalize_level(level):
    """Map a level given as text or as a ``logging`` number to the daemon's names.

    ``None`` stays ``None`` (the daemon defaults to ``info``). Unknown text is
    passed through lower-cased and left to the daemon to judge.
    """
    if level is None:
        return None
    if isinstance(level, bool):
        raise TypeError("level must be a string or a logging level number")
    if isinstance(level, integer_types):
        if level >= 50:
            return "critical"
        if level >= 40:
            return "error"
        if level >= 30:
            return "warning"
        if level >= 20:
            return "info"
        return "debug"
    if not isinstance(level, string_types):
        raise TypeError("level must be a string or a logging level number, got %r" % (level,))
    text = level.strip().lower()
    return _LEVEL_ALIASES.get(text, text)


def _put(body, key, value, convert=None):
    """Set ``body[key]`` to ``value`` (passed through ``convert``) unless it is None.

    A field the caller did not give is left out rather than sent as ``null``: the
    daemon then applies its default, and the bodies stay those of the contract
    (api/fixtures/client-calls.json).
    """
    if value is not None:
        body[key] = value if convert is None else convert(value)


def _as_text(value):
    # A string is kept as it is: text_type() of a non-ASCII byte string raises on Python 2.
    return value if isinstance(value, string_types) else text_type(value)


def _as_object(data):
    # The daemon wants an object: a bare value (log_event("x", 3)) is wrapped.
    return data if isinstance(data, dict) else {"value": data}


def _base(session_id, timestamp):
    body = {"session_id": _require_session_id(session_id)}
    _put(body, "timestamp", timestamp, float)
    return body


def build_register(product, version, parent_pid=None, timestamp=None, environment=None,
                   tags=None):
    _require_text(product, "product")
    _require_text(version, "version")
    body = {"product": product, "version": version}
    _put(body, "parent_pid", parent_pid, int)
    _put(body, "timestamp", timestamp, float)
    environment, tags = session_labels(environment, tags)
    _put(body, "environment", environment)
    if tags:
        body["tags"] = tags
    return body


# A session's environment and tags, as the daemon and the query service take them (larger
# ones are refused there, with the whole registration: the client keeps within them).
MAX_ENVIRONMENT_BYTES = 64
MAX_TAGS = 32
MAX_TAG_KEY_BYTES = 64
MAX_TAG_VALUE_BYTES = 256


def session_labels(environment, tags):
    """``(environment, tags)`` within the limits above: what is beyond them is left out
    (and logged on the ``datacat`` logger), so that the session is still registered."""
    if environment is not None:
        environment = _as_text(environment).strip()
        if _utf8_len(environment) > MAX_ENVIRONMENT_BYTES:
            _log.warning("environment %r is longer than %d bytes; left out", environment,
                        MAX_ENVIRONMENT_BYTES)
            environment = None
    if not tags:
        return environment or None, None
    if not isinstance(tags, dict):
        raise TypeError("tags must be a dict of names to values, got %s" % (type(tags).__name__,))
    kept = {}
    for key, value in sorted((_as_text(k), _as_text(v)) for k, v in tags.items()):
        if (not key.strip() or ":" in key or _utf8_len(key) > MAX_TAG_KEY_BYTES
                or _utf8_len(value) > MAX_TAG_VALUE_BYTES or len(kept) == MAX_TAGS):
            _log.warning("tag %r left out: at most %d tags, keys of 1 to %d bytes without ':', "
                        "values of at most %d bytes", key, MAX_TAGS, MAX_TAG_KEY_BYTES,
                        MAX_TAG_VALUE_BYTES)
            continue
        kept[key] = value
    return environment or None, kept or None


def _utf8_len(text):
    # Python 2's str is already bytes.
    return len(text) if isinstance(text, bytes) else len(text.encode("utf-8"))


def build_state(session_id, state, timestamp=None):
    if not isinstance(state, dict):
        raise TypeError("state must be a dict, got %s" % (type(state).__name__,))
    body = _base(session_id, timestamp)
    body["state"] = state
    return body


def event_level_and_data(level, data):
    """``(level, data)`` of an event: ``log_event("name", {"k": "v"})`` (a dict in the
    first optional slot) is the event's data, not its level."""
    if isinstance(level, dict) and data is None:
        return None, level
    return level, data


def build_event(session_id, name, level=None, category=None, labels=None, message=None,
                data=None, group=None, exception=None, timestamp=None):
    _require_text(name, "event name")
    level, data = event_level_and_data(level, data)
    body = _base(session_id, timestamp)
    body["name"] = name
    _put(body, "level", normalize_level(level))
    _put(body, "category", category, text_type)
    _put(body, "group", group, text_type)
    _put(body, "labels", _string_list(labels, "labels"))
    _put(body, "message", message, _as_text)
    _put(body, "data", data, _as_object)
    _put(body, "exception", exception)
    return body


def build_metric(session_id, name, value, tags=None, unit=None, metric_type="gauge",
                 count=None, timestamp=None, delta=None, buckets=None, metadata=None):
    _require_text(name, "metric name")
    if isinstance(value, bool) or value is None:
        raise TypeError("metric value must be a number, got %r" % (value,))
    value = float(value)  # TypeError / ValueError for non-numbers: a programming error
    if math.isnan(value) or math.isinf(value):
        raise InvalidRecord("metric %r has a non-finite value (%r)" % (name, value))
    if metric_type is None:
        metric_type = "gauge"
    metric_type = text_type(metric_type).lower()
    if metric_type not in METRIC_TYPES:
        raise ValueError(
            "metric_type must be one of %s, got %r" % (", ".join(METRIC_TYPES), metric_type)
        )
    body = _base(session_id, timestamp)
    body["name"] = name
    body["value"] = value
    body["type"] = metric_type
    _put(body, "unit", unit, text_type)
    _put(body, "tags", _string_list(tags, "tags"))
    _put(body, "count", count, int)
    _put(body, "delta", delta, float)
    if metadata:
        body["metadata"] = dict(metadata)  # a copy: the caller's dict is never changed
    _put(body, "buckets", buckets, _bounds)
    return body


def _bounds(buckets):
    return [_bound(b) for b in buckets]


def _bound(bound):
    """A histogram bucket bound: a number, or ``"+Inf"`` (JSON has no infinity)."""
    if isinstance(bound, string_types):
        return bound
    bound = float(bound)
    return "+Inf" if math.isinf(bound) and bound > 0 else bound


def batch_item(kind, body):
    """A ``/batch`` item from a single call's body: ``kind`` added, ``session_id`` removed."""
    body.pop("session_id", None)
    body["kind"] = kind
    return body


def build_heartbeat(session_id, timestamp=None):
    return _base(session_id, timestamp)


def build_end(session_id, reason=None, timestamp=None, crashed=False, wait=None):
    body = _base(session_id, timestamp)
    _put(body, "reason", reason, text_type)
    if crashed:
        body["crashed"] = True
    _put(body, "wait", wait, lambda seconds: round(float(seconds), 3))
    return body


#: A pre-encoded ``/batch`` body starts with its session id (``AsyncSession._pack``).
_SESSION_HEAD = re.compile(br'^\{"session_id":("(?:[^"\\]|\\.)*")')


def session_id_of(body):
    """The ``session_id`` of a request body: a dict, or JSON bytes that start with it."""
    if isinstance(body, dict):
        return body.get("session_id")
    if isinstance(body, bytes):
        head = _SESSION_HEAD.match(body)
        if head:
            return json.loads(head.group(1).decode("utf-8"))
    return None


def build_heartbeat_monitor(session_id, timeout=None):
    body = _base(session_id, None)
    _put(body, "timeout", timeout, float)
    return body


def _frame(filename, lineno, function, code):
    # The daemon wants every field, with an unsigned line number.
    return {
        "file": text_type(filename or ""),
        "line": int(lineno) if lineno and lineno > 0 else 0,
        "function": text_type(function or ""),
        "code": text_type(code or ""),
    }


def stack_exception(stack):
    """An ``exception`` object for "no exception": type ``Unknown`` and the given stack."""
    return {
        "type": "Unknown",
        "message": "",
        "stacktrace": [line.rstrip("\n") for line in traceback.format_list(stack)],
        "frames": [_frame(*entry[:4]) for entry in stack],
    }


# Local variables, when an application asks for them: the innermost frames' only, and not
# all of them; each value as its repr, cut. An exception's chain is cut too.
LOCALS_FRAMES = 10
LOCALS_PER_FRAME = 30
LOCAL_CHARS = 200
MAX_CAUSES = 10


def build_exception(exc_info=None, max_frames=200, with_locals=False):
    """The ``exception`` object of an event from ``sys.exc_info()``-style data.

    With ``with_locals``, the innermost frames carry their local variables (as text, see
    the limits above). The exceptions behind it (``raise ... from``, or raised while
    handling another) are its ``causes``, nearest first. Returns None when there is no
    exception to describe.
    """
    if exc_info is None or exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, getattr(exc_info, "__traceback__", None))
    etype, evalue, tb = exc_info
    if etype is None:
        return None
    frames = _frames(tb, max_frames, with_locals)
    exception = {
        "type": etype.__name__,
        "message": _exception_text(etype, evalue),
        "stacktrace": [line.rstrip("\n") for line in traceback.format_exception(etype, evalue, tb)],
        "frames": frames,
    }
    causes = _causes(evalue, max_frames)
    if causes:
        exception["causes"] = causes
    return exception


def _exception_text(etype, evalue):
    try:
        return text_type(evalue) if evalue is not None else ""
    except Exception:  # noqa: BLE001 - a broken __str__ must not break logging
        return "<unprintable %s>" % (etype.__name__,)


def _frames(tb, max_frames, with_locals):
    frames = [_frame(filename, lineno, function, code)
              for filename, lineno, function, code in traceback.extract_tb(tb)[-max_frames:]]
    if with_locals:
        objects = []
        while tb is not None:
            objects.append(tb.tb_frame)
            tb = tb.tb_next
        for frame, obj in list(zip(frames, objects[-max_frames:]))[-LOCALS_FRAMES:]:
            frame["locals"] = _locals(obj)
    return frames


def _locals(frame):
    """A function frame's variables (a module's frame has globals, not locals: none)."""
    shown = {}
    if frame.f_locals is frame.f_globals:
        return shown
    names = [name for name in frame.f_locals if not (name.startswith("__") and name.endswith("__"))]
    for name in sorted(names)[:LOCALS_PER_FRAME]:
        try:
            text = repr(frame.f_locals[name])
        except Exception:  # noqa: BLE001 - a broken __repr__ must not break logging
            text = "<unrepresentable>"
        if not isinstance(text, text_type):
            text = text.decode("utf-8", "replace")
        shown[text_type(name)] = text if len(text) <= LOCAL_CHARS else text[:LOCAL_CHARS - 3] + "..."
    return shown


def _causes(evalue, max_frames):
    """The chain behind ``evalue`` (Python 3: ``__cause__``, ``__context__``), nearest first."""
    causes = []
    seen = set([id(evalue)])
    current = evalue
    while current is not None and len(causes) < MAX_CAUSES:
        cause = getattr(current, "__cause__", None)
        relation = "cause"
        if cause is None and not getattr(current, "__suppress_context__", False):
            cause, relation = getattr(current, "__context__", None), "context"
        if cause is None or id(cause) in seen:
            break
        seen.add(id(cause))
        causes.append({
            "type": type(cause).__name__,
            "message": _exception_text(type(cause), cause),
            "relation": relation,
            "frames": _frames(getattr(cause, "__traceback__", None), max_frames, False),
        })
        current = cause
    return causes

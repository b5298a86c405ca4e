"""Configuration from the environment: DATACAT_URL, DATACAT_PRODUCT, DATACAT_VERSION,
DATACAT_DISABLED, DATACAT_DEBUG (each program run in a process of its own, as users run
them)."""

from __future__ import absolute_import

import os
import subprocess
import sys
import textwrap

import pytest

from datacat import _config

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(program, **variables):
    """Runs ``program`` with only these DATACAT_* variables set; its (stdout, stderr)."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("DATACAT_"))
    env["PYTHONPATH"] = PYTHON_DIR
    env["DATACAT_SPOOL_DIR"] = os.environ.get("DATACAT_SPOOL_DIR", "")
    env.update(variables)
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(program)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate()
    assert process.returncode == 0, err.decode("utf-8", "replace")
    return out.decode("utf-8"), err.decode("utf-8")


def test_an_argument_wins_over_the_variable_which_wins_over_nothing():
    env = {"DATACAT_PRODUCT": " game ", "DATACAT_EMPTY": ""}
    assert _config.text("DATACAT_PRODUCT", "tool", env) == "tool"
    assert _config.text("DATACAT_PRODUCT", None, env) == "game"
    assert _config.text("DATACAT_EMPTY", None, env) is None
    assert _config.text("DATACAT_UNSET", None, env) is None


@pytest.mark.parametrize("value,on", [("1", True), ("true", True), ("YES", True), (" on ", True),
                                      ("0", False), ("false", False), ("", False), ("no", False)])
def test_flags(value, on):
    assert _config.flag("DATACAT_DISABLED", None, {"DATACAT_DISABLED": value}) is on
    assert _config.flag("DATACAT_DISABLED", False, {"DATACAT_DISABLED": value}) is False


def test_the_query_url_is_datacat_url_then_the_older_name():
    assert _config.query_url(None, {"DATACAT_URL": "http://a", "DATACAT_QUERY_URL": "http://b"}) == "http://a"
    assert _config.query_url(None, {"DATACAT_QUERY_URL": "http://b"}) == "http://b"
    assert _config.query_url("http://c", {"DATACAT_URL": "http://a"}) == "http://c"


def test_product_and_version_come_from_the_environment():
    out, _ = run("""
        import datacat
        s = datacat.create_session(disabled=True)
        print("%s %s %s" % (s.product, s.version, s.client.base_url))
        """, DATACAT_PRODUCT="space-game", DATACAT_VERSION="1.5.0", DATACAT_URL="http://q:8080/")
    assert out.split() == ["space-game", "1.5.0", "http://q:8080"]


def test_without_product_the_error_names_the_variables():
    out, _ = run("""
        import datacat
        try:
            datacat.create_session(version="1")
        except ValueError as error:
            print(error)
        """)
    assert "$DATACAT_PRODUCT" in out and "$DATACAT_VERSION" in out


def test_disabled_records_nothing_starts_nothing_and_says_nothing():
    out, err = run("""
        import datacat
        from datacat import _daemon
        def refuse(*args, **kwargs):
            raise AssertionError("a disabled session started a daemon")
        _daemon.shared_daemon = refuse
        import datacat.client
        datacat.client.shared_daemon = refuse
        s = datacat.create_session(product="p", version="1", async_mode=True)
        results = [s.update_state({"a": 1}), s.log_event("e"), s.log_metric("m", 1),
                   s.heartbeat(), s.end()]
        print("%s %s %s %s" % (results, s.registered, sorted(s.get_stats().items()), s.get_details()))
        """, DATACAT_DISABLED="1", DATACAT_DAEMON_BIN="/nonexistent/datacat-daemon")
    assert out.strip() == "[False, False, False, False, False] False [('failed', 0), ('sent', 0)] None"
    assert err == ""


def test_debug_reports_the_first_problem_once_on_stderr():
    _, err = run("""
        import datacat
        s = datacat.create_session(product="p", version="1")
        s.log_event("e")
        s.log_metric("m", 1)
        """, DATACAT_DEBUG="1", DATACAT_DAEMON_BIN="/nonexistent/datacat-daemon")
    reports = [line for line in err.splitlines() if line.startswith("datacat (DATACAT_DEBUG): ")]
    assert len(reports) == 2, err  # the problem, and where the rest goes
    assert "/nonexistent/datacat-daemon" in reports[0], err
    # Without DATACAT_DEBUG, only the exit line counts what was lost.
    _, quiet = run("""
        import datacat
        s = datacat.create_session(product="p", version="1")
        s.log_event("e")
        """, DATACAT_DAEMON_BIN="/nonexistent/datacat-daemon")
    assert "DATACAT_DEBUG" not in quiet and "not delivered" in quiet, quiet


def test_labels_beyond_the_limits_are_left_out_and_the_session_kept():
    from datacat import _payload

    tags = dict(("k%02d" % i, "v") for i in range(40))
    tags.update({"a:b": "colon", "long": "x" * 257, "": "empty", "edge": "y" * 256})
    environment, kept = _payload.session_labels("e" * 64, tags)
    assert environment == "e" * 64
    assert len(kept) == _payload.MAX_TAGS and "edge" in kept
    assert not set(kept) & {"a:b", "long", ""}
    assert _payload.session_labels("e" * 65, None) == (None, None)
    assert _payload.session_labels(" ci ", {"team": 7}) == ("ci", {"team": "7"})
    with pytest.raises(TypeError):
        _payload.session_labels(None, ["team"])

"""The type stubs (datacat/__init__.pyi, with py.typed) against the code: mypy's stubtest
finds every name, argument and default that differs; and a program type-checks against
them, while a wrong call does not. mypy runs on Python 3.10+ (deploy/test-all.sh installs
it into .local/mypy); the other interpreters skip this file."""

from __future__ import absolute_import

import os
import subprocess
import sys
import textwrap

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MYPY_DIR = os.environ.get("DATACAT_MYPY_DIR") or os.path.join(
    os.path.dirname(PYTHON_DIR), ".local", "mypy")

pytestmark = pytest.mark.skipif(sys.version_info < (3, 10), reason="mypy runs on Python 3.10+")


def mypy(*args):
    if not os.path.isdir(os.path.join(MYPY_DIR, "mypy")):
        pytest.fail("mypy is not installed in %s (deploy/test-all.sh installs it)" % MYPY_DIR,
                    pytrace=False)
    env = dict(os.environ, PYTHONPATH=MYPY_DIR + os.pathsep + PYTHON_DIR)
    process = subprocess.Popen([sys.executable, "-m"] + list(args), cwd=PYTHON_DIR, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = process.communicate()[0].decode("utf-8", "replace")
    return process.returncode, out


def test_the_stubs_match_the_code():
    code, out = mypy("mypy.stubtest", "datacat", "--concise",
                     "--mypy-config-file", os.path.join(PYTHON_DIR, "pyproject.toml"))
    assert code == 0, out


def test_a_program_type_checks_against_the_stubs_and_a_wrong_call_does_not(tmpdir):
    program = tmpdir.join("app.py")
    program.write(textwrap.dedent("""
        import datacat

        session = datacat.create_session(product="game", version="1.0")
        session.update_state({"level": 1})
        session.log_event("started", level="info", data={"x": 1})
        session.log_metric("fps", 59.8, unit="fps")
        with session.timer("load"):
            pass
        session.end(reason="done")
        """))
    code, out = mypy("mypy", "--strict", "--cache-dir", os.devnull, str(program))
    assert code == 0, out
    program.write(program.read() + 'session.log_metric("fps", "fast")\n')
    code, out = mypy("mypy", "--strict", "--cache-dir", os.devnull, str(program))
    assert code == 1 and 'Argument 2 to "log_metric"' in out, out

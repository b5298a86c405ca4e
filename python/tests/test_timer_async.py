"""``session.timer`` on ``async def`` functions (Python 3 only: conftest.py leaves this
file out on Python 2, whose compiler refuses ``async def``)."""

import asyncio

from datacat.session import Timer


class Recorder(object):
    def __init__(self):
        self.metrics = []

    def log_metric(self, name, value, **kwargs):
        self.metrics.append((name, value, kwargs))


def test_an_async_function_is_timed_from_start_to_end_of_each_call():
    session = Recorder()

    @Timer(session, "load", unit="ms", tags=["scene:menu"])
    async def load(delay):
        await asyncio.sleep(delay)
        return "loaded"

    assert asyncio.iscoroutinefunction(load)
    assert load.__name__ == "load"
    coroutine = load(0.05)
    assert session.metrics == [], "nothing is timed before the coroutine runs"
    assert asyncio.run(coroutine) == "loaded"
    assert asyncio.run(load(0.0)) == "loaded"
    (name, first, options), (_, second, _) = session.metrics
    assert name == "load" and options["metric_type"] == "timer" and options["unit"] == "ms"
    assert options["tags"] == ["scene:menu"]
    assert first >= 45.0 > second


def test_an_async_function_that_raises_is_timed_and_the_error_kept():
    session = Recorder()

    @Timer(session, "fail")
    async def fail():
        raise KeyError("x")

    try:
        asyncio.run(fail())
    except KeyError:
        pass
    else:
        raise AssertionError("the error was swallowed")
    assert [m[0] for m in session.metrics] == ["fail"]

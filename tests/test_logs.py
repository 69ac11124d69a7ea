"""``sync.logs.RateLimitedLog``: one line per cause per window, repeats counted, tracebacks only
for errors nobody expected."""

from __future__ import annotations

import asyncio
import logging

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from sync.core.errors import InvalidRequest, RetryLater
from sync.logs import RateLimitedLog, describe, expected_failure


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limited(clock: Clock) -> RateLimitedLog:
    return RateLimitedLog(logging.getLogger("sync.test.logs"), window=60, clock=clock)


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sync.test.logs"]


def test_one_line_per_cause_per_window_with_a_count(
    limited: RateLimitedLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sync.test.logs")
    assert limited.error("storage unavailable", "ServiceRequestError: refused")
    for i in range(411):
        clock.now += 0.1
        assert not limited.error("storage unavailable", f"refused {i}")
    assert limited.warning("graph asks to retry later", "429")  # another cause: its own line
    assert [r.getMessage() for r in _lines(caplog)] == [
        "storage unavailable (ServiceRequestError: refused)",
        "graph asks to retry later (429)",
    ]
    clock.now = 1060.0  # the window closes: the next call writes the summary first
    limited.error("storage unavailable", "refused again")
    messages = [r.getMessage() for r in _lines(caplog)]
    assert messages[2] == (
        "storage unavailable: 411 more occurrence(s) in the last 60 s (refused 410)"
    )
    # The summary opened a new window: the occurrence that triggered it is counted there.
    assert len(messages) == 3
    clock.now = 1120.0
    limited.flush()
    assert _lines(caplog)[-1].getMessage().startswith("storage unavailable: 1 more occurrence")


def test_a_quiet_cause_logs_again_at_once(
    limited: RateLimitedLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sync.test.logs")
    limited.info("webhook: items dropped", "1 unknown")
    clock.now += 61
    assert limited.info("webhook: items dropped", "2 unknown")  # no repeats: no summary line
    assert [r.getMessage() for r in _lines(caplog)] == [
        "webhook: items dropped (1 unknown)",
        "webhook: items dropped (2 unknown)",
    ]


def test_tracebacks_only_for_unexpected_errors(
    limited: RateLimitedLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sync.test.logs")
    limited.failure("webhook: storage unavailable", ServiceRequestError("refused"))
    limited.failure("webhook: storage unavailable", RetryLater("busy", source="graph"))
    limited.failure("webhook: storage unavailable", KeyError("boom"))
    lines = _lines(caplog)
    assert [r.exc_info is None for r in lines] == [True, False]
    assert (
        lines[1].getMessage()
        == "webhook: storage unavailable: unexpected KeyError (KeyError: 'boom')"
    )


def test_summary_is_written_by_a_timer_when_the_failures_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sync.test.logs")

    async def outage() -> None:
        limited = RateLimitedLog(logging.getLogger("sync.test.logs"), window=0.2)
        for _ in range(50):
            limited.error("storage unavailable", "refused")
        await asyncio.sleep(0.35)  # no call after the outage: the loop's timer writes it

    asyncio.run(outage())
    messages = [r.getMessage() for r in _lines(caplog)]
    assert messages[0] == "storage unavailable (refused)"
    assert messages[1].startswith("storage unavailable: 49 more occurrence(s) in the last 0 s")
    assert len(messages) == 2


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RetryLater("busy"), True),
        (ServiceRequestError("refused"), True),
        (ServiceResponseError("reset"), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (HttpResponseError("busy"), False),  # no status: not an outage we know
        (ResourceNotFoundError("gone"), False),
        (InvalidRequest("bad"), False),
        (KeyError("x"), False),
    ],
)
def test_expected_failures(exc: BaseException, expected: bool) -> None:
    assert expected_failure(exc) is expected


def test_server_errors_from_storage_are_expected() -> None:
    class Busy(HttpResponseError):
        def __init__(self, status: int) -> None:
            super().__init__("busy")
            self.status_code = status

    assert expected_failure(Busy(503)) and expected_failure(Busy(500))
    assert expected_failure(Busy(429)) and not expected_failure(Busy(400))


def test_describe_is_short_and_one_line() -> None:
    assert describe(ValueError("a\n  b")) == "ValueError: a b"
    assert describe(KeyError()) == "KeyError"
    assert len(describe(ValueError("x" * 5000))) < 320

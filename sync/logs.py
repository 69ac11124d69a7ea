"""Log lines that stay few during an outage: at most one line per cause per minute per instance.

When storage or an API is down, every request and every job fails the same way; a line (and a
traceback) for each drowns the one line an operator needs and costs Application Insights
ingestion.  ``RateLimitedLog`` writes the first occurrence of a cause at once, counts the
repeats, and writes one summary with the count when the window closes::

    webhook: storage unavailable (ServiceRequestError: Cannot connect to host ...)
    webhook: storage unavailable: 412 more occurrence(s) in the last 60 s (ServiceRequestError...)

A cause is a short, stable string chosen by the caller ("webhook: storage unavailable"), never
an id or a message that varies, or every occurrence would be a cause of its own.  Tracebacks are
for errors we did not expect: ``expected_failure`` names the known outage classes (``RetryLater``,
storage and network failures), which are logged without one.

The summary is written by a timer on the running event loop when the window closes (so the
count of the last minute of an outage is not lost when the failures stop), or, with no loop
running, by the next call after it closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sync.core.errors import RetryLater

WINDOW_SECONDS = 60.0


@dataclass
class _Window:
    opened: float
    repeats: int = 0
    level: int = logging.INFO
    last: str = ""
    timer: asyncio.TimerHandle | None = None


class RateLimitedLog:
    """One line per cause per ``window`` seconds on ``logger``, repeats counted."""

    def __init__(
        self,
        logger: logging.Logger,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.window = window
        self.clock = clock
        self._windows: dict[str, _Window] = {}

    def log(
        self,
        level: int,
        cause: str,
        message: str = "",
        *,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log ``cause: message`` unless the cause was logged less than a window ago (then it is
        counted for the summary).  True if a line was written."""
        now = self.clock()
        self._close_due(now)
        current = self._windows.get(cause)
        if current is not None:
            current.repeats += 1
            current.level = max(current.level, level)
            current.last = message
            self._arm(cause, current)
            return False
        self._windows[cause] = _Window(opened=now)
        text = f"{cause} ({message})" if message else cause
        self.logger.log(level, "%s", text, exc_info=exc_info)
        return True

    def error(
        self, cause: str, message: str = "", *, exc_info: BaseException | None = None
    ) -> bool:
        return self.log(logging.ERROR, cause, message, exc_info=exc_info)

    def warning(self, cause: str, message: str = "") -> bool:
        return self.log(logging.WARNING, cause, message)

    def info(self, cause: str, message: str = "") -> bool:
        return self.log(logging.INFO, cause, message)

    def failure(self, cause: str, exc: BaseException, level: int = logging.ERROR) -> bool:
        """An exception: expected outage classes without a traceback, anything else with one
        (and under a cause of its own, so a bug is not hidden among outage lines)."""
        summary = describe(exc)
        if expected_failure(exc):
            return self.log(level, cause, summary)
        return self.log(
            logging.ERROR, f"{cause}: unexpected {type(exc).__name__}", summary, exc_info=exc
        )

    def flush(self) -> None:
        """Write the summaries of every window that has repeats, now (e.g. at shutdown)."""
        for cause in list(self._windows):
            self._close(cause, self.clock(), force=True)

    def reset(self) -> None:
        """Forget every window without writing anything (tests start from a clean slate)."""
        for window in self._windows.values():
            if window.timer is not None:
                window.timer.cancel()
        self._windows.clear()

    # ------------------------------------------------------------------ windows

    def _arm(self, cause: str, window: _Window) -> None:
        if window.timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next call after the window closes writes the summary
        delay = max(0.0, window.opened + self.window - self.clock())
        window.timer = loop.call_later(delay, self._close, cause, None, False)

    def _close_due(self, now: float) -> None:
        for cause, window in list(self._windows.items()):
            if now - window.opened >= self.window:
                self._close(cause, now, force=False)

    def _close(self, cause: str, now: float | None, force: bool) -> None:
        window = self._windows.get(cause)
        if window is None:
            return
        now = self.clock() if now is None else now
        if window.timer is not None:
            window.timer.cancel()
            window.timer = None
        if not force and now - window.opened < self.window:
            self._arm(cause, window)  # the timer fired a little early: wait for the rest
            return
        del self._windows[cause]
        if window.repeats == 0:
            return
        self.logger.log(
            window.level,
            "%s: %d more occurrence(s) in the last %.0f s (%s)",
            cause,
            window.repeats,
            max(now - window.opened, 0.0),
            window.last,
        )
        if not force:
            # The summary is the line of the window that opens now: a cause that keeps
            # failing writes one line per window, not two.
            self._windows[cause] = _Window(opened=now)


def describe(exc: BaseException) -> str:
    """``Type: message``, short, on one line (server text can be long and multi-line)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def expected_failure(exc: BaseException) -> bool:
    """Failures an outage causes, which need no traceback: ``RetryLater`` (throttling, 5xx,
    unreachable APIs, as the clients translated them), storage that cannot be reached or
    answers 5xx/408/429, connection errors and timeouts."""
    if isinstance(exc, RetryLater | ConnectionError | TimeoutError):
        return True
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        return status >= 500 or status in (408, 429)
    try:
        from aiohttp import ClientConnectionError
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        return False
    return isinstance(exc, ClientConnectionError)

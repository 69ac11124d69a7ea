"""How long to wait before trying again, without I/O: one rule for every retry in the service.

* The server named a time (``Retry-After``, Graph's throttling, Workbooks' ``Retry-After``):
  that time is honoured, never shortened.  A re-queued job waits up to ``after_spread`` of it
  longer, so the streams a server throttled together do not all come back in the same second.
* It did not (a 5xx, a timeout, a refused connection): exponential back-off with *full
  jitter*, a delay drawn uniformly from ``[0, min(cap, base * 2 ** (attempt - 1))]``.  The
  ceiling doubles per attempt of the same job, and the draw spreads the streams that failed
  together across the whole interval, so a recovering server sees a trickle rather than a
  stampede (the "full jitter" of the AWS Architecture Blog's "Exponential Backoff And Jitter").

``attempt`` counts from 1 (the first retry).  Randomness comes from ``rand`` (``[0, 1)``) so
tests can pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

Random = Callable[[], float]
_MAX_EXPONENT = 60  # 2 ** 60 seconds is past any cap; larger attempts change nothing


@dataclass(frozen=True)
class Backoff:
    """Back-off for one kind of retry: its first ceiling, its cap, and the spread added after a
    server-named wait (a fraction of that wait; 0 to wait exactly as told)."""

    base_seconds: float
    cap_seconds: float
    after_spread: float = 0.0

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.cap_seconds < 0 or self.after_spread < 0:
            raise ValueError("back-off times and spread must not be negative")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry ``attempt`` when the server named none."""
        exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
        return float(min(self.cap_seconds, self.base_seconds * 2.0**exponent))

    def delay(
        self, attempt: int, retry_after: float | None = None, rand: Random = random.random
    ) -> float:
        """Seconds to wait before retry ``attempt``; ``retry_after`` is the server's wait in
        seconds when it named one (it takes precedence)."""
        if retry_after is not None:
            wait = max(0.0, retry_after)
            return wait + wait * self.after_spread * rand()
        return self.ceiling(attempt) * rand()


MAX_RETRY_AFTER_DIGITS = 7  # 9,999,999 s is past any wait a job honours (queues hold 7 days)


def retry_after_seconds(value: str | None) -> int | None:
    """A Retry-After header's delta-seconds, or None when it is not one: ASCII digits only, and
    no more than ``MAX_RETRY_AFTER_DIGITS`` of them, so a hostile 5,000-digit header is
    ignored rather than turned into an int the size of the header."""
    text = (value or "").strip()
    if not text or not text.isascii() or not text.isdigit() or len(text) > MAX_RETRY_AFTER_DIGITS:
        return None
    return int(text)

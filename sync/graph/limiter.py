"""Per-mailbox concurrency and the retry policy for Graph calls.

Graph throttles per app + mailbox: 4 concurrent requests and 10,000 per 10 minutes
(graph.md §3.1).  Each mailbox gets a semaphore of `max_concurrency` slots, and after a 429 the
whole mailbox is held until its Retry-After has passed, so the other in-flight callers do not
keep hammering a throttled mailbox.  Waits are taken *outside* the slot.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sync.core.backoff import Backoff
from sync.core.errors import RetryLater
from sync.graph.errors import SOURCE


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class MailboxLimiter:
    max_concurrency: int = 4
    _slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _held_until: dict[str, datetime] = field(default_factory=dict)

    def hold(self, mailbox: str, until: datetime) -> None:
        """Pause every request to `mailbox` until `until` (after a 429 with Retry-After)."""
        current = self._held_until.get(mailbox)
        if current is None or until > current:
            self._held_until[mailbox] = until

    def held_until(self, mailbox: str) -> datetime | None:
        until = self._held_until.get(mailbox)
        return until if until is not None and until > utcnow() else None

    @asynccontextmanager
    async def slot(self, mailbox: str, max_wait_seconds: float) -> AsyncIterator[None]:
        """One of the mailbox's slots.  A hold longer than `max_wait_seconds` is not waited
        out: RetryLater goes to the caller at once, so no worker sleeps through a long 429."""
        sem = self._slots.setdefault(mailbox, asyncio.Semaphore(self.max_concurrency))
        async with sem:
            until = self.held_until(mailbox)
            if until is not None:
                wait = (until - utcnow()).total_seconds()
                if wait > max_wait_seconds:
                    raise RetryLater("mailbox is throttled by Graph", retry_at=until, source=SOURCE)
                await asyncio.sleep(wait)
            yield


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded in attempts and in wait; Retry-After wins over backoff (graph.md §3.2).

    Without a Retry-After (5xx, timeouts, refused connections) the wait is exponential with
    full jitter (``sync.core.backoff``): drawn from 0 to ``base * 2 ** (attempt - 1)``, capped,
    so the requests of many workers that failed together do not return together.  A
    Retry-After is waited exactly: the limiter holds the whole mailbox until then anyway.

    A wait longer than `max_wait_seconds` is not sat out: the RetryLater goes back to the caller
    (the job is re-queued for `retry_at`) so a worker never blocks for minutes.
    """

    attempts: int = 4
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 30.0
    max_wait_seconds: float = 60.0
    rand: Callable[[], float] = random.random

    def wait_seconds(self, error: RetryLater, attempt: int, now: datetime) -> float:
        after = (error.retry_at - now).total_seconds() if error.retry_at is not None else None
        backoff = Backoff(self.backoff_base_seconds, self.backoff_cap_seconds)
        return backoff.delay(attempt, after, self.rand)

    def next_wait(self, error: RetryLater, attempt: int, now: datetime) -> float | None:
        """Seconds to sleep before attempt `attempt + 1`, or None to hand the error back."""
        if attempt >= self.attempts:
            return None
        wait = self.wait_seconds(error, attempt, now)
        return None if wait > self.max_wait_seconds else wait

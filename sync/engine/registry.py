"""Which processor handles which job: filled in by the stream modules at import time.

The runner looks a processor up by (stream, kind); each feature (sent-email linking, contacts,
activities, subscription upkeep) registers its own, so the runner stays the same as features
are added.  A job for which no processor is registered is recorded as skipped, not failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync.core.jobs import Job, JobKind, Stream

if TYPE_CHECKING:
    from sync.core.state_models import Cursor, Lease, Mailbox
    from sync.runtime import Services


@dataclass
class RunContext:
    """What a processor gets: the job, its mailbox, the lease it runs under, and services."""

    job: Job
    mailbox: Mailbox
    lease: Lease | None
    services: Services
    counts: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    marker_cleared_at: float | None = None  # monotonic time a pending-notification marker went

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    async def clear_marker(self) -> bool:
        """Take the stream's 'notification pending' marker: the delta read that follows covers
        every notification so far. Remembers when, so the runner can cover notifications the
        webhook answered from memory right after (see ``sync.webhook``)."""
        import time

        cleared = await self.services.store.dirty.clear(self.job.mailbox, self.job.stream)
        if cleared:
            self.marker_cleared_at = time.monotonic()
        return cleared

    async def save_cursor(self, stream: str, change: Callable[[Cursor], Cursor]) -> None:
        """Apply ``change`` to the stream's cursor: under the run's lease when it holds one
        (a lost lease fails the write), else directly."""
        store = self.services.store.cursors
        if self.lease is not None:
            await store.advance(self.lease, change)
        else:
            await store.update(self.mailbox.id, stream, change)


Processor = Callable[[RunContext], Awaitable[None]]
_PROCESSORS: dict[tuple[Stream, JobKind | None], Processor] = {}


def register(stream: Stream, kind: JobKind | None = None) -> Callable[[Processor], Processor]:
    """Decorator: handle ``stream`` jobs of ``kind`` (None = every kind not registered apart)."""

    def wrap(fn: Processor) -> Processor:
        _PROCESSORS[(stream, kind)] = fn
        return fn

    return wrap


def lookup(stream: Stream, kind: JobKind) -> Processor | None:
    return _PROCESSORS.get((stream, kind)) or _PROCESSORS.get((stream, None))

"""Which processor handles which job: filled in by the stream modules at import time.

The runner looks a processor up by (stream, kind); each feature (sent-email linking, contacts,
activities, subscription upkeep) registers its own, so the runner stays the same as features
are added.  A job for which no processor is registered is recorded as skipped, not failed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync.core.jobs import Job, JobKind, Stream
from sync.core.state_models import utcnow
from sync.core.streams import StreamRun, memory_left, read_again, stream_marker

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
    life: StreamRun | None = None  # the run's lifecycle (``sync.core.streams``), from the runner
    # The cursor change to write with the lease's release (``save_cursor(at_release=True)``).
    at_release: Callable[[Cursor], Cursor] | None = None
    # A two-way run's identity rows as it left them (``RunRecord.identity_counts``).
    identity_counts: dict[str, int] | None = None

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    async def clear_marker(self, *, read_follows: bool = True, first: bool = False) -> bool:
        """Take the stream's 'job pending' marker: the delta read that follows covers every
        notification so far. True if there was one; the lifecycle notes when, and whether a
        webhook remembers it (then a follow-up read is due after the memory window).
        ``first``: the run's first take, which may use the ETag the job carries."""
        taken = await self.services.store.dirty.take(
            self.job.mailbox,
            stream_marker(self.job.stream),
            self.job.marker_etag if first else None,
        )
        if taken is not None and self.life is not None:
            skew = self.services.settings.app.clock_skew_seconds
            self.life.marker_taken(
                time.monotonic(),
                remembered=taken.remembered,
                memory_left=memory_left(taken, utcnow(), skew),
                read_follows=read_follows,
            )
        return taken is not None

    async def read_again(self, rounds: int, max_rounds: int) -> bool:
        """After delta round ``rounds``: take the marker a notification set meanwhile and say
        whether to read again (``sync.core.streams.read_again``); a marker taken after the
        last round is left to a follow-up job."""
        again = rounds < max_rounds
        taken = await self.clear_marker(read_follows=again)
        if taken:
            self.count("extra_rounds")
        return read_again(marker_taken=taken, rounds=rounds, max_rounds=max_rounds)

    async def save_cursor(
        self, stream: str, change: Callable[[Cursor], Cursor], *, at_release: bool = False
    ) -> None:
        """Apply ``change`` to the stream's cursor: under the run's lease when it holds one
        (a lost lease fails the write), else directly.

        ``at_release``: the run's last position, written together with the lease's release
        (one write instead of two; the runner applies ``at_release``).  A run cut before its
        release reads those changes again, which finds their records and creates nothing.
        A later immediate write carries it along, so a position never goes back."""
        store = self.services.store.cursors
        if self.lease is None or stream != self.lease.stream:
            await store.update(self.mailbox.id, stream, change)
            return
        pending = self.at_release
        combined = change if pending is None else _then(pending, change)
        if at_release:
            self.at_release = combined
            return
        await store.advance(self.lease, combined)
        self.at_release = None


def _then(
    first: Callable[[Cursor], Cursor], second: Callable[[Cursor], Cursor]
) -> Callable[[Cursor], Cursor]:
    return lambda c: second(first(c))


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

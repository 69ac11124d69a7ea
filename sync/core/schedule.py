"""When each mailbox's periodic work is due, decided without I/O.

Every mailbox has its own intervals (``MailboxPolicy``: reconcile, push, To Do poll) and one
stable offset, from a hash of its id: it is due at ``offset mod interval + k * interval``
seconds after the Unix epoch (UTC).  So 1,000 mailboxes on the same interval are due at 1,000
instants spread evenly over it, each always at the same point, instead of all at once.

The timers only *tick* (every minute by default).  A tick owns the window from its scheduled
time to the next one (``tick_window``), enqueues the mailboxes with a due instant in it, each
job with a queue visibility delay that makes it arrive at its own instant, and reads nothing
per mailbox to decide: due-ness is arithmetic (``due``).

One offset serves every interval, reduced modulo each: when one interval divides another (30
minutes into 2 hours, 5 minutes into 30) their due instants coincide, and the wider kind of
work covers the narrower one (a reconcile does everything a push does, and a push polls To Do),
so the narrower one is not sent then (``Cadence.covered_by``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sync.core.state_models import MailboxPolicy

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Cadence(StrEnum):
    """A kind of periodic work, widest first."""

    RECONCILE = "reconcile"  # both directions, every stream, retroactive linking
    PUSH = "push"  # Outlook -> Workbooks, every Outlook stream
    TODO_POLL = "todo_poll"  # To Do has no app-only webhooks: its Outlook -> Workbooks poll

    def interval_seconds(self, policy: MailboxPolicy) -> int:
        minutes = {
            Cadence.RECONCILE: policy.reconcile_interval_minutes,
            Cadence.PUSH: policy.push_interval_minutes,
            Cadence.TODO_POLL: policy.todo_poll_minutes,
        }[self]
        return minutes * 60

    @property
    def covered_by(self) -> tuple[Cadence, ...]:
        """The wider kinds that, due at the same instant, do this work too."""
        order = list(Cadence)
        return tuple(order[: order.index(self)])


def spread_key(mailbox_id: str) -> int:
    """A mailbox's stable 64-bit spread value (the same in every process, every release)."""
    digest = hashlib.sha256(f"schedule:{mailbox_id.strip().lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def offset_seconds(mailbox_id: str, interval_seconds: int) -> int:
    """Where in each interval the mailbox is due (0 <= offset < interval)."""
    if interval_seconds <= 0:
        raise ValueError("an interval must be positive")
    return spread_key(mailbox_id) % interval_seconds


def _epoch(t: datetime) -> float:
    return (t.astimezone(UTC) - EPOCH).total_seconds()


def due_instants(
    mailbox_id: str, interval_seconds: int, start: datetime, end: datetime
) -> list[datetime]:
    """The instants in ``[start, end)`` at which the mailbox is due on this interval."""
    offset = offset_seconds(mailbox_id, interval_seconds)
    first = -(-(_epoch(start) - offset) // interval_seconds)  # ceil, in intervals
    out: list[datetime] = []
    k = int(first)
    while True:
        at = EPOCH + timedelta(seconds=offset + k * interval_seconds)
        if at >= end:
            return out
        out.append(at)
        k += 1


def is_due_at(mailbox_id: str, interval_seconds: int, at: datetime) -> bool:
    seconds = _epoch(at)
    if seconds != int(seconds):
        return False
    return (int(seconds) - offset_seconds(mailbox_id, interval_seconds)) % interval_seconds == 0


def next_due(mailbox_id: str, interval_seconds: int, after: datetime) -> datetime:
    """The first instant strictly after ``after`` at which the mailbox is due."""
    found = due_instants(
        mailbox_id,
        interval_seconds,
        after + timedelta(seconds=1),
        after + timedelta(seconds=interval_seconds + 1),
    )
    return found[0]


@dataclass(frozen=True)
class Due:
    """One mailbox's work of one cadence, due at ``at``."""

    mailbox: str
    cadence: Cadence
    at: datetime


def due(
    mailboxes: Iterable[tuple[str, MailboxPolicy]],
    cadence: Cadence,
    start: datetime,
    end: datetime,
) -> list[Due]:
    """Each mailbox's due instants of ``cadence`` in ``[start, end)``, in time order, without
    those a wider cadence due at the same instant covers."""
    out: list[Due] = []
    for mailbox_id, policy in mailboxes:
        interval = cadence.interval_seconds(policy)
        for at in due_instants(mailbox_id, interval, start, end):
            wider = (c.interval_seconds(policy) for c in cadence.covered_by)
            if not any(is_due_at(mailbox_id, w, at) for w in wider):
                out.append(Due(mailbox_id, cadence, at))
    return sorted(out, key=lambda d: (d.at, d.mailbox))


def tick_window(schedule: str, now: datetime) -> tuple[datetime, datetime]:
    """The window a timer tick owns: from its latest scheduled time at or before ``now`` to
    the next one.  A tick that fires late still owns its own window (its jobs are sent with
    no delay); a tick that never fires leaves its window's work to the next interval."""
    from croniter import croniter  # pure computation; imported here to keep imports light

    now = now.astimezone(UTC)
    probe = croniter(schedule, now + timedelta(microseconds=1), second_at_beginning=True)
    start = probe.get_prev(datetime)
    end = croniter(schedule, start, second_at_beginning=True).get_next(datetime)
    return start.astimezone(UTC), end.astimezone(UTC)


def hold_back(
    *, busy: bool, last_success: datetime | None, interval_seconds: int, at: datetime
) -> bool:
    """Whether a stream due at ``at`` is better not sent another job now:

    * it is busy (a worker holds its lease): the run under way reads what this job would;
    * its job of the previous due instant has not finished (the queue is behind, or the
      stream is stuck): it last succeeded between two intervals and one before ``at``.

    A stream that has not succeeded for over two intervals is always sent one, so a lost job
    or a stream busy at every tick never stops it for long."""
    if last_success is None:
        return busy
    gap = (at - last_success).total_seconds()
    if gap > 2 * interval_seconds:
        return False
    return busy or gap > interval_seconds

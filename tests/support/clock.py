"""The timers' clock, set by a test: ticks enqueue only the mailboxes due in their window
(``sync.core.schedule``), so a test that fires a timer first moves its clock to the instant
the mailbox is due."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from unittest import mock

from sync.core import schedule
from sync.core.schedule import Cadence
from sync.core.state_models import MailboxPolicy


def next_tick(
    mailbox: str,
    cadence: Cadence,
    policy: MailboxPolicy | None = None,
    *,
    after: datetime | None = None,
) -> datetime:
    """The next instant at which ``cadence``'s timer queues the mailbox's jobs (a wider
    cadence due at the same instant takes it over, so those instants are skipped)."""
    policy = policy or MailboxPolicy()
    at = (after or datetime.now(UTC)).replace(microsecond=0)
    interval = cadence.interval_seconds(policy)
    for _ in range(1000):
        at = schedule.next_due(mailbox, interval, at)
        wider = (c.interval_seconds(policy) for c in cadence.covered_by)
        if not any(schedule.is_due_at(mailbox, w, at) for w in wider):
            return at
    raise AssertionError(f"{cadence} is never due on its own for {mailbox}")


@contextmanager
def timers_at(moment: datetime) -> Iterator[None]:
    """Timer functions see ``moment`` as now."""
    with mock.patch("sync.blueprints.timers.utcnow", return_value=moment):
        yield


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)

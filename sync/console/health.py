"""A mailbox's health at a glance, decided from what state already holds (pure: no I/O).

* **paused**: the mailbox is disabled;
* **failing**: a stream's latest problem since its last success is a failed run, or a stream
  that has synced before has not synced successfully for two reconciliation intervals (the
  "failing for over an hour" alert's rule, docs/operations.md);
* **brake stopped**: a two-way run stopped before writing because it would have changed or
  deleted more than the mailbox's share of items (the mass-change brake), and nothing has
  succeeded since;
* **never synced**: no sync of the mailbox's sent items (which every kind of sync runs) has
  finished yet;
* **ok**: none of these.

The order above is the order of precedence.  The console's list page and the mailbox page
both call ``classify`` with what they read, so a mailbox shows the same health everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from croniter import croniter

from sync.core.state_models import JobStatus, RunRecord

SENT = "sent"
# Streams whose successful runs set the cursor's last success (sync.engine.emails, .twoway).
TIMED_STREAMS = ("sent", "contacts", "events", "todo")
STREAM_ORDER = ("sent", "contacts", "events", "todo", "people", "subscriptions")
STREAM_LABELS = {
    "sent": "Sent emails",
    "contacts": "Contacts",
    "events": "Calendar",
    "todo": "To Do tasks",
    "people": "Workbooks People",
    "subscriptions": "Change notifications",
}
MIN_STALE = timedelta(hours=1)


class Health(StrEnum):
    OK = "ok"
    FAILING = "failing"
    PAUSED = "paused"
    NEVER = "never synced"
    BRAKE = "brake stopped"

    @property
    def severity(self) -> int:
        """Sort order of the list page: what needs a person first."""
        return [Health.FAILING, Health.BRAKE, Health.NEVER, Health.PAUSED, Health.OK].index(self)


@dataclass(frozen=True)
class StreamState:
    stream: str
    last_success_at: datetime | None = None
    leased: bool = False  # a worker is running it now
    resync_requested: bool = False
    problem: RunRecord | None = None  # the latest failure or brake stop since the last success
    stale: bool = False

    @property
    def label(self) -> str:
        return STREAM_LABELS.get(self.stream, self.stream)

    @property
    def failing(self) -> bool:
        return self.stale or (self.problem is not None and self.problem.status == "failed")

    @property
    def braked(self) -> bool:
        return self.problem is not None and is_brake(self.problem)


def is_brake(run: RunRecord) -> bool:
    return run.status == "stopped" and bool(run.counts.get("brake_stopped"))


def is_problem(run: RunRecord) -> bool:
    """A run worth showing as the stream's last error: failed, or stopped by the brake."""
    return run.status == "failed" or is_brake(run)


def latest_problem(runs: Iterable[RunRecord], last_success: datetime | None) -> RunRecord | None:
    """The newest failed or brake-stopped run that started after the stream's last success."""
    newest: RunRecord | None = None
    for run in runs:
        if not is_problem(run):
            continue
        if last_success is not None and run.started_at <= last_success:
            continue
        if newest is None or run.started_at > newest.started_at:
            newest = run
    return newest


def stale_after(reconcile_schedule: str) -> timedelta:
    """Two reconciliation intervals (the longest gap of the schedule), at least an hour."""
    try:
        it = croniter(reconcile_schedule, datetime(2026, 1, 5), second_at_beginning=True)
        times: list[datetime] = [it.get_next(datetime) for _ in range(50)]
    except (ValueError, KeyError):
        return MIN_STALE
    gap = max(b - a for a, b in itertools.pairwise(times))
    return max(2 * gap, MIN_STALE)


def stream_state(
    stream: str,
    *,
    last_success_at: datetime | None,
    lease_until: datetime | None,
    resync_requested: bool,
    runs: Iterable[RunRecord],
    now: datetime,
    stale: timedelta,
) -> StreamState:
    return StreamState(
        stream=stream,
        last_success_at=last_success_at,
        leased=lease_until is not None and lease_until > now,
        resync_requested=resync_requested,
        problem=latest_problem(runs, last_success_at),
        stale=last_success_at is not None and now - last_success_at > stale,
    )


class Registered(Protocol):
    """What health needs of a mailbox: the full record or the list's few columns."""

    @property
    def enabled(self) -> bool: ...


def classify(mailbox: Registered, streams: Mapping[str, StreamState]) -> Health:
    if not mailbox.enabled:
        return Health.PAUSED
    if any(s.failing for s in streams.values()):
        return Health.FAILING
    if any(s.braked for s in streams.values()):
        return Health.BRAKE
    sent = streams.get(SENT)
    if sent is None or sent.last_success_at is None:
        return Health.NEVER
    return Health.OK


def ordered(streams: Mapping[str, StreamState]) -> list[StreamState]:
    rank = {name: i for i, name in enumerate(STREAM_ORDER)}
    return sorted(streams.values(), key=lambda s: (rank.get(s.stream, 99), s.stream))


def active_job(jobs: Iterable[JobStatus], mailbox: str) -> JobStatus | None:
    """The newest manual sync of the mailbox that has not finished."""
    live = [j for j in jobs if j.mailbox == mailbox and j.state in ("queued", "running")]
    return max(live, key=lambda j: j.requested_at, default=None)

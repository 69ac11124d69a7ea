"""A mailbox's health at a glance, decided from what state already holds (pure: no I/O).

* **paused**: the mailbox is disabled;
* **failing**: a stream's health row says failing, as ``status`` and the "failing for over an
  hour" alert count it (a failed run, or one retried for an outage or throttling, and no
  success since: ``sync.core.health``), or its latest problem since its last success is a
  failed run, or a stream that has synced before has not synced successfully for two
  reconciliations (the timer's or, when longer, the mailbox's own interval);
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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sync.core.health import StreamHealth, is_stale
from sync.core.state_models import JobStatus, RunRecord

SENT = "sent"
STREAM_ORDER = ("sent", "contacts", "events", "todo", "people", "subscriptions")
STREAM_LABELS = {
    "sent": "Sent emails",
    "contacts": "Contacts",
    "events": "Calendar",
    "todo": "To Do tasks",
    "people": "Workbooks People",
    "subscriptions": "Change notifications",
}


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
    # From the stream's health row (sync.core.health), as ``status`` shows it: failing since
    # when (a failed run, or one retried for an outage or throttling), and the last error.
    failing_since: datetime | None = None
    error: str = ""

    @property
    def label(self) -> str:
        return STREAM_LABELS.get(self.stream, self.stream)

    @property
    def failing(self) -> bool:
        return (
            self.stale
            or self.failing_since is not None
            or (self.problem is not None and self.problem.status == "failed")
        )

    @property
    def braked(self) -> bool:
        return self.problem is not None and is_brake(self.problem)

    @property
    def message(self) -> str:
        """What went wrong last: the problem run's message, else the health row's error."""
        return self.problem.message if self.problem is not None else self.error


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


def stream_state(
    stream: str,
    *,
    last_success_at: datetime | None,
    lease_until: datetime | None,
    resync_requested: bool,
    runs: Iterable[RunRecord],
    now: datetime,
    stale: timedelta,
    health: StreamHealth | None = None,
) -> StreamState:
    """``health``: the stream's health row when it says failing (the list reads only those)."""
    if health is not None and health.last_success_at is not None:
        last_success_at = max(last_success_at or health.last_success_at, health.last_success_at)
    failing = health is not None and health.failing
    return StreamState(
        stream=stream,
        last_success_at=last_success_at,
        leased=lease_until is not None and lease_until > now,
        resync_requested=resync_requested,
        problem=latest_problem(runs, last_success_at),
        stale=is_stale(stream, last_success_at, now, stale),
        failing_since=health.failing_since if failing and health else None,
        error=health.last_error if failing and health else "",
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

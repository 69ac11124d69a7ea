"""The health of one (mailbox, stream), as its runs leave it (pure).

Every recorded run updates one small row per (mailbox, stream) (``sync.state.health``): its last
run, its last success and its last error, and since when it has been failing.  ``status`` reads
them all in one query, whatever the number of mailboxes, and flags the failing ones; every
stream has a last success there, including those whose processor keeps no cursor health of its
own (``people``).

A run *fails* when it ends ``failed``, or ``retry`` for a reason other than a busy stream (a
throttled or unreachable service, a resync the delta asked for): a stream that keeps being
retried for an outage is failing too, as the failing-mailbox alert counts it.  A run that ends
``ok`` or ``stopped`` (the mass-change brake, a lost lease) ends the failure; ``skipped`` runs
and busy-stream re-sends change nothing but the last run.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from croniter import croniter
from pydantic import BaseModel, Field

from sync.core.state_models import RunRecord

BUSY_PREFIX = "stream busy"
MESSAGE_CHARS = 500
# Streams whose successful runs set the cursor's last success (sync.engine.emails, .twoway) and
# that every reconciliation runs, so a last success older than two reconciliations is overdue.
TIMED_STREAMS = ("sent", "contacts", "events", "todo")
MIN_STALE = timedelta(hours=1)


class StreamHealth(BaseModel):
    mailbox: str
    stream: str
    last_run_at: datetime | None = None
    last_run_id: str = ""
    last_job_id: str = ""
    last_kind: str = ""
    last_status: str = ""
    last_message: str = ""
    last_counts: dict[str, int] = Field(default_factory=dict)
    last_success_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    failing_since: datetime | None = None
    consecutive_failures: int = 0
    # Two-way streams: items left ambiguous or duplicate and removals remembered, as of the
    # last run (None: not a two-way stream, or not counted yet).
    identity: dict[str, int] | None = None

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


def is_failure(run: RunRecord) -> bool:
    if run.status == "failed":
        return True
    return run.status == "retry" and not run.message.startswith(BUSY_PREFIX)


def after_run(
    previous: StreamHealth | None, run: RunRecord, identity: dict[str, int] | None = None
) -> StreamHealth:
    """The health once ``run`` has been recorded."""
    base = previous or StreamHealth(mailbox=run.mailbox, stream=run.stream)
    at = run.finished_at or run.started_at
    update: dict[str, object] = {
        "last_run_at": at,
        "last_run_id": run.run_id,
        "last_job_id": run.job_id,
        "last_kind": run.kind,
        "last_status": run.status,
        "last_message": run.message[:MESSAGE_CHARS],
        "last_counts": dict(run.counts),
    }
    if identity is not None:
        update["identity"] = dict(identity)
    if run.status in ("ok", "stopped"):
        update.update(last_success_at=at, failing_since=None, consecutive_failures=0)
    elif is_failure(run):
        update.update(
            last_error=(run.message or run.status)[:MESSAGE_CHARS],
            last_error_at=at,
            failing_since=base.failing_since or at,
            consecutive_failures=base.consecutive_failures + 1,
        )
    return base.model_copy(update=update)


def stale_after(reconcile_schedule: str, interval_minutes: int | None = None) -> timedelta:
    """How old a timed stream's last success may get before it counts as failing: two
    reconciliations, at least an hour.  A reconciliation comes at the timer's longest gap
    (``SYNC_RECONCILE_SCHEDULE``) or, when longer, the mailbox's own interval (its policy's
    ``reconcile_interval_minutes``): a mailbox reconciled every 4 hours is not failing two
    hours after its last run."""
    try:
        it = croniter(reconcile_schedule, datetime(2026, 1, 5), second_at_beginning=True)
        times: list[datetime] = [it.get_next(datetime) for _ in range(50)]
        gap = max(b - a for a, b in itertools.pairwise(times))
    except (ValueError, KeyError):
        gap = timedelta(0)
    return stale_for(max(2 * gap, MIN_STALE), interval_minutes)


def stale_for(timer: timedelta, interval_minutes: int | None) -> timedelta:
    """``stale_after`` from the timer's part, worked out once (``stale_after(schedule)``), and
    one mailbox's interval."""
    return max(timer, timedelta(minutes=2 * (interval_minutes or 0)))


def is_stale(
    stream: str, last_success_at: datetime | None, now: datetime, stale: timedelta
) -> bool:
    """A timed stream that has synced before and not since ``stale`` ago (never synced is not
    stale: it is new)."""
    return stream in TIMED_STREAMS and last_success_at is not None and now - last_success_at > stale

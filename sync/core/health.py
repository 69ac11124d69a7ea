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

from datetime import datetime

from pydantic import BaseModel, Field

from sync.core.state_models import RunRecord

BUSY_PREFIX = "stream busy"
MESSAGE_CHARS = 500


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

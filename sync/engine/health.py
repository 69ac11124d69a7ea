"""What a finished run leaves besides its run record: its stream's health row (``status``) and
its metrics (``sync.telemetry``).  Neither may fail the job: a run that synced is not retried
because its bookkeeping could not be written (the next run writes it again)."""

from __future__ import annotations

import asyncio
import logging

from sync.core.jobs import Job, Stream
from sync.core.state_models import RunRecord, utcnow
from sync.logs import RateLimitedLog
from sync.runtime import Services
from sync.telemetry import RunOutcome, exporting, record_depths, record_failing, record_run

log = logging.getLogger("sync.engine")
PROBLEMS = RateLimitedLog(log)
TWO_WAY: tuple[str, ...] = (Stream.CONTACTS, Stream.EVENTS, Stream.TODO)


async def record_outcome(services: Services, job: Job, run: RunRecord) -> None:
    finished = run.finished_at or utcnow()
    record_run(
        RunOutcome(
            stream=str(run.stream),
            kind=str(run.kind),
            status=run.status,
            counts=run.counts,
            reason=job.reason,
            queued_seconds=(finished - job.enqueued_at).total_seconds(),
        )
    )
    if run.stream == Stream.ALL or (run.status == "skipped" and "not registered" in run.message):
        return  # a manual job's fan-out is not a stream; a removed mailbox keeps no health
    try:
        identity = run.identity_counts
        if identity is None and run.stream in TWO_WAY:  # a run that did not get that far
            identity = await services.store.identity.counts(run.mailbox, run.stream)
        await services.store.health.record(run, identity)
    except Exception as exc:
        PROBLEMS.failure("stream health not recorded; the next run records it", exc)


async def observe(services: Services) -> bool:
    """Queue and poison depth and the failing streams, as metrics (three cheap reads), when
    metrics are exported; True if it read them."""
    if not exporting():
        return False
    depth, poison, failing = await asyncio.gather(
        services.queue.depth(), services.queue.poison_depth(), services.store.health.failing_count()
    )
    record_depths(services.queue.name, depth, poison)
    record_failing(failing)
    return True

"""The queue-triggered worker: every job runs through the engine.

Each job that runs writes one line, ``job <id> <mailbox>/<stream> <kind>: <status> <counts>``
(the failing-mailbox alert reads it; a stream re-queued with back-off writes one per retry;
``<mailbox>`` is hashed under ``SYNC_LOG_MAILBOX=hash``).  Every record written while the job
runs carries its job id, run id, mailbox, stream and kind (``sync.telemetry``).  A
job that meets an outage (storage, Graph or Workbooks unreachable) writes no such line: it is
raised to the host as ``JobDeferred``, without the dozens of frames of the outage's own stack
(the host logs the failed invocation and retries the message either way; a traceback is kept
for errors nobody expected), and the service logs the outage once a minute with a count
(``sync.logs``).
"""

from __future__ import annotations

import logging

import azure.functions as func

from sync.core.jobs import JobDecodeError, decode_job
from sync.engine import processors
from sync.engine.runner import run_job
from sync.logs import RateLimitedLog, describe, expected_failure
from sync.runtime import get_services
from sync.telemetry import bind, mailbox_label

bp = func.Blueprint()
processors.load()
log = logging.getLogger("sync.worker")
OUTCOMES = RateLimitedLog(log)
DEFERRED = "worker: a service is unavailable; jobs left on the queue for the host to retry"


class JobDeferred(RuntimeError):
    """The job met an outage; the host retries its message."""


@bp.function_name("sync_worker")
@bp.queue_trigger(arg_name="msg", queue_name="%SYNC_JOBS_QUEUE%", connection="AzureWebJobsStorage")
async def sync_worker(msg: func.QueueMessage) -> None:
    try:
        job = decode_job(msg.get_body())
    except JobDecodeError as exc:
        # Retrying cannot fix a malformed message: raise so the host poisons it after its
        # retries, where the status output shows it to an operator.
        log.error("malformed job message %s: %s", msg.id, exc)
        raise
    dequeue_count = int(getattr(msg, "dequeue_count", 1) or 1)
    what = f"job {job.job_id} {mailbox_label(job.mailbox)}/{job.stream} {job.kind}"
    fields = {"job_id": job.job_id, "mailbox": job.mailbox, "stream": str(job.stream)}
    with bind(**fields, kind=str(job.kind)):
        try:
            run = await run_job(await get_services(), job, dequeue_count=dequeue_count)
        except Exception as exc:
            if not expected_failure(exc):
                raise
            OUTCOMES.warning(DEFERRED, f"{what}: {describe(exc)}")
            raise JobDeferred(f"{what}: {describe(exc)}") from None
        with bind(run_id=run.run_id):
            log.info("%s: %s %s", what, run.status, run.counts)

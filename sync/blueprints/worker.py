"""The queue-triggered worker: every job runs through the engine."""

from __future__ import annotations

import logging

import azure.functions as func

from sync.core.jobs import JobDecodeError, decode_job
from sync.engine import processors
from sync.engine.runner import run_job
from sync.runtime import get_services

bp = func.Blueprint()
processors.load()
log = logging.getLogger("sync.worker")


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
    run = await run_job(await get_services(), job, dequeue_count=dequeue_count)
    log.info(
        "job %s %s/%s %s: %s %s",
        job.job_id,
        job.mailbox,
        job.stream,
        job.kind,
        run.status,
        run.counts,
    )

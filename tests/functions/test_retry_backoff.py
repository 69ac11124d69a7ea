"""The runner's re-queue of ``RetryLater``: back-off with full jitter that grows with the job's
attempt count, the server's ``Retry-After`` first, and streams that fail together come back at
spread-out times (before: every job 60 s later, all in the same second)."""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from sync.blueprints import worker
from sync.core.errors import RetryLater
from sync.core.jobs import Job, JobKind, Stream, decode_job, encode_job
from sync.core.state_models import Mailbox, utcnow
from sync.engine import registry, runner
from sync.engine.registry import RunContext
from tests.functions.helpers import user_function

STREAMS = 24


class SentJobs:
    """Records what the runner re-queues (the real queue still gets every message)."""

    def __init__(self, services: Any) -> None:
        self.sent: list[tuple[Job, int]] = []
        self._send = services.queue.send
        services.queue.send = self.send

    async def send(self, job: Job, delay_seconds: int = 0) -> Any:
        self.sent.append((job, delay_seconds))
        return await self._send(job, delay_seconds=delay_seconds)

    def delays(self) -> list[int]:
        return [delay for _, delay in self.sent]


async def _mailboxes(services: Any, count: int) -> list[str]:
    names = [f"user{i:02d}@example.com" for i in range(count)]
    for name in names:
        await services.store.mailboxes.put(
            Mailbox(id=name, workbooks_url="https://secure.workbooks.com", api_key_ref="env:K")
        )
    return names


def _failing(monkeypatch: pytest.MonkeyPatch, error: RetryLater) -> None:
    async def processor(ctx: RunContext) -> None:
        raise error

    monkeypatch.setitem(registry._PROCESSORS, (Stream.EVENTS, JobKind.DIRTY), processor)


async def _run_all(services: Any, mailboxes: list[str], attempt: int) -> None:
    for mailbox in mailboxes:
        job = Job(mailbox=mailbox, stream=Stream.EVENTS, kind=JobKind.DIRTY, attempt=attempt)
        run = await runner.run_job(services, job)
        assert run.status == "retry" and f"retry {attempt + 1} in " in run.message


async def test_streams_failing_at_once_are_requeued_at_spread_out_times(
    services: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    services.settings.app.webhook_memo_seconds = 0
    runner.RETRIES.reset()
    caplog.set_level(logging.INFO, "sync.engine")
    _failing(monkeypatch, RetryLater("Graph answered 503", source="graph", detail="503 : busy"))
    mailboxes = await _mailboxes(services, STREAMS)
    sent = SentJobs(services)
    await _run_all(services, mailboxes, attempt=3)  # the 4th try: ceiling 5 s * 2**3 = 40 s
    delays = sent.delays()
    assert len(delays) == STREAMS
    assert all(1 <= d <= 40 for d in delays)
    assert len(set(delays)) >= 10 and max(delays) - min(delays) >= 15, delays
    assert {job.attempt for job, _ in sent.sent} == {4}
    assert sorted(job.mailbox for job, _ in sent.sent) == mailboxes
    # One warning for the lot, not one per stream.
    lines = [r for r in caplog.records if r.name == "sync.engine" and "retry later" in r.message]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and not lines[0].exc_info


async def test_backoff_grows_per_attempt_and_stops_at_the_cap(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.settings.app.webhook_memo_seconds = 0
    _failing(monkeypatch, RetryLater("Workbooks: HTTP 502", source="workbooks"))
    mailboxes = await _mailboxes(services, STREAMS)
    sent = SentJobs(services)
    await _run_all(services, mailboxes, attempt=0)
    first = sent.delays()
    assert max(first) <= 5  # attempt 1: within the base (5 s)
    sent.sent.clear()
    await _run_all(services, mailboxes, attempt=20)
    late = sent.delays()
    assert max(late) <= 90  # the cap (SYNC_RETRY_CAP_SECONDS)
    assert max(late) > 45 and sum(late) / len(late) > 2 * sum(first) / len(first)


async def test_retry_after_takes_precedence_with_a_small_spread(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.settings.app.webhook_memo_seconds = 0
    retry_at = utcnow() + timedelta(seconds=30)
    _failing(monkeypatch, RetryLater("Graph answered 429", retry_at=retry_at, source="graph"))
    mailboxes = await _mailboxes(services, 12)
    sent = SentJobs(services)
    await _run_all(services, mailboxes, attempt=6)
    delays = sent.delays()
    # Never before the server's time, at most 10 % after it (and 1 s of rounding up).
    assert all(29 <= d <= 34 for d in delays), delays
    assert len(set(delays)) > 1  # not all in the same second


async def test_a_retried_job_still_writes_the_line_the_mailbox_alert_reads(
    services: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The per-job line is a record of the run, not an error line: it stays, one per retry."""
    services.settings.app.webhook_memo_seconds = 0
    _failing(monkeypatch, RetryLater("Graph answered 503", source="graph"))
    (mailbox,) = await _mailboxes(services, 1)
    job = Job(mailbox=mailbox, stream=Stream.EVENTS, kind=JobKind.DIRTY)
    message = QueueMessage(id="m", body=base64.b64decode(encode_job(job)), dequeue_count=1)
    caplog.set_level(logging.INFO, "sync.worker")
    for _ in range(3):
        await user_function(worker.sync_worker)(message)
    lines = [r.getMessage() for r in caplog.records if r.name == "sync.worker"]
    assert lines == [f"job {job.job_id} {mailbox}/events dirty: retry {{}}"] * 3


def test_the_attempt_count_travels_with_the_job() -> None:
    job = Job(mailbox="ann@example.com", stream=Stream.SENT, kind=JobKind.DIRTY)
    assert job.attempt == 0
    again = decode_job(encode_job(job.model_copy(update={"attempt": 7})))
    assert again.attempt == 7 and again.job_id == job.job_id
    # Messages written before the field existed still decode, as first attempts.
    legacy = job.model_dump(mode="json")
    legacy.pop("attempt")
    assert decode_job(json.dumps(legacy)).attempt == 0

"""A 30 s storage outage under traffic writes one line per cause, with a count, and no traceback.

The app runs on the local host as usual; then its storage goes away: the services' table and
queue clients are rebuilt (with the app's own builders, so with its retry policy) against a
port where nothing listens, and for ``OUTAGE_SECONDS`` notifications keep arriving over HTTP,
queued jobs keep being delivered to the worker and a timer fires.  Before, each failed request
wrote an ERROR with a traceback (a 30 s outage: 1,680 ERROR lines, 5,055 traceback lines); now
the service's loggers write at most one line per cause per minute.  The failed invocations of
the worker and the timer are the host's to report ("Executed ... (Failed)", as the Functions
host does), and are not the service's lines.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
from azure.functions.queue import QueueMessage

from devkit.azurite import ACCOUNT, ACCOUNT_KEY
from devkit.host.localhost import LocalHost
from sync import webhook
from sync.blueprints import timers, worker
from sync.core.jobs import Job, JobKind, Stream, encode_job
from sync.engine import runner
from tests.functions.helpers import notification, register, use_storage, user_function
from tests.support.local import free_port

OUTAGE_SECONDS = 30.0
RATE = 20.0  # notifications per second, Graph retrying on top of new changes


class ServiceLines(logging.Handler):
    """Every record of the service's own loggers (``sync.*``) at WARNING or above."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("sync") and record.levelno >= logging.WARNING:
            self.records.append(record)


def _unreachable() -> str:
    """A connection string to storage that refuses every connection."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={endpoint};QueueEndpoint={endpoint};TableEndpoint={endpoint};"
    )


async def _notifications(
    base_url: str, stop: asyncio.Event, durations: list[float] | None = None
) -> Counter[int]:
    statuses: Counter[int] = Counter()
    body = json.dumps({"value": [notification("sub-1", "secret-1")]}).encode()
    headers = {"Content-Type": "application/json"}
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def one() -> None:
            started = time.monotonic()
            async with http.post(
                f"{base_url}/api/graph/notifications", data=body, headers=headers
            ) as resp:
                statuses[resp.status] += 1
            if durations is not None:
                durations.append(time.monotonic() - started)

        sent, start = 0, time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / RATE - time.monotonic()))
        await asyncio.gather(*tasks)
    return statuses


async def _jobs(stop: asyncio.Event) -> int:
    """Jobs the host received just before the outage, delivered to the worker meanwhile."""
    failed = 0
    sync_worker = user_function(worker.sync_worker)
    while not stop.is_set():
        job = Job(mailbox="ann@example.com", stream=Stream.EVENTS, kind=JobKind.DIRTY)
        message = QueueMessage(id="m", body=base64.b64decode(encode_job(job)), dequeue_count=1)
        # The host logs the failure and retries the message; what it gets is short.
        with pytest.raises(worker.JobDeferred, match="ServiceRequestError"):
            await sync_worker(message)
        failed += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)
    return failed


@pytest.mark.timeout(180)
async def test_a_30_s_storage_outage_writes_one_line_per_cause(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every intake meets the outage's retries and is answered at the deadline: at the default
    # 2.5 s a reply is 0.4 s from Graph's 2.9 s, which a loaded 2-core machine sometimes took.
    monkeypatch.setattr(services.settings.app, "webhook_deadline_seconds", 1.5)
    await register(services, "ann@example.com", "sub-1", "secret-1")
    for limited in (webhook.LOG, runner.RETRIES, worker.OUTCOMES, timers.OUTCOMES):
        limited.reset()
    lines = ServiceLines()
    logging.getLogger("sync").addHandler(lines)
    failures_before, late_before = webhook.STATS.failures, webhook.STATS.late
    durations: list[float] = []
    restore = None
    try:
        async with LocalHost("function_app", timers=False, queues=False) as host:
            restore = use_storage(services, _unreachable())
            stop = asyncio.Event()
            traffic = asyncio.create_task(_notifications(host.base_url, stop, durations))
            jobs = asyncio.create_task(_jobs(stop))
            timer = asyncio.create_task(host.fire_timer("push_timer"))  # fails: no storage
            await asyncio.sleep(OUTAGE_SECONDS)
            stop.set()
            statuses = await traffic
            failed_jobs = await jobs
            with pytest.raises(timers.FanOutDeferred, match="push timer"):
                await timer
        # Intakes answered 503 at the webhook's deadline go on until storage fails them too.
        await asyncio.wait_for(asyncio.gather(*webhook._LATE, return_exceptions=True), 120)
        during = list(lines.records)
        webhook.LOG.flush()  # the summary the next window would write
    finally:
        logging.getLogger("sync").removeHandler(lines)
        if restore is not None:
            await restore()
    failures = webhook.STATS.failures - failures_before
    late = webhook.STATS.late - late_before
    assert statuses[503] == failures >= 200  # the outage really hit every request
    assert set(statuses) == {503}
    # Graph counts a reply after 2.9 s as slow: none was (the SDKs' retries are not waited for)
    assert max(durations) < 2.9
    assert failed_jobs >= 3
    causes = Counter(r.getMessage().split(" (", 1)[0] for r in during)
    expected = Counter({webhook.UNAVAILABLE: 1, worker.DEFERRED: 1, timers.DEFERRED: 1})
    expected += Counter({webhook.LATE: 1}) if late else Counter()
    assert causes == expected, [r.getMessage() for r in during]
    assert all(r.exc_info is None for r in during)  # an outage is not a bug: no traceback
    summary = lines.records[-1].getMessage()
    assert summary.startswith(f"{webhook.UNAVAILABLE}: {failures - 1} more occurrence(s)")

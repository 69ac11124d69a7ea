"""Each stream job runs with its share of the Workbooks identity's in-flight limit, so the
instances running one mailbox's jobs never exceed it together (docs/limits-and-cost.md)."""

from __future__ import annotations

from typing import Any

import pytest

from sync.core.jobs import Job, JobKind, Stream
from sync.core.state_models import Mailbox, MailboxPolicy
from sync.engine import registry, runner
from sync.engine.registry import RunContext
from sync.workbooks import client as wb_client


async def _run_with_share(services: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    await services.store.mailboxes.put(
        Mailbox(
            id="ann@example.com",
            workbooks_url="https://secure.workbooks.com",
            api_key_ref="env:K",
            policy=MailboxPolicy(),
        )
    )
    shares: list[int] = []

    async def processor(ctx: RunContext) -> None:
        gate = wb_client._JOB_SLOTS.get()
        assert gate is not None
        shares.append(gate._value)

    monkeypatch.setitem(registry._PROCESSORS, (Stream.CONTACTS, JobKind.RECONCILE), processor)
    job = Job(mailbox="ann@example.com", stream=Stream.CONTACTS, kind=JobKind.RECONCILE)
    run = await runner.run_job(services, job)
    assert run.status == "ok", run
    assert wb_client._JOB_SLOTS.get() is None  # the share ends with the job
    return shares


async def test_a_stream_job_gets_a_fifth_of_the_limit(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # five streams of a mailbox, one job each at a time: 5 x 1 never exceeds the limit of 5
    assert len(runner.RECONCILE_STREAMS) == 5
    assert await _run_with_share(services, monkeypatch) == [1]


async def test_without_the_split_a_job_may_use_the_whole_limit(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.settings.workbooks, "split_concurrency", False)
    assert await _run_with_share(services, monkeypatch) == [5]

"""``status``: failing mailboxes flagged, each stream's last success and last error (``people``
included), and a fixed number of storage reads whatever the number of mailboxes."""

from __future__ import annotations

from typing import Any

import pytest
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from sync.core.errors import ReauthRequired, RetryLater
from sync.core.jobs import Job, JobKind, Stream
from sync.core.state_models import Cursor, Mailbox, RunRecord
from sync.engine import registry
from sync.engine.registry import RunContext
from sync.engine.runner import run_job
from sync.status import render_status, status_report

ANN = "ann@example.com"


def _mailbox(address: str) -> Mailbox:
    return Mailbox(id=address, workbooks_url="https://secure.workbooks.com", api_key_ref="env:K")


async def test_people_shows_its_last_success_and_a_failing_stream_is_flagged(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await services.store.mailboxes.put(_mailbox(ANN))
    services.settings.app.webhook_memo_seconds = 0
    outcome: dict[str, Exception | None] = {"people": None}

    async def processor(ctx: RunContext) -> None:
        if outcome["people"] is not None:
            raise outcome["people"]
        ctx.count("workbooks_changes", 2)

    monkeypatch.setitem(registry._PROCESSORS, (Stream.PEOPLE, JobKind.RECONCILE), processor)
    job = Job(mailbox=ANN, stream=Stream.PEOPLE, kind=JobKind.RECONCILE)
    ok = await run_job(services, job)
    assert ok.status == "ok"

    report = await status_report(services)
    [mb] = report["mailboxes"]
    streams = {s["stream"]: s for s in mb["streams"]}
    assert streams["people"]["last_success_at"] == ok.finished_at.isoformat()  # type: ignore[union-attr]
    assert not mb["failing"] and report["failing_mailboxes"] == []
    assert mb["recent_runs"][0]["run_id"] == ok.run_id

    outcome["people"] = ReauthRequired("Workbooks answered 401: key revoked", source="workbooks")
    failed = await run_job(services, job)
    outcome["people"] = RetryLater("Workbooks answered 503", source="workbooks")
    await run_job(services, job)
    report = await status_report(services)
    [mb] = report["mailboxes"]
    people = {s["stream"]: s for s in mb["streams"]}["people"]
    assert mb["failing"] and report["failing_mailboxes"] == [ANN]
    assert people["failing"] and people["consecutive_failures"] == 2
    assert people["failing_since"] == failed.finished_at.isoformat()  # type: ignore[union-attr]
    assert people["last_success_at"] == ok.finished_at.isoformat()  # type: ignore[union-attr]
    assert "503" in people["last_error"]
    text = "\n".join(render_status(report))
    assert f"1 mailbox(es) failing: {ANN}" in text and "FAILING since" in text
    assert "last error at" in text and "503" in text

    outcome["people"] = None
    await run_job(services, job)
    report = await status_report(services)
    [mb] = report["mailboxes"]
    people = {s["stream"]: s for s in mb["streams"]}["people"]
    assert not mb["failing"] and not people["failing"] and people["consecutive_failures"] == 0
    assert "503" in people["last_error"]  # the last error stays visible, with its time


class Calls:
    def __init__(self) -> None:
        self.tables = 0
        self.queues = 0


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Counts every table read (a query, a listing, a point read) and queue call made."""
    calls = Calls()
    for name in ("query_entities", "list_entities", "get_entity"):
        original = getattr(TableClient, name)

        def wrapper(self: Any, *args: Any, __o: Any = original, **kwargs: Any) -> Any:
            calls.tables += 1
            return __o(self, *args, **kwargs)

        monkeypatch.setattr(TableClient, name, wrapper)
    original_props = QueueClient.get_queue_properties

    async def props(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.queues += 1
        return await original_props(self, *args, **kwargs)

    monkeypatch.setattr(QueueClient, "get_queue_properties", props)
    return calls


async def _fleet(services: Any, n: int, start: int) -> None:
    store = services.store
    for i in range(start, start + n):
        address = f"user{i}@example.com"
        await store.mailboxes.put(_mailbox(address))
        await store.cursors.update(address, "contacts", lambda c: c)
        for stream, status in (("contacts", "ok"), ("people", "failed" if i % 2 else "ok")):
            run = RunRecord(mailbox=address, stream=stream, job_id=f"j{i}", kind="reconcile")
            run.status = status  # type: ignore[assignment]
            await store.runs.put(run)
            await store.health.record(run, {"ambiguous": 0, "duplicate": 0, "removed": 0})


async def test_status_costs_the_same_reads_for_one_mailbox_and_for_fifty(
    services: Any, counted: Calls
) -> None:
    await _fleet(services, 1, 0)
    counted.tables = counted.queues = 0
    one = await status_report(services)
    reads_one = (counted.tables, counted.queues)

    await _fleet(services, 49, 1)
    counted.tables = counted.queues = 0
    fifty = await status_report(services)
    reads_fifty = (counted.tables, counted.queues)

    assert len(one["mailboxes"]) == 1 and len(fifty["mailboxes"]) == 50
    assert reads_one == reads_fifty
    assert reads_fifty[0] <= 5 and reads_fifty[1] <= 2
    assert len(fifty["failing_mailboxes"]) == 25
    mb = next(m for m in fifty["mailboxes"] if m["id"] == "user3@example.com")
    assert {s["stream"] for s in mb["streams"]} == {"contacts", "people"}
    assert mb["two_way_items"] == {"contacts": {"ambiguous": 0, "duplicate": 0, "removed": 0}}


async def test_cursor_columns_come_without_the_delta_links(services: Any) -> None:
    """The fleet-wide cursor read selects the status columns only (a delta link can be tens of
    kilobytes per stream)."""
    long_link = "https://graph.microsoft.com/v1.0/delta?$deltatoken=" + "x" * 40_000

    def with_link(c: Cursor) -> Cursor:
        return c.model_copy(update={"delta_link": long_link, "resync_requested": True})

    await services.store.cursors.update(ANN, "sent", with_link)
    rows = [
        row
        async for row in services.store.health._cursors.client.list_entities(
            select=["RowKey", "resync_requested"]
        )
    ]
    assert rows and all("delta_link" not in row for row in rows)
    [flags] = await services.store.health.cursor_flags()
    assert flags.mailbox == ANN and flags.stream == "sent" and flags.resync_requested


async def test_a_removed_mailbox_leaves_no_health_behind(services: Any) -> None:
    await _fleet(services, 2, 0)  # user1's people stream fails
    health = services.store.health
    assert await health.failing_count() == 1
    assert len(await health.for_mailbox("user1@example.com")) == 2
    assert await health.forget("user1@example.com") == 2
    assert await health.for_mailbox("user1@example.com") == []
    assert await health.failing_count() == 0
    assert len(await health.for_mailbox("user0@example.com")) == 2

    # A job for a mailbox that is not registered (any more) writes no health row either.
    run = await run_job(
        services, Job(mailbox="gone@example.com", stream=Stream.SENT, kind=JobKind.DIRTY)
    )
    assert run.status == "skipped"
    assert await health.for_mailbox("gone@example.com") == []

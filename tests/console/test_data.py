"""The list page reads a fixed number of storage queries whatever the number of mailboxes,
and decides each mailbox's health from what the engine stored."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from azure.data.tables import UpdateMode

from sync.console.data import (
    Reads,
    conflicts_in,
    fill_page,
    list_snapshot,
    mailbox_detail,
    select,
)
from sync.console.health import Health
from sync.core.keys import encode_key
from sync.core.state_models import JobStatus, Mailbox, RunRecord, utcnow

# mailboxes, problem runs, sent cursors, overdue or held cursors, jobs, queue depth, poison depth,
# failing health rows
LIST_QUERIES = 8


async def _mailboxes(services: Any, n: int, tag: str) -> list[str]:
    ids = [f"m{i:03d}.{tag}@contoso.example" for i in range(n)]
    for upn in ids:
        await services.store.mailboxes.put(
            Mailbox(id=upn, workbooks_url="https://wb.example", api_key_ref="env:K")
        )
        await services.store.cursors.update(
            upn, "sent", lambda c: c.model_copy(update={"last_success_at": utcnow()})
        )
    return ids


async def _fail(services: Any, upns: list[str], streams: tuple[str, ...]) -> None:
    for upn in upns:
        for stream in streams:
            await services.store.runs.put(
                RunRecord(
                    mailbox=upn,
                    stream=stream,
                    job_id=uuid.uuid4().hex,
                    kind="reconcile",
                    status="failed",
                    message="boom",
                )
            )


async def test_the_list_costs_the_same_queries_for_few_or_many_mailboxes(services: Any) -> None:
    await _mailboxes(services, 3, "few")
    few = await list_snapshot(services)
    assert few.reads is not None and few.reads.queries == LIST_QUERIES
    ids = await _mailboxes(services, 40, "many")
    many = await list_snapshot(services)
    assert many.reads is not None and many.reads.queries == LIST_QUERIES
    assert len(many.rows) == 43

    # Failed streams add the queries for their cursor rows: seven pairs a query...
    await _fail(services, ids[:12], ("contacts", "events"))  # 24 pairs: 4 queries
    failing = await list_snapshot(services)
    assert failing.reads is not None and failing.reads.queries == LIST_QUERIES + 4
    assert sum(r.health is Health.FAILING for r in failing.rows) == 12
    page = select(failing)[:25]
    await fill_page(services, failing, page)
    assert failing.reads.queries == LIST_QUERIES + 4 + 2  # 25 partitions, 15 to a query
    assert all({"sent", "contacts", "events"} <= set(r.streams) for r in page[:12])

    # ...and, past four such queries, one query by stream name, however many fail.
    await _fail(services, ids[12:40], ("contacts", "events"))  # 80 pairs
    everyone = await list_snapshot(services)
    assert everyone.reads is not None and everyone.reads.queries == LIST_QUERIES + 1
    assert sum(r.health is Health.FAILING for r in everyone.rows) == 40


async def test_a_row_written_before_the_list_columns_is_read_whole(services: Any) -> None:
    [upn] = await _mailboxes(services, 1, "old")
    paused = Mailbox(
        id=upn,
        workbooks_url="https://wb.example",
        api_key_ref="env:K",
        enabled=False,
        disabled_reason="on leave",
        workbooks_user="ann.w",
    )
    row = {
        "PartitionKey": "mailbox",
        "RowKey": encode_key(upn),
        "mailbox": upn,
        "enabled": False,
        "data": paused.model_dump_json(),
    }
    reads = Reads(services)
    await reads.table("mailboxes").upsert_entity(row, mode=UpdateMode.REPLACE)
    (listed,) = [m for m in await reads.listed() if m.id == upn]
    assert (listed.enabled, listed.disabled_reason, listed.workbooks_user) == (
        False,
        "on leave",
        "ann.w",
    )
    snapshot = await list_snapshot(services)
    assert [r.mailbox.id for r in select(snapshot, text="ann.w")] == [upn]


async def test_health_comes_from_the_stored_cursors_and_runs(services: Any) -> None:
    store = services.store
    now = utcnow()
    names = {
        k: f"{k}@health.example"
        for k in ("ok", "failing", "recovered", "brake", "never", "paused", "stale")
    }
    for key, upn in names.items():
        await store.mailboxes.put(
            Mailbox(
                id=upn,
                workbooks_url="https://wb.example",
                api_key_ref="env:K",
                enabled=key != "paused",
            )
        )
    ago = {"stale": timedelta(hours=3)}
    for key in ("ok", "failing", "recovered", "brake", "paused", "stale"):
        await store.cursors.update(
            names[key],
            "sent",
            lambda c, k=key: c.model_copy(
                update={"last_success_at": now - ago.get(k, timedelta(minutes=1))}
            ),
        )
    await store.cursors.update(
        names["recovered"], "contacts", lambda c: c.model_copy(update={"last_success_at": now})
    )

    def problem(upn: str, status: str, minutes: int, **counts: int) -> RunRecord:
        return RunRecord(
            mailbox=upn,
            stream="contacts",
            job_id=uuid.uuid4().hex,
            kind="reconcile",
            status=status,
            started_at=now - timedelta(minutes=minutes),
            counts=counts,
            message=f"{status} here",
        )

    await store.runs.put(problem(names["failing"], "failed", 5))
    await store.runs.put(problem(names["recovered"], "failed", 5))  # contacts succeeded since
    await store.runs.put(problem(names["brake"], "stopped", 5, brake_stopped=1))
    await store.runs.put(problem(names["paused"], "failed", 5))
    snapshot = await list_snapshot(services)
    health = {r.mailbox.id: r.health for r in snapshot.rows}
    assert {k: health[v].value for k, v in names.items()} == {
        "ok": "ok",
        "failing": "failing",
        "recovered": "ok",
        "brake": "brake stopped",
        "never": "never synced",
        "paused": "paused",
        "stale": "failing",
    }
    failing = next(r for r in snapshot.rows if r.mailbox.id == names["failing"])
    assert failing.problem is not None and failing.problem.problem is not None
    assert failing.problem.problem.message == "failed here"
    assert [r.mailbox.id for r in select(snapshot, health="brake stopped")] == [names["brake"]]
    assert [r.mailbox.id for r in select(snapshot, text=" STALE@health")] == [names["stale"]]
    # The mailbox page decides the same from its own reads.
    for key in ("failing", "recovered", "brake", "stale"):
        mailbox = await store.mailboxes.get(names[key])
        detail = await mailbox_detail(services, mailbox)
        assert detail.row.health is health[names[key]], key


async def test_the_page_completes_every_stream_of_its_mailboxes(services: Any) -> None:
    ids = await _mailboxes(services, 5, "range")
    for upn in ids:
        for stream in ("contacts", "events", "todo"):
            await services.store.cursors.update(
                upn, stream, lambda c: c.model_copy(update={"last_success_at": utcnow()})
            )
    snapshot = await list_snapshot(services)
    rows = [r for r in snapshot.rows if r.mailbox.id in ids]
    assert all(set(r.streams) == {"sent"} for r in rows)  # only what health needs
    await fill_page(services, snapshot, rows[1:4])
    assert [set(r.streams) for r in rows] == [{"sent"}] + [
        {"sent", "contacts", "events", "todo"}
    ] * 3 + [{"sent"}]


async def test_a_manual_sync_in_progress_is_on_the_row(services: Any) -> None:
    [upn] = await _mailboxes(services, 1, "job")
    await services.store.jobs.put(
        JobStatus(
            job_id=uuid.uuid4().hex,
            mailbox=upn,
            kind="full",
            state="running",
            streams_total=5,
            streams_done=2,
        )
    )
    snapshot = await list_snapshot(services)
    row = next(r for r in snapshot.rows if r.mailbox.id == upn)
    assert row.job is not None and (row.job.streams_done, row.job.streams_total) == (2, 5)


def test_conflicts_are_read_back_from_the_run_messages() -> None:
    message = (
        "new items created before the brake: 1; conflict on 12/job_title: workbooks='CFO; acting' "
        "outlook='Chief' -> workbooks; conflict on 13/phone: workbooks=None outlook='+44 1' -> outlook"
    )
    run = RunRecord(
        mailbox="a@b.c",
        stream="contacts",
        job_id="j",
        kind="reconcile",
        counts={"conflicts": 2},
        message=message,
    )
    found = conflicts_in([run, run.model_copy(update={"counts": {}})])
    assert [(c.record, c.field, c.workbooks, c.outlook, c.winner) for c in found] == [
        ("12", "job_title", "CFO; acting", "Chief", "workbooks"),
        ("13", "phone", "(empty)", "+44 1", "outlook"),
    ]


async def test_viewer_lookup_by_address_then_by_object_id(services: Any) -> None:
    oid = str(uuid.uuid4())
    await services.store.mailboxes.put(
        Mailbox(
            id="someone@lookup.example",
            graph_user=oid,
            workbooks_url="https://wb.example",
            api_key_ref="env:K",
        )
    )
    reads = Reads(services)
    found = await reads.mailbox_for_viewer("Someone@Lookup.example", "")
    assert found is not None and found.id == "someone@lookup.example"
    by_oid = await reads.mailbox_for_viewer("alias@lookup.example", oid.upper())
    assert by_oid is not None and by_oid.id == "someone@lookup.example"
    assert await reads.mailbox_for_viewer("nobody@lookup.example", "") is None

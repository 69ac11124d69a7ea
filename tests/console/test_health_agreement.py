"""The console (list and mailbox pages) and ``status`` call the same streams failing: a stream
retried for an outage is failing everywhere from its first retry, and a stream is overdue only
past two of *its mailbox's* reconciliations (a mailbox reconciled every 4 hours is not failing
two hours after its last run)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from sync.console.data import Reads, list_snapshot, mailbox_detail
from sync.console.health import Health
from sync.core.errors import RetryLater
from sync.core.jobs import Job, JobKind, Stream
from sync.core.keys import encode_key
from sync.core.state_models import Mailbox, MailboxPolicy, utcnow
from sync.engine import registry
from sync.engine.registry import RunContext
from sync.engine.runner import run_job
from sync.status import render_status, status_report


def _mailbox(address: str, minutes: int = 30) -> Mailbox:
    return Mailbox(
        id=address,
        workbooks_url="https://wb.example",
        api_key_ref="env:K",
        policy=MailboxPolicy(reconcile_interval_minutes=minutes),
    )


async def _synced(services: Any, address: str, ago: timedelta, *streams: str) -> None:
    now = utcnow()
    for stream in ("sent", *streams):
        await services.store.cursors.update(
            address, stream, lambda c: c.model_copy(update={"last_success_at": now - ago})
        )


async def _everywhere(services: Any, address: str) -> dict[str, Any]:
    """The mailbox's health as the list, the mailbox page and status give it."""
    snapshot = await list_snapshot(services)
    [row] = [r for r in snapshot.rows if r.mailbox.id == address]
    mailbox = await services.store.mailboxes.get(address)
    detail = await mailbox_detail(services, mailbox)
    report = await status_report(services)
    [entry] = [m for m in report["mailboxes"] if m["id"] == address]
    return {
        "list": row.health,
        "page": detail.row.health,
        "status": entry["failing"],
        "row": row,
        "detail": detail,
        "entry": entry,
        "report": report,
    }


async def test_a_stream_retried_for_an_outage_is_failing_in_the_console_as_in_status(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = "ann@agree.example"
    await services.store.mailboxes.put(_mailbox(ann))
    await _synced(services, ann, timedelta(minutes=5), "contacts")
    services.settings.app.webhook_memo_seconds = 0
    outage: dict[str, bool] = {"on": True}

    async def contacts(ctx: RunContext) -> None:
        if outage["on"]:
            raise RetryLater("Graph answered 503 Service Unavailable", source="graph")

    monkeypatch.setitem(registry._PROCESSORS, (Stream.CONTACTS, JobKind.RECONCILE), contacts)
    job = Job(mailbox=ann, stream=Stream.CONTACTS, kind=JobKind.RECONCILE)
    retried = await run_job(services, job)
    assert retried.status == "retry"

    seen = await _everywhere(services, ann)
    assert (seen["list"], seen["page"], seen["status"]) == (Health.FAILING, Health.FAILING, True)
    problem = seen["row"].problem
    assert problem is not None and problem.stream == "contacts"
    assert "503" in problem.message and problem.failing_since is not None
    assert seen["detail"].row.streams["contacts"].failing

    outage["on"] = False
    assert (await run_job(services, job)).status == "ok"
    seen = await _everywhere(services, ann)
    assert (seen["list"], seen["page"], seen["status"]) == (Health.OK, Health.OK, False)


async def test_a_stream_is_overdue_after_two_of_its_own_mailboxs_reconciliations(
    services: Any,
) -> None:
    hours = timedelta(hours=1)
    cases = {
        # address: (its reconcile interval in minutes, last success ago, failing?)
        "every30-3h@agree.example": (30, 3 * hours, True),
        "every240-3h@agree.example": (240, 3 * hours, False),
        "every240-9h@agree.example": (240, 9 * hours, True),
    }
    for address, (minutes, ago, _) in cases.items():
        await services.store.mailboxes.put(_mailbox(address, minutes))
        await _synced(services, address, ago, "contacts")
    for address, (_, _, failing) in cases.items():
        seen = await _everywhere(services, address)
        expected = Health.FAILING if failing else Health.OK
        assert (seen["list"], seen["page"], seen["status"]) == (expected, expected, failing), (
            address
        )
        overdue = {s["stream"]: s["overdue"] for s in seen["entry"]["streams"]}
        assert overdue == {"sent": failing, "contacts": failing}, address
    text = "\n".join(render_status(seen["report"]))
    assert "every240-9h@agree.example (enabled)  ! FAILING" in text
    assert "FAILING: no success in two reconciliations" in text
    # Paused: not synced on purpose, so nothing is overdue.
    paused = "paused-9h@agree.example"
    await services.store.mailboxes.put(_mailbox(paused).model_copy(update={"enabled": False}))
    await _synced(services, paused, 9 * hours)
    seen = await _everywhere(services, paused)
    assert (seen["list"], seen["page"], seen["status"]) == (Health.PAUSED, Health.PAUSED, False)
    assert not any(s["failing"] or s["overdue"] for s in seen["entry"]["streams"])


async def test_a_registry_row_without_the_interval_column_is_read_whole_when_overdue(
    services: Any,
) -> None:
    """Rows written before the column: the list reads the policy of those with an overdue
    stream (one point read each), and no others."""
    old, fresh = "old-row@agree.example", "fresh-row@agree.example"
    for address in (old, fresh):
        await services.store.mailboxes.put(_mailbox(address, 240))
    await _synced(services, old, timedelta(hours=3))
    await _synced(services, fresh, timedelta(minutes=1))
    reads = Reads(services)
    table = reads.table("mailboxes")
    for address in (old, fresh):
        row = dict(await table.get_entity("mailbox", encode_key(address)))
        del row["reconcile_minutes"]
        await table.upsert_entity(row, mode=UpdateMode.REPLACE)
    snapshot = await list_snapshot(services)
    health = {r.mailbox.id: r.health for r in snapshot.rows}
    assert health == {old: Health.OK, fresh: Health.OK}
    # 8 queries as always, and one point read: the overdue mailbox's record, not the other's.
    assert snapshot.reads is not None and snapshot.reads.queries == 8 + 1

"""The real client (msgraph-sdk request adapter + our policy) against the sandbox over HTTP."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from devkit.sandbox.graph import SandboxHandle
from devkit.sandbox.graph.service import Fault
from devkit.sandbox.graph.state import Mailbox
from sync.core.errors import NotFound, ReauthRequired, ResyncRequired, RetryLater
from sync.core.graph_models import (
    WORKBOOKS_ID_PROPERTY,
    Contact,
    EmailAddress,
    Event,
    TodoTask,
)
from sync.graph.client import GraphClient
from tests.graph.conftest import FAST_POLICY, UPN, settings_for


def seed(handle: SandboxHandle, box: Mailbox, kind: str, folder: str, n: int) -> list[str]:
    sb = handle.sandbox
    cont = sb.state.container(box, kind, folder)  # type: ignore[arg-type]
    assert cont is not None
    return [
        sb.create_item(box, cont, {"subject": f"s{i}", "displayName": f"c{i}"}).immutable_id
        for i in range(n)
    ]


async def test_sent_items_paging_removals_and_delta_link(sandbox, mailbox, graph) -> None:
    ids = seed(sandbox, mailbox, "message", "sentitems", 23)
    reader = graph.sent_messages(UPN, page_size=5)
    with pytest.raises(RuntimeError):
        _ = reader.delta_link  # not before the last page
    items, removed, link = await reader.collect()
    assert reader.pages_read == 5
    assert sorted(m.id for m in items) == sorted(ids)  # immutable ids requested
    assert removed == []
    # Every page, next links included, re-sent the Prefer headers.
    delta_calls = [r for r in sandbox.sandbox.requests if "/delta" in r[1]]
    assert len(delta_calls) == 5
    for _, _, headers in delta_calls:
        prefer = headers.get("Prefer", "")
        assert 'IdType="ImmutableId"' in prefer and "odata.maxpagesize=5" in prefer
    assert "delta()" in delta_calls[0][1]  # the SDK's path form

    sb = sandbox.sandbox
    cont = sb.state.container(mailbox, "message", "sentitems")
    inbox = sb.state.container(mailbox, "message", "inbox")
    assert cont is not None and inbox is not None
    sb.update_item(mailbox, cont, cont.items[ids[0]], {"categories": ["Workbooks"]})
    sb.delete_item(mailbox, cont, cont.items[ids[1]])
    sb.move_item(mailbox, cont, cont.items[ids[2]], inbox)
    items, removed, _ = await graph.sent_messages(UPN, link).collect()
    assert [m.id for m in items] == [ids[0]] and items[0].categories == ["Workbooks"]
    assert sorted(r.id for r in removed) == sorted([ids[1], ids[2]])


async def test_expired_token_raises_resync_required(sandbox, mailbox, graph) -> None:
    seed(sandbox, mailbox, "contact", "contacts", 3)
    _, _, link = await graph.contacts(UPN).collect()
    sandbox.sandbox.state.expire_tokens()
    with pytest.raises(ResyncRequired):
        await graph.contacts(UPN, link).collect()


async def test_429_with_short_retry_after_is_sat_out(sandbox, mailbox, graph) -> None:
    seed(sandbox, mailbox, "contact", "contacts", 2)
    sandbox.sandbox.faults.append(Fault(status=429, count=1, path="/contacts", retry_after=1))
    started = time.monotonic()
    items, _, _ = await graph.contacts(UPN).collect()
    assert len(items) == 2
    assert time.monotonic() - started >= 0.9


async def test_429_with_long_retry_after_goes_back_as_retry_later(sandbox, mailbox, graph) -> None:
    sandbox.sandbox.faults.append(Fault(status=429, count=1, path="/contacts", retry_after=120))
    before = datetime.now(UTC)
    with pytest.raises(RetryLater) as info:
        await graph.contacts(UPN).collect()
    assert info.value.retry_at is not None
    assert info.value.retry_at >= before + timedelta(seconds=119)
    # One request only: the SDK's RetryHandler (which would sleep 120 s) is not in the pipeline.
    assert len([r for r in sandbox.sandbox.requests if "/contacts" in r[1]]) == 1
    # The mailbox stays held: the next call is handed back at once, without a request.
    with pytest.raises(RetryLater) as again:
        await graph.get_contact(UPN, "any")
    assert again.value.retry_at == info.value.retry_at
    assert len([r for r in sandbox.sandbox.requests if "/contacts" in r[1]]) == 1


async def test_5xx_is_retried_then_exhausted(sandbox, mailbox, graph) -> None:
    seed(sandbox, mailbox, "contact", "contacts", 1)
    sandbox.sandbox.faults.append(Fault(status=503, count=2, path="/contacts"))
    items, _, _ = await graph.contacts(UPN).collect()
    assert len(items) == 1
    sandbox.sandbox.faults.append(Fault(status=500, count=10, path="/contacts"))
    with pytest.raises(RetryLater):
        await graph.contacts(UPN).collect()


async def test_limiter_keeps_mailbox_under_sandbox_concurrency(sandbox, mailbox, graph) -> None:
    # Slow replies: without the limiter, 12 parallel calls would exceed 4 in flight and 429.
    seed(sandbox, mailbox, "contact", "contacts", 1)
    sandbox.sandbox.config.latency_seconds = 0.05
    contact_id = next(iter(mailbox.containers["contact:contacts"].items))
    results = await asyncio.gather(*(graph.get_contact(UPN, contact_id) for _ in range(12)))
    assert len(results) == 12
    assert sandbox.sandbox.throttled == 0


async def test_contact_write_stamps_workbooks_id_and_category(sandbox, mailbox, graph) -> None:
    draft = Contact(
        id="",
        given_name="Bo",
        surname="Lee",
        display_name="Bo Lee",
        email_addresses=[EmailAddress(address="bo@x.com", name="Bo")],
    )
    created = await graph.create_contact(UPN, draft, workbooks_id=4711)
    assert created.categories == ["Workbooks"]
    fetched = await graph.get_contact(UPN, created.id)
    assert fetched.workbooks_id == "4711"
    changed = await graph.update_contact(
        UPN, created.id, Contact(id="", display_name="Bo Lee", job_title="CTO")
    )
    assert changed.job_title == "CTO" and changed.categories == ["Workbooks"]
    await graph.delete_contact(UPN, created.id)
    with pytest.raises(NotFound):
        await graph.get_contact(UPN, created.id)


async def test_event_write_never_sends_attendees(sandbox, mailbox, graph) -> None:
    start = datetime.now(UTC) + timedelta(days=1)
    event = Event.model_validate(
        {
            "id": "",
            "subject": "Demo",
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {
                "dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                "timeZone": "UTC",
            },
        }
    )
    created = await graph.create_event(UPN, event, workbooks_id=99, transaction_id="wb-99")
    posted = [r for r in sandbox.sandbox.requests if r[0] == "POST" and r[1].endswith("/events")]
    assert posted
    stored = mailbox.containers["event:calendar"].items[created.id]
    assert "attendees" not in stored.data and stored.data["transactionId"] == "wb-99"
    assert (await graph.get_event(UPN, created.id)).workbooks_id == "99"
    lo, hi = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=30)
    items, _, link = await graph.events(UPN, window_start=lo, window_end=hi).collect()
    assert [e.id for e in items] == [created.id]
    await graph.delete_event(UPN, created.id)
    items, removed, _ = await graph.events(UPN, link).collect()
    assert items == [] and [r.id for r in removed] == [created.id]


async def test_todo_task_linked_resource_and_delta(sandbox, mailbox, graph) -> None:
    tasks = sandbox.sandbox.state.add_container(mailbox, "task", "Tasks")
    list_id = tasks.key.split(":", 1)[1]
    assert [tl.id for tl in await graph.todo_lists(UPN)] == [list_id]
    task = TodoTask(id="", title="Call Bo", status="notStarted")
    created = await graph.create_task(UPN, list_id, task, workbooks_id=12, display_name="Task 12")
    assert (await graph.get_task(UPN, list_id, created.id)).workbooks_id == "12"
    items, _, link = await graph.todo_tasks(UPN, list_id).collect()
    assert [t.title for t in items] == ["Call Bo"]
    await graph.update_task(UPN, list_id, created.id, TodoTask(id="", status="completed"))
    items, _, _ = await graph.todo_tasks(UPN, list_id, link).collect()
    assert items[0].status == "completed"


async def test_message_categories_and_single_read(sandbox, mailbox, graph) -> None:
    (msg_id,) = seed(sandbox, mailbox, "message", "sentitems", 1)
    await graph.add_message_categories(UPN, msg_id, ["Workbooks"])
    await graph.add_message_categories(UPN, msg_id, ["Workbooks", "CASE-1"])
    assert (await graph.get_message(UPN, msg_id)).categories == ["Workbooks", "CASE-1"]
    await graph.ensure_category(UPN, "Workbooks")
    await graph.ensure_category(UPN, "Workbooks")
    assert [c["displayName"] for c in mailbox.categories] == ["Workbooks"]


async def test_bad_credentials_are_reauth_required(sandbox, mailbox) -> None:
    client = GraphClient.create(settings_for(sandbox, client_secret="wrong"), policy=FAST_POLICY)
    try:
        with pytest.raises(ReauthRequired):
            await client.get_message(UPN, "nope")
    finally:
        await client.aclose()


async def test_extended_property_id_constant() -> None:
    assert WORKBOOKS_ID_PROPERTY.startswith("String {") and WORKBOOKS_ID_PROPERTY.endswith(
        "Name WorkbooksId"
    )


async def test_post_is_not_retried_after_5xx_but_is_after_429(sandbox, mailbox, graph) -> None:
    sb = sandbox.sandbox
    sb.faults.append(Fault(status=503, count=1, path="/contacts", method="POST"))
    with pytest.raises(RetryLater):
        await graph.create_contact(UPN, Contact(id="", display_name="A"), workbooks_id=1)
    assert len([r for r in sb.requests if r[0] == "POST"]) == 1
    sb.faults.append(Fault(status=429, count=1, path="/contacts", method="POST", retry_after=1))
    created = await graph.create_contact(UPN, Contact(id="", display_name="B"), workbooks_id=2)
    assert created.display_name == "B"
    assert len([r for r in sb.requests if r[0] == "POST"]) == 3


async def test_delta_from_an_empty_folder_still_reports_later_removals(
    sandbox, mailbox, graph
) -> None:
    # A delta link taken while the tenant had seen no change at all must still report later
    # deletions (regression: such a link was treated as "initial" forever).
    assert sandbox.sandbox.state.seq == 0
    _, _, link = await graph.contacts(UPN).collect()
    (cid,) = seed(sandbox, mailbox, "contact", "contacts", 1)
    sb = sandbox.sandbox
    cont = sb.state.container(mailbox, "contact", "contacts")
    assert cont is not None
    sb.delete_item(mailbox, cont, cont.items[cid])
    items, removed, _ = await graph.contacts(UPN, link).collect()
    assert items == [] and [r.id for r in removed] == [cid]

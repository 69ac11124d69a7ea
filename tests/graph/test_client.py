"""The real client (msgraph-sdk request adapter + our policy) against the sandbox over HTTP,
through the calls production makes: the one request path, the one delta pager (sent items as
`Message` pages, contacts/events/To Do as raw JSON in `sync.graph.items`) and the item writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devkit.sandbox.graph import SandboxHandle
from devkit.sandbox.graph.service import Fault
from devkit.sandbox.graph.state import Mailbox
from sync.core.errors import NotFound, ReauthRequired, ResyncRequired, RetryLater
from sync.core.graph_models import WORKBOOKS_ID_PROPERTY, DeltaPage, Message, Removal
from sync.core.mapping import activities, contacts
from sync.graph.client import DeltaReader, GraphClient
from sync.graph.items import Contacts, Events, TodoTasks, default_todo_list
from tests.graph.conftest import FAST_POLICY, UPN, settings_for

CATEGORY = "Workbooks"
Raw = dict[str, Any]


async def pages_of(reader: AsyncIterable[Any]) -> list[Any]:
    return [page async for page in reader]


async def messages(reader: DeltaReader[DeltaPage[Message]]) -> tuple[list[Message], list[Removal]]:
    items: list[Message] = []
    removed: list[Removal] = []
    async for page in reader:
        items += page.items
        removed += page.removed
    return items, removed


async def round_of(reader: DeltaReader[Raw]) -> tuple[list[Raw], list[str], str]:
    """A raw delta round: (items, removed ids, the new delta link)."""
    items: list[Raw] = []
    removed: list[str] = []
    async for page in reader:
        for entry in page["value"]:
            if "@removed" in entry:
                removed.append(entry["id"])
            else:
                items.append(entry)
    return items, removed, reader.delta_link


def seed(handle: SandboxHandle, box: Mailbox, kind: str, folder: str, n: int) -> list[str]:
    sb = handle.sandbox
    cont = sb.state.container(box, kind, folder)  # type: ignore[arg-type]
    assert cont is not None
    return [
        sb.create_item(box, cont, {"subject": f"s{i}", "displayName": f"c{i}"}).immutable_id
        for i in range(n)
    ]


def contacts_of(graph: GraphClient) -> Contacts:
    return Contacts(graph, UPN, CATEGORY)


async def test_sent_items_paging_removals_and_delta_link(sandbox, mailbox, graph) -> None:
    ids = seed(sandbox, mailbox, "message", "sentitems", 23)
    reader = graph.sent_messages(UPN, page_size=5)
    with pytest.raises(RuntimeError):
        _ = reader.delta_link  # not before the last page
    pages = await pages_of(reader)
    assert len(pages) == 5
    items = [m for page in pages for m in page.items]
    assert sorted(m.id for m in items) == sorted(ids)  # immutable ids requested
    assert [r for page in pages for r in page.removed] == []
    assert [p.delta_link is not None for p in pages] == [False] * 4 + [True]
    link = reader.delta_link
    assert link == pages[-1].delta_link
    # Every page, next links included, re-sent the Prefer headers.
    delta_calls = [r for r in sandbox.sandbox.requests if "/delta" in r[1]]
    assert len(delta_calls) == 5
    for _, _, headers in delta_calls:
        prefer = headers.get("Prefer", "")
        assert 'IdType="ImmutableId"' in prefer and "odata.maxpagesize=5" in prefer
    assert "/mailFolders/sentitems/messages/delta?$select=id," in delta_calls[0][1]

    sb = sandbox.sandbox
    cont = sb.state.container(mailbox, "message", "sentitems")
    inbox = sb.state.container(mailbox, "message", "inbox")
    assert cont is not None and inbox is not None
    sb.update_item(mailbox, cont, cont.items[ids[0]], {"categories": ["Workbooks"]})
    sb.delete_item(mailbox, cont, cont.items[ids[1]])
    sb.move_item(mailbox, cont, cont.items[ids[2]], inbox)
    items, removed = await messages(graph.sent_messages(UPN, link))
    assert [m.id for m in items] == [ids[0]] and items[0].categories == ["Workbooks"]
    assert sorted(r.id for r in removed) == sorted([ids[1], ids[2]])


async def test_contacts_delta_pages_carry_prefer_headers(sandbox, mailbox, graph) -> None:
    ids = seed(sandbox, mailbox, "contact", "contacts", 7)
    items = contacts_of(graph)
    items.page_size = 3
    found, removed, link = await round_of(items.delta(None))
    assert sorted(c["id"] for c in found) == sorted(ids) and removed == []
    delta_calls = [r for r in sandbox.sandbox.requests if "/delta" in r[1]]
    assert len(delta_calls) == 3  # 3 + 3 + 1
    for _, _, headers in delta_calls:
        prefer = headers.get("Prefer", "")
        assert 'IdType="ImmutableId"' in prefer and "odata.maxpagesize=3" in prefer
    assert link.startswith("http")


async def test_expired_token_raises_resync_required(sandbox, mailbox, graph) -> None:
    seed(sandbox, mailbox, "contact", "contacts", 3)
    _, _, link = await round_of(contacts_of(graph).delta(None))
    sandbox.sandbox.state.expire_tokens()
    with pytest.raises(ResyncRequired):
        await round_of(contacts_of(graph).delta(link))


async def test_429_with_short_retry_after_is_sat_out(sandbox, mailbox, graph) -> None:
    seed(sandbox, mailbox, "contact", "contacts", 2)
    sandbox.sandbox.faults.append(Fault(status=429, count=1, path="/contacts", retry_after=1))
    started = time.monotonic()
    items, _, _ = await round_of(contacts_of(graph).delta(None))
    assert len(items) == 2
    assert time.monotonic() - started >= 0.9


async def test_429_with_long_retry_after_goes_back_as_retry_later(sandbox, mailbox, graph) -> None:
    sandbox.sandbox.faults.append(Fault(status=429, count=1, path="/contacts", retry_after=120))
    before = datetime.now(UTC)
    with pytest.raises(RetryLater) as info:
        await round_of(contacts_of(graph).delta(None))
    assert info.value.retry_at is not None
    assert info.value.retry_at >= before + timedelta(seconds=119)
    # One request only: the SDK's RetryHandler (which would sleep 120 s) is not in the pipeline.
    assert len([r for r in sandbox.sandbox.requests if "/contacts" in r[1]]) == 1
    # The mailbox stays held: the next call is handed back at once, without a request.
    with pytest.raises(RetryLater) as again:
        await contacts_of(graph).fetch_stamp("any")
    assert again.value.retry_at == info.value.retry_at
    assert len([r for r in sandbox.sandbox.requests if "/contacts" in r[1]]) == 1


async def test_5xx_is_retried_then_exhausted(sandbox, mailbox, graph) -> None:
    seed(sandbox, mailbox, "contact", "contacts", 1)
    sandbox.sandbox.faults.append(Fault(status=503, count=2, path="/contacts"))
    items, _, _ = await round_of(contacts_of(graph).delta(None))
    assert len(items) == 1
    sandbox.sandbox.faults.append(Fault(status=500, count=10, path="/contacts"))
    with pytest.raises(RetryLater):
        await round_of(contacts_of(graph).delta(None))


async def test_limiter_keeps_mailbox_under_sandbox_concurrency(sandbox, mailbox, graph) -> None:
    # Slow replies: without the limiter, 12 parallel calls would exceed 4 in flight and 429.
    (contact_id,) = seed(sandbox, mailbox, "contact", "contacts", 1)
    sandbox.sandbox.config.latency_seconds = 0.05
    items = contacts_of(graph)
    results = await asyncio.gather(*(items.exists(contact_id) for _ in range(12)))
    assert results == [True] * 12
    assert sandbox.sandbox.throttled == 0


async def test_contact_write_stamps_workbooks_id_and_category(sandbox, mailbox, graph) -> None:
    items = contacts_of(graph)
    fields = {"first_name": "Bo", "last_name": "Lee", "display_name": "Bo Lee"}
    fields["email"] = "bo@x.com"
    created = await items.create(contacts.to_graph(fields), 4711, "Bo Lee")
    assert created["categories"] == [CATEGORY]
    assert await items.fetch_stamp(created["id"]) == 4711
    # The delta cannot carry the stamp (graph.md §4.5): that is why it is fetched per item.
    (listed,), _, _ = await round_of(items.delta(None))
    assert items.stamped_id(listed) is None and not items.stamp_in_delta
    changed = await items.update(created["id"], {"displayName": "Bo Lee", "jobTitle": "CTO"})
    assert changed["jobTitle"] == "CTO" and changed["categories"] == [CATEGORY]
    await items.delete(created["id"])
    await items.delete(created["id"])  # already gone is what we wanted
    assert not await items.exists(created["id"])
    assert await items.fetch_stamp(created["id"]) is None
    with pytest.raises(NotFound):
        await graph.request("GET", items.item_path(created["id"]), mailbox=UPN)


async def test_stamping_an_outlook_contact_keeps_its_categories(sandbox, mailbox, graph) -> None:
    (cid,) = seed(sandbox, mailbox, "contact", "contacts", 1)
    items = contacts_of(graph)
    await items.stamp(cid, 12, "c0", ["Red", CATEGORY])
    assert await items.fetch_stamp(cid) == 12
    stored = mailbox.containers["contact:contacts"].items[cid]
    assert stored.data["categories"] == ["Red", CATEGORY]


async def test_event_write_never_sends_attendees(sandbox, mailbox, graph) -> None:
    lo, hi = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=30)
    events = Events(graph, UPN, CATEGORY, (lo, hi))
    start = datetime.now(UTC) + timedelta(days=1)
    fields = {
        "subject": "Demo",
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    body = activities.event_to_graph(fields, "UTC")
    created = await events.create(body, 99, "Demo")
    posted = [r for r in sandbox.sandbox.requests if r[0] == "POST" and r[1].endswith("/events")]
    assert posted
    stored = mailbox.containers["event:calendar"].items[created["id"]]
    assert "attendees" not in stored.data and stored.data["categories"] == [CATEGORY]
    assert await events.fetch_stamp(created["id"]) == 99
    items, _, link = await round_of(events.delta(None))
    assert [e["id"] for e in items] == [created["id"]]
    calendar_view = [r for r in sandbox.sandbox.requests if "calendarView/delta" in r[1]]
    assert 'outlook.timezone="UTC"' in calendar_view[0][2].get("Prefer", "")
    await events.delete(created["id"])
    items, removed, _ = await round_of(events.delta(link))
    assert items == [] and removed == [created["id"]]


async def test_todo_list_task_linked_resource_and_delta(sandbox, mailbox, graph) -> None:
    state = sandbox.sandbox.state

    def task_lists() -> list[tuple[str, str, str]]:
        return [
            (c.key.split(":", 1)[1], c.display_name, c.wellknown)
            for c in mailbox.containers.values()
            if c.kind == "task"
        ]

    ((seeded, name, wellknown),) = task_lists()  # every real mailbox has its "Tasks"
    assert (name, wellknown) == ("Tasks", "defaultList")
    groceries = state.add_container(mailbox, "task", "Groceries").key.split(":", 1)[1]
    assert await default_todo_list(graph, UPN) == seeded  # the default, whatever else exists
    del mailbox.containers[f"task:{seeded}"]  # without a default list: the first one there
    assert await default_todo_list(graph, UPN) == groceries
    del mailbox.containers[f"task:{groceries}"]  # without any list: "Tasks" is made, once
    list_id = await default_todo_list(graph, UPN)
    assert await default_todo_list(graph, UPN) == list_id
    assert [n for _, n, _ in task_lists()] == ["Tasks"]
    tasks = TodoTasks(graph, UPN, CATEGORY, list_id)
    body = activities.task_to_graph({"title": "Call Bo", "status": "not_started"}, "UTC")
    created = await tasks.create(body, 12, "Task 12")
    assert await tasks.fetch_stamp(created["id"]) == 12
    items, _, link = await round_of(tasks.delta(None))
    assert [t["title"] for t in items] == ["Call Bo"]
    assert tasks.stamp_in_delta and tasks.stamped_id(items[0]) == 12  # the delta expands it
    await tasks.update(created["id"], {"status": "completed"})
    items, _, _ = await round_of(tasks.delta(link))
    assert items[0]["status"] == "completed"


async def test_stamping_an_outlook_task_adds_a_linked_resource(sandbox, mailbox, graph) -> None:
    list_id = await default_todo_list(graph, UPN)
    tasks = TodoTasks(graph, UPN, CATEGORY, list_id)
    sb = sandbox.sandbox
    cont = sb.state.container(mailbox, "task", list_id)
    assert cont is not None
    task_id = sb.create_item(mailbox, cont, {"title": "T", "categories": ["Red"]}).immutable_id
    assert await tasks.fetch_stamp(task_id) is None
    await tasks.stamp(task_id, 31, "T", ["ignored"])
    assert await tasks.fetch_stamp(task_id) == 31
    (item,), _, _ = await round_of(tasks.delta(None))
    assert item["categories"] == ["Red"]  # a task's stamp leaves its categories alone


async def test_bad_credentials_are_reauth_required(sandbox, mailbox) -> None:
    client = GraphClient.create(settings_for(sandbox, client_secret="wrong"), policy=FAST_POLICY)
    try:
        with pytest.raises(ReauthRequired):
            await pages_of(client.sent_messages(UPN))
    finally:
        await client.aclose()


async def test_extended_property_id_constant() -> None:
    assert WORKBOOKS_ID_PROPERTY.startswith("String {") and WORKBOOKS_ID_PROPERTY.endswith(
        "Name WorkbooksId"
    )


async def test_post_is_not_retried_after_5xx_but_is_after_429(sandbox, mailbox, graph) -> None:
    sb = sandbox.sandbox
    items = contacts_of(graph)
    sb.faults.append(Fault(status=503, count=1, path="/contacts", method="POST"))
    with pytest.raises(RetryLater):
        await items.create({"displayName": "A"}, 1, "A")
    assert len([r for r in sb.requests if r[0] == "POST"]) == 1
    sb.faults.append(Fault(status=429, count=1, path="/contacts", method="POST", retry_after=1))
    created = await items.create({"displayName": "B"}, 2, "B")
    assert created["displayName"] == "B"
    assert len([r for r in sb.requests if r[0] == "POST"]) == 3


async def test_delta_from_an_empty_folder_still_reports_later_removals(
    sandbox, mailbox, graph
) -> None:
    # A delta link taken while the tenant had seen no change at all must still report later
    # deletions (regression: such a link was treated as "initial" forever).
    assert sandbox.sandbox.state.seq == 0
    _, _, link = await round_of(contacts_of(graph).delta(None))
    (cid,) = seed(sandbox, mailbox, "contact", "contacts", 1)
    sb = sandbox.sandbox
    cont = sb.state.container(mailbox, "contact", "contacts")
    assert cont is not None
    sb.delete_item(mailbox, cont, cont.items[cid])
    items, removed, _ = await round_of(contacts_of(graph).delta(link))
    assert items == [] and removed == [cid]

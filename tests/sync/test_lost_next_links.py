"""Exchange may drop the sync state behind a round's nextLinks (410 ``SyncStateNotFound``) while
the delta link the round began at still works.  The streams then resume from that delta link,
not with a resync that re-reads the whole folder, and nothing is created twice."""

from __future__ import annotations

import asyncio

import sync.engine.emails  # noqa: F401  (registers the SENT processor)
from devkit.sandbox.graph.service import Fault
from sync.core.jobs import JobKind, Stream
from sync.core.state_models import Cursor
from sync.engine.clients import graph_client
from sync.graph.client import split_resume
from tests.sync.conftest import CATEGORY, UPN, Sides


def _full_rounds(sides: Sides, folder: str) -> int:
    """Delta requests that began a new round over ``folder`` (no token: a whole-folder read)."""
    return sum(
        1
        for method, path, _headers in sides.sb.requests
        if method == "GET"
        and folder in path
        and "/delta" in path
        and "token=" not in path.replace("%24", "$")
    )


async def test_sent_items_resume_a_stored_next_link_that_exchange_dropped(sides: Sides) -> None:
    world = sides.world
    pat = world.person("Pat Customer", "pat@cust.test")
    world.send(UPN, to=["pat@cust.test"], categories=[CATEGORY], subject="first")
    first = await world.run(UPN, Stream.SENT)
    assert first.status == "ok", first.message
    store = world.services.store.cursors
    delta_link = (await store.get(UPN, Stream.SENT)).delta_link
    assert delta_link is not None and split_resume(delta_link)[1] is None

    for i in range(25):
        world.send(UPN, to=["pat@cust.test"], categories=[CATEGORY], subject=f"m{i}")
    # A run read a page and stored its nextLink as a checkpoint, then stopped (killed, or its
    # lease ran out); meanwhile Exchange dropped the round's sync state.
    reader = graph_client(world.services).sent_messages(UPN, delta_link, page_size=10)
    page = await anext(aiter(reader))
    checkpoint = page.next_link
    assert checkpoint is not None

    def stopped(c: Cursor) -> Cursor:
        return c.model_copy(update={"delta_link": checkpoint})

    await store.update(UPN, Stream.SENT, stopped)
    assert sides.sb.state.stale_next_links() >= 1

    run = await world.run(UPN, Stream.SENT)
    assert run.status == "ok", run.message  # before: "resync required" and a RESYNC job
    cursor = await store.get(UPN, Stream.SENT)
    assert not cursor.resync_requested and cursor.delta_link is not None
    assert "full_rounds" not in run.counts
    assert _full_rounds(sides, "sentitems") == 1  # only the very first round read everything
    subjects = sorted(e["subject"] for e in world.emails())
    assert subjects == sorted(["first", *(f"m{i}" for i in range(25))])  # each email once
    linked = [link for link in world.links() if link[2] == pat]
    assert len(linked) == 26


async def test_a_two_way_round_resumes_from_its_delta_link(sides: Sides) -> None:
    first = await sides.run(Stream.CONTACTS)
    assert first.status == "ok"
    for i in range(25):
        sides.outlook_create(
            "contact",
            {
                "displayName": f"Contact {i}",
                "givenName": "Contact",
                "surname": str(i),
                "emailAddresses": [{"address": f"c{i}@cust.test", "name": f"Contact {i}"}],
                "categories": [CATEGORY],
            },
        )
    sides.sb.config.max_page_size = 10  # three pages
    # Hold each delta request a moment, so Exchange can drop the round's sync state after the
    # first page was served and before the second is answered.
    sides.sb.faults.append(Fault(status=None, count=10, path="/contacts/delta", delay=0.2))
    run = asyncio.create_task(sides.world.run(UPN, Stream.CONTACTS, JobKind.RECONCILE))

    for _ in range(2000):  # until the second page is asked for (it is held by the fault)
        if any("skiptoken" in r[1] for r in sides.sb.requests if "/contacts/" in r[1]):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the round never asked for its second page")
    assert sides.sb.state.stale_next_links() >= 1
    record = await asyncio.wait_for(run, 60)
    assert record.status == "ok", record.message
    cursor = await sides.world.services.store.cursors.get(UPN, Stream.CONTACTS)
    assert not cursor.resync_requested
    assert _full_rounds(sides, "contacts") == 1
    # Every contact became exactly one Person, replayed pages notwithstanding.
    people = sorted(str(r["name"]) for r in sides.wb_rows("crm/people"))
    assert people == sorted(f"Contact {i}" for i in range(25))
    assert len(await sides.links(Stream.CONTACTS)) == 25

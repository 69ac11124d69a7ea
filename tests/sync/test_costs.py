"""What a run reads follows what changed for its mailbox: Workbooks changes in the user's scope
and links (not every change of the tenant), links by id (not the whole index), pending
addresses of the mailbox (not of every mailbox)."""

from __future__ import annotations

from typing import Any

import pytest

import sync.engine.people  # noqa: F401  (registers the PEOPLE processor)
from sync.core.jobs import JobKind, Stream
from sync.core.state_models import Link
from sync.engine.links import LinkNotLoaded, RunLinks
from sync.state.store import LinkSummary
from tests.sync.conftest import CATEGORY, UPN, Sides, writes

PEOPLE = "crm/people"
COLLEAGUE_QUEUE = "3"


def person(sides: Sides, name: str, email: str, **more: str) -> int:
    return sides.wb_create(PEOPLE, {"name": name, "main_location[email]": email, **more})


async def test_a_reconcile_reads_its_own_changes_not_the_tenants(sides: Sides) -> None:
    mine = [person(sides, f"Mine {i}", f"m{i}@cust.test") for i in range(3)]
    await sides.run(Stream.CONTACTS)
    assert len(sides.outlook_items("contact")) == 3
    others = [
        person(sides, f"Theirs {i}", f"t{i}@cust.test", assigned_to=COLLEAGUE_QUEUE)
        for i in range(20)
    ]
    sides.advance_clock()
    for pid in others:
        sides.wb_edit(PEOPLE, pid, {"person_job_title": "busy elsewhere"})
    sides.wb_edit(PEOPLE, mine[0], {"person_job_title": "Buyer"})
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("workbooks_changes") == 1, run.counts  # not the 20 others
    assert run.counts.get("outlook_update") == 1


async def test_a_record_reassigned_to_a_colleague_is_seen_leaving(sides: Sides) -> None:
    pid = person(sides, "Rita Moves", "rita@cust.test")
    await sides.run(Stream.CONTACTS)
    assert len(sides.outlook_items("contact")) == 1
    sides.advance_clock()
    sides.wb_edit(PEOPLE, pid, {"assigned_to": COLLEAGUE_QUEUE})
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("workbooks_changes") == 1 and run.counts.get("outlook_delete") == 1
    assert sides.outlook_items("contact") == {}  # the service's copy goes; the record stays
    assert not sides.wb_record(PEOPLE, pid).get("is_deleted")


async def test_a_colleagues_record_the_user_shared_keeps_syncing(sides: Sides) -> None:
    pid = person(sides, "Walt Out", "walt@cust.test", assigned_to=COLLEAGUE_QUEUE)
    oid = sides.outlook_create(
        "contact",
        {
            "displayName": "Walt",
            "emailAddresses": [{"address": "walt@cust.test"}],
            "categories": [CATEGORY],
        },
    )
    await sides.run(Stream.CONTACTS, JobKind.PUSH)
    await sides.run(Stream.CONTACTS)
    assert [link.workbooks_id for link in await sides.links(Stream.CONTACTS)] == [pid]
    sides.advance_clock()
    sides.wb_edit(PEOPLE, pid, {"person_job_title": "Chemist"})
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("workbooks_changes") == 1  # linked by id, out of scope
    assert sides.outlook_items("contact")[oid]["jobTitle"] == "Chemist"


async def test_runs_that_touch_few_items_read_links_by_id(sides: Sides) -> None:
    ids = [person(sides, f"P{i} Q", f"p{i}@cust.test") for i in range(30)]
    first = await sides.run(Stream.CONTACTS)
    assert first.counts.get("links_read_whole") == 1  # a new round: every link
    settle = await sides.run(Stream.CONTACTS)  # the contacts it made come back in the delta
    assert settle.counts.get("links_read_whole") == 1  # 30 of 30 links: one range read
    quiet = await sides.run(Stream.CONTACTS)
    assert writes(quiet.counts) == {} and quiet.counts.get("links_read_by_id") == 1
    assert quiet.counts.get("link_reads", 0) == 0  # nothing changed: no link read at all
    sides.advance_clock()
    sides.wb_edit(PEOPLE, ids[7], {"person_job_title": "Owner"})
    one = await sides.run(Stream.CONTACTS)
    assert one.counts.get("outlook_update") == 1 and one.counts.get("link_reads") == 1
    await sides.run(Stream.TODO, JobKind.PUSH)  # the first To Do poll: a new round
    poll = await sides.run(Stream.TODO, JobKind.PUSH)  # the next one: no task, no link read
    assert poll.counts.get("links_read_by_id") == 1 and "link_reads" not in poll.counts


async def test_the_brake_counts_the_links_from_the_summary(sides: Sides) -> None:
    await sides.world.set_policy(UPN, mass_change_share=0.05, mass_change_min_items=2)
    ids = [person(sides, f"B{n} Q", f"b{n}@cust.test") for n in range(60)]
    await sides.run(Stream.CONTACTS)
    await sides.run(Stream.CONTACTS)
    summary = await sides.world.services.store.links.summary(UPN, Stream.CONTACTS)
    assert summary is not None and summary.count == 60 and set(summary.ids) == set(ids)
    sides.advance_clock()
    for pid in ids[:4]:
        await sides.wb_delete(PEOPLE, pid)
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("links_read_by_id") == 1 and run.counts.get("link_reads") == 4
    assert run.counts.get("brake_stopped") == 1 and "4 of 60" in run.message, run.message


async def test_a_missing_or_stale_summary_is_rebuilt_by_a_full_read(sides: Sides) -> None:
    store = sides.world.services.store.links
    ids = [person(sides, f"S{n} T", f"s{n}@cust.test") for n in range(3)]
    await sides.run(Stream.CONTACTS)
    await store.write_summary(UPN, Stream.CONTACTS, LinkSummary({**dict.fromkeys(ids, "x")}))
    table = store._t
    await table.delete(f"{UPN}|{Stream.CONTACTS}", "!summary")
    assert await store.summary(UPN, Stream.CONTACTS) is None
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("links_read_whole") == 1 and writes(run.counts) == {}
    summary = await store.summary(UPN, Stream.CONTACTS)
    assert summary is not None and summary.ids == dict.fromkeys(ids, "Private::Crm::Person")


def _link(i: int) -> Link:
    return Link(
        mailbox=UPN,
        stream="contacts",
        outlook_id=f"AA/{i}",
        workbooks_type="Private::Crm::Person",
        workbooks_id=100 + i,
        unsettled=i == 2,
    )


async def test_run_links_answer_only_what_was_read(sides: Sides) -> None:
    store = sides.world.services.store.links
    await store.put_many([_link(i) for i in range(40)])
    summary = await store.summary(UPN, "contacts")
    assert summary is not None and summary.count == 40 and summary.unsettled == {102}
    links = await RunLinks.open(store, UPN, "contacts", whole=False)
    assert len(links) == 40 and links.unsettled() == {102}
    with pytest.raises(LinkNotLoaded):
        links.by_outlook.get("AA/1")
    with pytest.raises(LinkNotLoaded):
        list(links.by_workbooks.items())
    await links.outlook(["AA/1", "AA/unknown"])
    await links.workbooks([103, 999])  # 999: not in the summary, so unlinked without a read
    assert links.reads == 3 and not links.whole
    found = links.by_outlook.get("AA/1")
    assert found is not None and found.workbooks_id == 101
    assert "AA/unknown" not in links.by_outlook
    assert links.by_workbooks[103].outlook_id == "AA/3" and 999 not in links.by_workbooks
    # a removal leaves the summary only after its rows are gone
    await store.put_many([], removed=[_link(2)], summary=links.persisted)
    assert links.persisted.count == 39 and 102 not in links.persisted.unsettled
    stored = await store.summary(UPN, "contacts")
    assert stored == links.persisted


async def test_asking_for_a_tenth_of_a_small_stream_reads_it_whole(sides: Sides) -> None:
    store = sides.world.services.store.links
    await store.put_many([_link(i) for i in range(5)])
    links = await RunLinks.open(store, UPN, "contacts", whole=False)
    await links.outlook(["AA/1"])  # one range read of 5 links beats any point read
    assert links.whole and links.reads == 0 and len(links.by_outlook) == 5


async def test_retro_reads_only_records_holding_this_mailboxs_pending_addresses(
    sides: Sides,
) -> None:
    world = sides.world
    quiet = await sides.run(Stream.PEOPLE)  # nothing pending: Workbooks is not asked at all
    assert "workbooks_changes" not in quiet.counts
    world.send(UPN, to=["newbie@cust.test"], categories=[CATEGORY])
    await world.run(UPN)
    for i in range(15):
        person(sides, f"Noise {i}", f"noise{i}@else.test")
    pid = person(sides, "Newbie", "newbie@cust.test")
    world.reset_call_counts()
    run = await sides.run(Stream.PEOPLE)
    assert run.counts.get("retro_linked") == 1, run.counts
    assert run.counts.get("workbooks_changes") == 1  # the 15 others are not read
    (email,) = world.emails()
    assert world.links() == [(email["id"], "Private::Crm::Person", pid)]


async def test_many_pending_addresses_fall_back_to_reading_every_change(
    sides: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync.engine import people

    monkeypatch.setattr(people, "MAX_FILTER_ADDRESSES", 1)
    world = sides.world
    world.send(UPN, to=["a@cust.test", "b@cust.test"], categories=[CATEGORY])
    await world.run(UPN)
    person(sides, "Noise", "noise@else.test")
    person(sides, "A", "a@cust.test")
    run: Any = await sides.run(Stream.PEOPLE)
    assert run.counts.get("people_reads_unscoped") == 1 and run.counts.get("retro_linked") == 1
    assert run.counts.get("workbooks_changes", 0) >= 2

"""Identity before creation, through both sandboxes and Azurite: sharing an existing contact,
a second copy, removals the user made, unsharing, and a push that stays one-way."""

from __future__ import annotations

from typing import Any

import pytest

from sync.core.jobs import JobKind, Stream
from sync.engine import twoway
from sync.engine.clients import workbooks_client
from sync.status import status_report
from sync.workbooks.tenant import tenant_schema
from tests.sync.conftest import CATEGORY, UPN, Sides, writes

PEOPLE = "crm/people"
BOB_QUEUE = "3"  # another user's Person queue: out of Ann's scope


def person(sides: Sides, name: str, email: str, **more: str) -> int:
    first, _, last = name.partition(" ")
    values = {"name": name, "person_first_name": first, "person_last_name": last}
    return sides.wb_create(PEOPLE, {**values, "main_location[email]": email, **more})


def own_contact(sides: Sides, name: str, *emails: str, shared: bool = True, **more: Any) -> str:
    first, _, last = name.partition(" ")
    return sides.outlook_create(
        "contact",
        {
            "givenName": first,
            "surname": last,
            "displayName": name,
            "emailAddresses": [{"address": e} for e in emails],
            "categories": [CATEGORY] if shared else [],
            **more,
        },
    )


def people_named(sides: Sides, name: str) -> list[dict[str, Any]]:
    return [r for r in sides.wb_rows(PEOPLE) if r.get("name") == name]


async def items_of(sides: Sides, stream: str = "contacts") -> dict[str, Any]:
    from sync.status import two_way_items

    report = await two_way_items(sides.world.services, UPN, stream)
    return dict(report["streams"][stream])


async def age_scope_read(sides: Sides) -> None:
    def age(cursor: Any) -> Any:
        extra = {**cursor.extra, "workbooks_full_at": "2000-01-01T00:00:00+00:00"}
        return cursor.model_copy(update={"extra": extra})

    await sides.world.services.store.cursors.update(UPN, Stream.CONTACTS, age)


# ------------------------------------------------------------------ sharing an existing contact


@pytest.mark.parametrize("scope", ["mine", "elsewhere"])
async def test_sharing_a_contact_whose_address_a_person_holds_links_to_that_person(
    sides: Sides, scope: str
) -> None:
    more = {} if scope == "mine" else {"assigned_to": BOB_QUEUE}
    pid = person(sides, "Walter White", "walter@cust.test", person_job_title="Teacher", **more)
    await sides.run(Stream.CONTACTS)  # (in scope: the service puts Walter into Outlook)
    before = len(sides.outlook_items("contact"))
    oid = own_contact(
        sides, "Walt White", "WALTER@cust.test", "w@home.test", mobilePhone="+1 555 0199"
    )
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    if scope == "mine":  # the service's Walter already holds the record: a duplicate
        assert run.counts.get("skipped_duplicate_email") == 1, run.counts
        assert len(people_named(sides, "Walt White")) == 0
        return
    assert before == 0 and "workbooks_create" not in run.counts, run.counts
    assert run.counts.get("workbooks_update") == 1 and run.counts.get("outlook_stamp") == 1
    assert [r["id"] for r in sides.wb_rows(PEOPLE)] == [pid]  # no second Person
    row = await sides.wb_get(PEOPLE, pid)
    # Workbooks' values stand; Outlook fills what Workbooks lacked
    assert row["name"] == "Walter White" and row["person_job_title"] == "Teacher"
    assert row["main_location[mobile]"] == "+1 555 0199"
    assert row["main_location[alternate_email]"] == "w@home.test"
    contact = sides.outlook_items("contact")[oid]
    assert str(pid) in contact["_ext"].values()
    assert contact["displayName"] == "Walt White"  # a push never writes Outlook
    (link,) = await sides.links(Stream.CONTACTS)
    assert (link.outlook_id, link.workbooks_id, link.created_by_service) == (oid, pid, False)
    assert link.unsettled
    # the next two-way run gives Outlook Workbooks' values and settles the pair
    run = await sides.run(Stream.CONTACTS)
    contact = sides.outlook_items("contact")[oid]
    assert contact["displayName"] == "Walter White" and contact["jobTitle"] == "Teacher"
    assert [e["address"] for e in contact["emailAddresses"]] == [
        "walter@cust.test",
        "w@home.test",
    ]
    (link,) = await sides.links(Stream.CONTACTS)
    assert not link.unsettled
    # out of My People, yet the user shared it: a scope refresh and a resync keep the pair
    await age_scope_read(sides)
    run = await sides.run(Stream.CONTACTS)
    assert "unlink" not in run.counts and writes(run.counts) == {}, run.counts
    run = await sides.run(Stream.CONTACTS, JobKind.RESYNC)
    assert "unlink" not in run.counts and writes(run.counts) == {}, run.counts
    assert len(await sides.links(Stream.CONTACTS)) == 1
    # and it keeps syncing both ways
    sides.advance_clock()
    sides.wb_edit(PEOPLE, pid, {"person_job_title": "Chemist"})
    sides.outlook_update("contact", oid, {"companyName": "Gray Matter"})
    await sides.run(Stream.CONTACTS)
    assert sides.outlook_items("contact")[oid]["jobTitle"] == "Chemist"
    assert (await sides.wb_get(PEOPLE, pid))["employer_name"] == "Gray Matter"
    assert len(sides.wb_rows(PEOPLE)) == 1 and len(sides.outlook_items("contact")) == 1


async def test_a_contact_details_address_counts_and_a_lead_does_not(sides: Sides) -> None:
    pid = person(sides, "Gale Boetticher", "gale@lab.test", assigned_to=BOB_QUEUE)
    sides.world.contact_detail(pid, "gale@home.test", alternate=True)
    sides.world.lead("Gale Lead", "gale@lead.test")
    linked = own_contact(sides, "Gale B", "gale@home.test")
    created = own_contact(sides, "Other Gale", "gale@lead.test")
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("workbooks_create") == 1, run.counts
    links = {link.outlook_id: link.workbooks_id for link in await sides.links(Stream.CONTACTS)}
    assert links[linked] == pid and links[created] != pid
    assert len(people_named(sides, "Other Gale")) == 1


async def test_several_people_with_the_address_are_ambiguous_nothing_is_created(
    sides: Sides,
) -> None:
    a = person(sides, "Jesse Pinkman", "jesse@cust.test", assigned_to=BOB_QUEUE)
    b = person(sides, "Jesse P", "jesse@cust.test", assigned_to=BOB_QUEUE)
    oid = own_contact(sides, "Jesse", "jesse@cust.test")
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("skipped_ambiguous") == 1, run.counts
    assert "workbooks_create" not in run.counts and "outlook_stamp" not in run.counts
    assert "ambiguous" in run.message
    assert len(sides.wb_rows(PEOPLE)) == 2 and await sides.links(Stream.CONTACTS) == []
    found = await items_of(sides)
    (entry,) = found["ambiguous"]
    assert entry["outlook_id"] == oid and entry["title"] == "Jesse"
    assert sorted(c["workbooks_id"] for c in entry["candidates"]) == sorted([a, b])
    assert "2 Workbooks records hold its addresses" in entry["explanation"]
    report = await status_report(sides.world.services)
    counts = report["mailboxes"][0]["two_way_items"]["contacts"]
    assert counts == {"ambiguous": 1, "duplicate": 0, "removed": 0}
    # nothing happens again until the data is fixed: then editing the contact links it
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}
    await sides.wb_delete(PEOPLE, b)
    sides.outlook_update("contact", oid, {"jobTitle": "Cook"})
    run = await sides.run(Stream.CONTACTS)
    assert [link.workbooks_id for link in await sides.links(Stream.CONTACTS)] == [a]
    assert (await items_of(sides))["ambiguous"] == []


async def test_one_person_in_my_scope_wins_over_others(sides: Sides) -> None:
    person(sides, "Skyler Elsewhere", "sky@cust.test", assigned_to=BOB_QUEUE)
    mine = person(sides, "Skyler White", "sky@cust.test")
    oid = own_contact(sides, "Sky", "sky@cust.test")
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert "skipped_ambiguous" not in run.counts and "workbooks_create" not in run.counts
    (link,) = await sides.links(Stream.CONTACTS)
    assert (link.outlook_id, link.workbooks_id) == (oid, mine)
    run = await sides.run(Stream.CONTACTS)  # Skyler already has her item: no second one
    assert "outlook_create" not in run.counts and len(sides.outlook_items("contact")) == 1
    assert len(sides.wb_rows(PEOPLE)) == 2


async def test_a_contact_without_an_address_creates_a_person(sides: Sides) -> None:
    oid = own_contact(sides, "Saul Goodman")
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_create") == 1 and "identity_lookups" not in run.counts
    (link,) = await sides.links(Stream.CONTACTS)
    assert link.outlook_id == oid


async def test_two_new_contacts_with_one_address_create_one_person(sides: Sides) -> None:
    first = own_contact(sides, "Mike E", "mike@cust.test")
    second = own_contact(sides, "Mike Ehrmantraut", "mike@cust.test")
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("workbooks_create") == 1 and run.counts.get("skipped_duplicate_email")
    (link,) = await sides.links(Stream.CONTACTS)
    assert link.outlook_id == first
    (dup,) = (await items_of(sides))["duplicate"]
    assert (dup["outlook_id"], dup["linked_outlook_id"]) == (second, first)
    assert len(sides.wb_rows(PEOPLE)) == 1 and len(sides.outlook_items("contact")) == 2


async def test_address_lookups_are_one_resolution_per_chunk(
    sides: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync.graph.items import Contacts

    monkeypatch.setattr(Contacts, "page_size", 2)
    monkeypatch.setattr(twoway, "CREATE_CHUNK", 4)
    # The schema's first load (its reads, sync.workbooks.owners' sample) is not counted.
    services = sides.world.services
    mailbox = await services.store.mailboxes.get(UPN)
    assert mailbox is not None
    await tenant_schema(await workbooks_client(services, mailbox))
    for n in range(8):
        own_contact(sides, f"Own {n}", f"own{n}@cust.test")
    sides.world.reset_call_counts()
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_create") == 8 and run.counts.get("create_chunks") == 2
    calls = sides.world.workbooks_calls()
    # per chunk: people main emails, lead emails, Contact Details; not one call per item
    assert calls.get("GET crm/sales_leads") == 2 and calls.get("GET crm/party_locations") == 2
    assert run.counts.get("identity_lookups") == 8


# ------------------------------------------------------------------ one item per record


async def test_a_second_copy_is_a_duplicate_never_a_second_person(sides: Sides) -> None:
    pid = person(sides, "Walter White", "walter@cust.test")
    await sides.run(Stream.CONTACTS)
    ((service_oid, _),) = sides.outlook_items("contact").items()
    own = own_contact(sides, "Walter", "walter@cust.test", shared=False)
    assert writes((await sides.run(Stream.CONTACTS, JobKind.PUSH)).counts) == {}
    sides.outlook_update("contact", own, {"categories": [CATEGORY]})  # the user shares it
    for kind in (JobKind.PUSH, JobKind.RECONCILE, JobKind.RESYNC):
        run = await sides.run(Stream.CONTACTS, kind)
        assert writes(run.counts) == {}, (kind, run.counts)
    assert [r["id"] for r in sides.wb_rows(PEOPLE)] == [pid]
    assert set(sides.outlook_items("contact")) == {service_oid, own}  # both kept
    assert sides.outlook_items("contact")[own]["_ext"] == {}  # the copy is left untouched
    ((link),) = await sides.links(Stream.CONTACTS)
    assert link.outlook_id == service_oid
    (dup,) = (await items_of(sides))["duplicate"]
    assert (dup["outlook_id"], dup["linked_outlook_id"], dup["workbooks_id"]) == (
        own,
        service_oid,
        pid,
    )
    assert f"Person {pid} is already synced with Outlook item {service_oid}" in (dup["explanation"])
    # the user removes the category from the copy: the duplicate report goes
    sides.outlook_update("contact", own, {"categories": []})
    await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert (await items_of(sides))["duplicate"] == []


# ------------------------------------------------------------------ removals are remembered


@pytest.mark.parametrize("origin", ["user", "service"])
async def test_a_contact_deleted_in_outlook_does_not_come_back(sides: Sides, origin: str) -> None:
    if origin == "service":
        pid = person(sides, "Hank Schrader", "hank@dea.test")
        await sides.run(Stream.CONTACTS)
        ((oid, _),) = sides.outlook_items("contact").items()
    else:
        oid = own_contact(sides, "Hank Schrader", "hank@dea.test")
        await sides.run(Stream.CONTACTS, JobKind.PUSH)  # the user's contact becomes a Person
        (pid,) = [int(r["id"]) for r in sides.wb_rows(PEOPLE)]
    sides.outlook_delete("contact", oid)
    remembered = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert remembered.counts.get("unlink") == 1
    assert not sides.wb_record(PEOPLE, pid).get("is_deleted")  # the record stays
    # a full run, a Workbooks edit, a scope refresh, a resync: none brings it back
    sides.advance_clock()
    sides.wb_edit(PEOPLE, pid, {"person_job_title": "ASAC"})
    for step in ("full", "scope refresh", "resync"):
        if step == "scope refresh":
            await age_scope_read(sides)
        kind = {"full": JobKind.MANUAL, "resync": JobKind.RESYNC}.get(step, JobKind.RECONCILE)
        run = await sides.run(Stream.CONTACTS, kind)
        assert sides.outlook_items("contact") == {}, (step, run.counts)
    assert run.counts.get("skipped_removed_by_user") == 1, run.counts
    assert await sides.links(Stream.CONTACTS) == []
    assert remembered.counts.get("removals_remembered") == 1
    (removed,) = (await items_of(sides))["removed"]
    assert (removed["workbooks_id"], removed["how"]) == (pid, "deleted")
    assert "--restore-removed" in removed["explanation"]
    # an operator restores removed items: a resync with restore_removed brings it back
    run = await sides.run(Stream.CONTACTS, JobKind.RESYNC, args={"restore_removed": "1"})
    assert run.counts.get("removals_restored") == 1 and run.counts.get("outlook_create") == 1
    assert (await items_of(sides))["removed"] == []
    assert len(sides.outlook_items("contact")) == 1


async def test_policy_restore_mirrors_my_people_and_delete_deletes(sides: Sides) -> None:
    keep = person(sides, "Marie Schrader", "marie@cust.test")
    gone = person(sides, "Tuco Salamanca", "tuco@cust.test")
    await sides.run(Stream.CONTACTS)
    by_name = {c["displayName"]: oid for oid, c in sides.outlook_items("contact").items()}
    await sides.world.set_policy(UPN, outlook_delete="restore")
    sides.outlook_delete("contact", by_name["Marie Schrader"])
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("unlink") == 1 and "removals_remembered" not in run.counts
    run = await sides.run(Stream.CONTACTS, JobKind.RESYNC)  # the next full read restores it
    assert run.counts.get("outlook_create") == 1
    assert {c["displayName"] for c in sides.outlook_items("contact").values()} == {
        "Marie Schrader",
        "Tuco Salamanca",
    }
    await sides.world.set_policy(UPN, outlook_delete="delete")
    sides.outlook_delete("contact", by_name["Tuco Salamanca"])
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_delete") == 1 and sides.wb_record(PEOPLE, gone)["is_deleted"]
    assert not sides.wb_record(PEOPLE, keep).get("is_deleted")


async def test_delete_policy_never_deletes_a_colleagues_person(sides: Sides) -> None:
    await sides.world.set_policy(UPN, outlook_delete="delete")
    theirs = person(sides, "Lalo Salamanca", "lalo@cust.test", assigned_to=BOB_QUEUE)
    oid = own_contact(sides, "Lalo", "lalo@cust.test")
    await sides.run(Stream.CONTACTS, JobKind.PUSH)  # linked to the colleague's Person
    sides.outlook_delete("contact", oid)
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert "workbooks_delete" not in run.counts and run.counts.get("unlink") == 1, run.counts
    assert not sides.wb_record(PEOPLE, theirs).get("is_deleted")
    assert [r["workbooks_id"] for r in (await items_of(sides))["removed"]] == [theirs]


async def test_removing_the_category_unlinks_and_adding_it_again_relinks(sides: Sides) -> None:
    pid = person(sides, "Gus Fring", "gus@pollos.test")
    await sides.run(Stream.CONTACTS)
    ((oid, _),) = sides.outlook_items("contact").items()
    sides.outlook_update("contact", oid, {"categories": []})
    before = dict(sides.outlook_items("contact")[oid])
    sides.world.graph.sandbox.requests.clear()
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("unlink") == 1 and writes(run.counts) == {}, run.counts
    methods = {m for m, _, _ in sides.world.graph.sandbox.requests}
    assert methods <= {"GET"}  # the item is the user's own again: not written
    for kind in (JobKind.RECONCILE, JobKind.RESYNC):
        run = await sides.run(Stream.CONTACTS, kind)
        assert writes(run.counts) == {}, (kind, run.counts)  # no categorised copy appears
    assert sides.outlook_items("contact") == {oid: before}
    (removed,) = (await items_of(sides))["removed"]
    assert (removed["workbooks_id"], removed["how"]) == (pid, "unshared")
    # sharing it again links it to the same Person (its stamp is still there)
    sides.outlook_update("contact", oid, {"categories": [CATEGORY]})
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("link") == 1 and writes(run.counts) == {}, run.counts
    (link,) = await sides.links(Stream.CONTACTS)
    assert (link.outlook_id, link.workbooks_id) == (oid, pid)
    assert (await items_of(sides))["removed"] == []
    assert len(sides.wb_rows(PEOPLE)) == 1 and len(sides.outlook_items("contact")) == 1
    sides.advance_clock()
    sides.wb_edit(PEOPLE, pid, {"person_job_title": "Owner"})
    await sides.run(Stream.CONTACTS)
    assert sides.outlook_items("contact")[oid]["jobTitle"] == "Owner"


async def test_a_removal_survives_a_run_stopped_before_its_link_is_deleted(
    sides: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    person(sides, "Lydia Rodarte", "lydia@madrigal.test")
    await sides.run(Stream.CONTACTS)
    ((oid, _),) = sides.outlook_items("contact").items()
    sides.outlook_delete("contact", oid)
    store = sides.world.services.store.links
    real = store.put_many

    async def dies(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed before the links were written")

    monkeypatch.setattr(store, "put_many", dies)
    with pytest.raises(RuntimeError, match="killed"):  # the host retries the job later
        await sides.world.run(UPN, Stream.CONTACTS, JobKind.PUSH)
    monkeypatch.setattr(store, "put_many", real)
    assert len(await sides.links(Stream.CONTACTS)) == 1  # the link is still there...
    assert len((await items_of(sides))["removed"]) == 1  # ...and the removal already recorded
    await sides.run(Stream.CONTACTS, JobKind.PUSH)  # the replay finishes the unlink
    for kind in (JobKind.RECONCILE, JobKind.RESYNC):
        assert writes((await sides.run(Stream.CONTACTS, kind)).counts) == {}
    assert sides.outlook_items("contact") == {} and await sides.links(Stream.CONTACTS) == []


# ------------------------------------------------------------------ tasks and events


async def test_a_task_copy_with_our_linked_resource_is_a_duplicate(sides: Sides) -> None:
    from sync.core.mapping.activities import task_linked_resource

    tid = sides.wb_create(
        "activity/tasks",
        {"name": "Call Saul", "activity_type": "Phone call", "activity_status": "New"},
    )
    await sides.run(Stream.TODO)
    ((task_id, _),) = sides.outlook_items("task").items()
    copy = sides.outlook_create(
        "task",
        {
            "title": "Call Saul (copy)",
            "categories": [CATEGORY],
            "linkedResources": [task_linked_resource(tid, "Call Saul")],
        },
    )
    for kind in (JobKind.PUSH, JobKind.RECONCILE):
        run = await sides.run(Stream.TODO, kind)
        assert writes(run.counts) == {}, run.counts
    assert len(sides.wb_rows("activity/tasks")) == 1
    (dup,) = (await items_of(sides, "todo"))["duplicate"]
    assert (dup["outlook_id"], dup["linked_outlook_id"], dup["matched_by"]) == (
        copy,
        task_id,
        "stamp",
    )


async def test_an_event_stamped_for_an_existing_meeting_links_to_it(sides: Sides) -> None:
    from datetime import UTC, datetime, timedelta

    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    mid = sides.wb_create(
        "activity/meetings",
        {
            "name": "Review",
            "start": start.strftime("%Y-%m-%dT%H:%M:%S.000Z,1,UTC"),
            "finish": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z,1,UTC"),
        },
    )
    await sides.run(Stream.EVENTS)
    ((eid, _),) = sides.outlook_items("event").items()
    await sides.world.services.store.links.put_many([], removed=await sides.links(Stream.EVENTS))
    sides.outlook_update("event", eid, {"location": {"displayName": "Room 2"}})
    run = await sides.run(Stream.EVENTS, JobKind.PUSH)
    assert run.counts.get("link") == 1 and "workbooks_create" not in run.counts, run.counts
    (link,) = await sides.links(Stream.EVENTS)
    assert (link.outlook_id, link.workbooks_id) == (eid, mid)
    assert len(sides.wb_rows("activity/meetings")) == 1


# ------------------------------------------------------------------ push is one-way


async def test_a_manual_push_runs_outlook_to_workbooks_only(sides: Sides) -> None:
    from sync.engine.runner import request_manual

    pid = person(sides, "Ted Beneke", "ted@beneke.test")
    await sides.run(Stream.CONTACTS)
    ((oid, _),) = sides.outlook_items("contact").items()
    sides.advance_clock()
    sides.wb_edit(PEOPLE, pid, {"person_job_title": "From Workbooks"})
    sides.outlook_update("contact", oid, {"companyName": "From Outlook"})
    status = await request_manual(sides.world.services, UPN, "push")
    runs = []
    while batch := await sides.world.work_once():
        runs += batch
    contacts = [r for r in runs if r.stream == Stream.CONTACTS]
    assert [r.kind for r in contacts] == [JobKind.PUSH]
    assert (await sides.wb_get(PEOPLE, pid))["employer_name"] == "From Outlook"
    assert sides.outlook_items("contact")[oid].get("jobTitle") != "From Workbooks"
    done = await sides.world.services.store.jobs.get(status.job_id)
    assert done is not None and (done.state, done.streams_done) == ("done", 4)

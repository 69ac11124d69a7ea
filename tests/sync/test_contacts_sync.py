"""Scenario tests: People <-> Outlook contacts through both sandboxes and Azurite."""

from __future__ import annotations

from typing import Any

import pytest

from sync.core.jobs import JobKind, Stream
from sync.engine import twoway
from tests.sync.conftest import CATEGORY, UPN, Sides, writes

PEOPLE = "crm/people"


async def test_workbooks_person_creates_stamped_contact_and_second_run_writes_nothing(
    sides: Sides,
) -> None:
    pid = sides.wb_create(
        PEOPLE,
        {
            "name": "Ann Example",
            "person_first_name": "Ann",
            "person_last_name": "Example",
            "main_location[email]": "ann@cust.test",
            "main_location[town]": "Leeds",
        },
    )
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("outlook_create") == 1, run
    (contact,) = sides.outlook_items("contact").values()
    assert contact["givenName"] == "Ann" and contact["businessAddress"]["city"] == "Leeds"
    assert CATEGORY in contact["categories"]
    assert str(pid) in contact["_ext"].values()
    (link,) = await sides.links(Stream.CONTACTS)
    assert link.workbooks_id == pid and link.created_by_service
    again = await sides.run(Stream.CONTACTS)
    assert writes(again.counts) == {} and "outlook_unseen" not in again.counts, again.counts


def person(sides: Sides, name: str, email: str, **more: str) -> int:
    first, _, last = name.partition(" ")
    return sides.wb_create(
        PEOPLE,
        {
            "name": name,
            "person_first_name": first,
            "person_last_name": last,
            "main_location[email]": email,
            **more,
        },
    )


def contact_by_email(sides: Sides, email: str) -> tuple[str, dict[str, Any]]:
    for oid, c in sides.outlook_items("contact").items():
        if any(e.get("address") == email for e in c.get("emailAddresses", [])):
            return oid, c
    raise AssertionError(f"no contact with {email}")


async def test_shared_outlook_contact_creates_person_push_only(sides: Sides) -> None:
    oid = sides.outlook_create(
        "contact",
        {
            "givenName": "Bob",
            "surname": "Jones",
            "displayName": "Bob Jones",
            "emailAddresses": [{"address": "bob@cust.test"}, {"address": "bob@home.test"}],
            "businessPhones": ["+1 555 0100"],
            "jobTitle": "Buyer",
            "companyName": "Cust Inc",
            "businessAddress": {"city": "Boston", "countryOrRegion": "USA"},
            "categories": [CATEGORY],
        },
    )
    sides.outlook_create("contact", {"displayName": "Private", "categories": []})
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_create") == 1 and run.counts.get("outlook_stamp") == 1
    (row,) = [r for r in sides.wb_rows(PEOPLE) if r.get("name") == "Bob Jones"]
    full = await sides.wb_get(PEOPLE, int(row["id"]))
    assert full["person_job_title"] == "Buyer" and full["employer_name"] == "Cust Inc"
    assert full["main_location[alternate_email]"] == "bob@home.test"
    assert full["main_location[town]"] == "Boston"
    assert full["main_location[telephone]"] == "+1 555 0100"
    item = sides.outlook_items("contact")[oid]
    assert str(row["id"]) in item["_ext"].values()
    (link,) = await sides.links(Stream.CONTACTS)
    assert link.outlook_id == oid and not link.created_by_service
    # the stamp write echoes back through delta; nothing more is written
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}


async def test_create_from_outlook_switch_off(sides: Sides) -> None:
    await sides.world.set_policy("ann@example.com", create_from_outlook=False)
    sides.outlook_create("contact", {"displayName": "Zed", "categories": [CATEGORY]})
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert writes(run.counts) == {} and sides.wb_rows(PEOPLE) == []


async def test_updates_flow_both_ways_and_merge(sides: Sides) -> None:
    pid = person(sides, "Cara Diaz", "cara@cust.test")
    await sides.run(Stream.CONTACTS)
    oid, _ = contact_by_email(sides, "cara@cust.test")
    # Workbooks edit -> Outlook
    sides.advance_clock()
    sides.wb_edit(PEOPLE, pid, {"person_job_title": "CFO"})
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("outlook_update") == 1
    assert sides.outlook_items("contact")[oid]["jobTitle"] == "CFO"
    # Outlook edit -> Workbooks on a push
    sides.outlook_update("contact", oid, {"mobilePhone": "+44 7700 900123"})
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_update") == 1
    assert (await sides.wb_get(PEOPLE, pid))["main_location[mobile]"] == "+44 7700 900123"
    # both sides, different fields: merged without conflict
    sides.advance_clock()
    sides.wb_edit(PEOPLE, pid, {"employer_name": "NewCo"})
    sides.outlook_update("contact", oid, {"surname": "Diaz-Lopez"})
    run = await sides.run(Stream.CONTACTS)
    assert "conflicts" not in run.counts
    assert sides.outlook_items("contact")[oid]["companyName"] == "NewCo"
    assert (await sides.wb_get(PEOPLE, pid))["person_last_name"] == "Diaz-Lopez"
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}


async def test_true_conflict_later_change_wins_and_is_recorded(sides: Sides) -> None:
    pid = person(sides, "Dan Eve", "dan@cust.test")
    await sides.run(Stream.CONTACTS)
    oid, _ = contact_by_email(sides, "dan@cust.test")
    sides.outlook_update("contact", oid, {"jobTitle": "Outlook title"})
    sides.advance_clock(3600)  # the Workbooks edit happens an hour later
    sides.wb_edit(PEOPLE, pid, {"person_job_title": "WB title"})
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("conflicts") == 1, run.counts
    assert "job_title" in run.message and "-> workbooks" in run.message
    assert (await sides.wb_get(PEOPLE, pid))["person_job_title"] == "WB title"
    assert sides.outlook_items("contact")[oid]["jobTitle"] == "WB title"
    # with the policy "outlook", Outlook's side wins whatever the times
    await sides.world.set_policy("ann@example.com", conflict_policy="outlook")
    sides.outlook_update("contact", oid, {"jobTitle": "Outlook again"})
    sides.advance_clock(3600)
    sides.wb_edit(PEOPLE, pid, {"person_job_title": "WB again"})
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("conflicts") == 1 and "-> outlook" in run.message
    assert (await sides.wb_get(PEOPLE, pid))["person_job_title"] == "Outlook again"
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}


async def test_workbooks_delete_removes_service_created_contact(sides: Sides) -> None:
    pid = person(sides, "Eve Fox", "eve@cust.test")
    await sides.run(Stream.CONTACTS)
    assert len(sides.outlook_items("contact")) == 1
    sides.advance_clock()
    await sides.wb_delete(PEOPLE, pid)
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("outlook_delete") == 1
    assert sides.outlook_items("contact") == {} and await sides.links(Stream.CONTACTS) == []


async def test_outlook_delete_unlinks_by_default_and_deletes_with_switch(sides: Sides) -> None:
    keep = person(sides, "Fay Gold", "fay@cust.test")
    gone = person(sides, "Gus Hill", "gus@cust.test")
    await sides.run(Stream.CONTACTS)
    sides.outlook_delete("contact", contact_by_email(sides, "fay@cust.test")[0])
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("unlink") == 1
    assert not sides.wb_record(PEOPLE, keep).get("is_deleted")
    await sides.world.set_policy("ann@example.com", outlook_delete="delete")
    sides.outlook_delete("contact", contact_by_email(sides, "gus@cust.test")[0])
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_delete") == 1
    assert sides.wb_record(PEOPLE, gone).get("is_deleted")
    assert await sides.links(Stream.CONTACTS) == []


async def test_leaving_scope_removes_only_service_created_and_never_deletes_in_workbooks(
    sides: Sides,
) -> None:
    from sync.core.state_models import FilterRule

    mine = person(sides, "Hal Ives", "hal@cust.test", employer_name="Acme")
    other = person(sides, "Ida Jay", "ida@cust.test", employer_name="Beta")
    oid = sides.outlook_create(
        "contact",
        {
            "displayName": "Jo Kay",
            "categories": [CATEGORY],
            "companyName": "Beta",
            "emailAddresses": [{"address": "jo@cust.test"}],
        },
    )
    await sides.run(Stream.CONTACTS)
    assert len(sides.outlook_items("contact")) == 3
    await sides.world.set_policy(
        "ann@example.com",
        people_filters=[FilterRule(field="employer_name", value="Acme")],
        mass_change_min_items=50,
    )
    sides.advance_clock()
    for pid in (other, *[r["id"] for r in sides.wb_rows(PEOPLE) if r.get("name") == "Jo Kay"]):
        sides.wb_edit(PEOPLE, int(pid), {"person_job_title": "touched"})
    run = await sides.run(Stream.CONTACTS)
    left = sides.outlook_items("contact")
    assert oid in left  # the user's own contact stays
    assert run.counts.get("outlook_delete") == 1  # the service-created one is removed
    assert not sides.wb_record(PEOPLE, other).get("is_deleted")
    assert not sides.wb_record(PEOPLE, mine).get("is_deleted")
    # The user shared Jo Kay: the share is its scope, so it stays linked and keeps syncing.
    (jo,) = [r["id"] for r in sides.wb_rows(PEOPLE) if r.get("name") == "Jo Kay"]
    linked = {link.workbooks_id for link in await sides.links(Stream.CONTACTS)}
    assert linked == {mine, int(jo)}
    assert left[oid]["jobTitle"] == "touched"


async def test_mass_change_brake_stops_before_writing(sides: Sides) -> None:
    ids = [person(sides, f"P{n} Q", f"p{n}@cust.test") for n in range(12)]
    await sides.run(Stream.CONTACTS)
    assert len(sides.outlook_items("contact")) == 12
    sides.advance_clock()
    for pid in ids[:10]:
        await sides.wb_delete(PEOPLE, pid)
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("brake_stopped") == 1 and "mass-change brake" in run.message
    assert (
        len(sides.outlook_items("contact")) == 12 and len(await sides.links(Stream.CONTACTS)) == 12
    )
    # an operator confirms: force=1 applies it
    run = await sides.run(Stream.CONTACTS, JobKind.MANUAL, args={"force": "1"})
    assert run.counts.get("outlook_delete") == 10
    assert len(sides.outlook_items("contact")) == 2


async def test_brake_holds_back_deletes_but_new_records_still_arrive(sides: Sides) -> None:
    ids = [person(sides, f"P{n} Q", f"p{n}@cust.test") for n in range(12)]
    await sides.run(Stream.CONTACTS)
    sides.advance_clock()
    for pid in ids[:10]:
        await sides.wb_delete(PEOPLE, pid)
    new = person(sides, "New Person", "new@cust.test")
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("brake_stopped") == 1, run.counts
    assert "outlook_delete" not in run.counts and run.counts.get("outlook_create") == 1
    assert "new items created before the brake: 1" in run.message
    assert len(sides.outlook_items("contact")) == 13
    assert new in {link.workbooks_id for link in await sides.links(Stream.CONTACTS)}
    # the cursors stayed: the next run stops again, and creates nothing twice
    again = await sides.run(Stream.CONTACTS)
    assert again.counts.get("brake_stopped") == 1 and "outlook_create" not in again.counts
    assert len(sides.outlook_items("contact")) == 13


async def test_new_records_are_created_chunk_by_chunk_not_all_held(
    sides: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(twoway, "CREATE_CHUNK", 3)
    ids = [person(sides, f"S{n} T", f"s{n}@cust.test") for n in range(8)]
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("outlook_create") == 8, run.counts
    assert run.counts.get("create_chunks") == 3  # 3 + 3 + 2
    assert run.counts.get("held_max") == 3  # never more than one chunk, not all 8
    assert sorted(link.workbooks_id for link in await sides.links(Stream.CONTACTS)) == ids
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}


async def test_resync_after_token_expiry_rematches_without_duplicates(sides: Sides) -> None:
    for n in range(3):
        person(sides, f"R{n} S", f"r{n}@cust.test")
    sides.outlook_create("contact", {"displayName": "Own", "categories": [CATEGORY]})
    await sides.run(Stream.CONTACTS)
    await sides.run(Stream.CONTACTS)
    sides.world.expire_delta("ann@example.com")
    run = await sides.world.run("ann@example.com", Stream.CONTACTS, JobKind.PUSH)
    assert run.status == "retry" and "resync" in run.message
    run = await sides.run(Stream.CONTACTS, JobKind.RESYNC)
    assert writes(run.counts) == {}, run.counts
    # links lost altogether (e.g. state restored from an old backup): matched by the stamp
    store = sides.world.services.store.links
    await store.put_many([], removed=await sides.links(Stream.CONTACTS))
    run = await sides.run(Stream.CONTACTS, JobKind.RESYNC)
    assert run.counts.get("link") == 4 and "outlook_create" not in run.counts, run.counts
    assert len(sides.outlook_items("contact")) == 4 and len(sides.wb_rows(PEOPLE)) == 4
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}


async def test_notification_job_is_outlook_to_workbooks_only(sides: Sides) -> None:
    pid = person(sides, "No Tify", "note@cust.test")
    await sides.run(Stream.CONTACTS)
    oid, _ = contact_by_email(sides, "note@cust.test")
    mark = (await sides.world.services.store.cursors.get(UPN, Stream.CONTACTS)).watermark
    sides.advance_clock()
    sides.wb_edit(PEOPLE, pid, {"person_job_title": "From WB"})
    sides.outlook_update("contact", oid, {"companyName": "From Outlook"})
    run = await sides.run(Stream.CONTACTS, JobKind.DIRTY)
    assert run.counts.get("workbooks_update") == 1 and "outlook_update" not in run.counts
    assert "workbooks_changes" not in run.counts
    assert (await sides.world.services.store.cursors.get(UPN, Stream.CONTACTS)).watermark == mark
    assert sides.outlook_items("contact")[oid].get("jobTitle") != "From WB"
    # the next reconciliation brings the Workbooks side over
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("outlook_update") == 1
    assert sides.outlook_items("contact")[oid]["jobTitle"] == "From WB"
    row = await sides.wb_get(PEOPLE, pid)
    assert row["employer_name"] == "From Outlook" and row["person_job_title"] == "From WB"


async def _age_scope_read(sides: Sides) -> None:
    """Pretend the last full scoped read was long ago (the refresh is due)."""

    def age(cursor: Any) -> Any:
        extra = {**cursor.extra, "workbooks_full_at": "2000-01-01T00:00:00+00:00"}
        return cursor.model_copy(update={"extra": extra})

    await sides.world.services.store.cursors.update(UPN, Stream.CONTACTS, age)


@pytest.mark.parametrize("by_id", [True, False], ids=["linked-by-id", "too-many-linked"])
async def test_team_queues_count_and_the_scope_refresh_sees_watching(
    sides: Sides, by_id: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devkit.sandbox.workbooks.control import set_watched
    from sync.workbooks import records

    if not by_id:  # past the limit, linked records are not named in the read
        monkeypatch.setattr(records, "MAX_SCOPED_IDS", 0)

    await sides.world.set_policy(UPN, people_queues=[1])  # queue 1 stands for a team queue
    other = person(sides, "Bob Contact", "bob@cust.test", assigned_to="3")  # Bob's queue
    sides.advance_clock()  # the watermark's second holds only the team record
    team = person(sides, "Team Lead", "team@cust.test", assigned_to="1")
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("outlook_create") == 1, run.counts
    assert [link.workbooks_id for link in await sides.links(Stream.CONTACTS)] == [team]
    ann = sides.wb.config.users[0].user_id
    set_watched(sides.wb, ann, PEOPLE, other)  # watching does not move updated_at
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}  # changed-since misses it
    await _age_scope_read(sides)
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("outlook_create") == 1, run.counts
    _, contact = contact_by_email(sides, "bob@cust.test")
    assert contact["displayName"] == "Bob Contact"
    # the refresh just ran: the next runs read changes only again
    set_watched(sides.wb, ann, PEOPLE, other, watched=False)
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}
    await _age_scope_read(sides)
    run = await sides.run(Stream.CONTACTS)
    assert run.counts.get("outlook_delete") == 1, run.counts
    # Named by id, the unwatched record is read and found out of scope; past the limit, the
    # full read does not return it and it is taken as having left the scope.
    assert run.counts.get("workbooks_unseen") == (None if by_id else 1), run.counts
    assert [link.workbooks_id for link in await sides.links(Stream.CONTACTS)] == [team]
    assert not sides.wb_record(PEOPLE, other).get("is_deleted")  # never deleted in Workbooks


async def test_new_shared_contacts_become_people_chunk_by_chunk_during_the_round(
    sides: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync.graph.items import Contacts

    monkeypatch.setattr(Contacts, "page_size", 2)  # 7 contacts come in 4 delta pages
    monkeypatch.setattr(twoway, "CREATE_CHUNK", 3)
    oids = [
        sides.outlook_create("contact", {"displayName": f"Shared {n}", "categories": [CATEGORY]})
        for n in range(7)
    ]
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_create") == 7 and run.counts.get("outlook_stamp") == 7
    assert run.counts.get("create_chunks") == 2  # after pages 2 and 4
    assert run.counts.get("held_max") == 4  # a chunk plus one page, never all 7
    links = await sides.links(Stream.CONTACTS)
    assert sorted(link.outlook_id for link in links) == sorted(oids)
    assert len(sides.wb_rows(PEOPLE)) == 7
    assert writes((await sides.run(Stream.CONTACTS)).counts) == {}
    assert len(sides.wb_rows(PEOPLE)) == 7

"""The service against a Workbooks sandbox configured to each plausible alternative of the
unconfirmed points, end to end (Graph sandbox, Workbooks sandbox, Azurite, the real runner):
each of these requests used to be refused or misread under its alternative.

1. lead email fields other than the default; 2. Contact Details without ``party[...]``;
3. ``watched`` not filterable; 4. meetings without (or with another) location column;
5. the email-link mechanism (tests/emails runs under each; ``none`` and orphans below and in
tests/emails/test_link_strategies.py); 6. Rails' "Couldn't find" texts; 7. a dead session
redirected to its own URL.  Also: the mailbox's time zone when the policy sets none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import sync.engine.activities
import sync.engine.contacts
import sync.engine.emails
import sync.engine.people  # noqa: F401  (registers the processors)
from devkit.sandbox.workbooks import SandboxConfig
from devkit.sandbox.workbooks.control import expire_sessions, seed, set_watched
from sync.core.email_linking import LEAD, PERSON
from sync.core.errors import InvalidRequest
from sync.core.jobs import JobKind, Stream
from sync.engine.clients import mailbox_time_zone
from sync.engine.emails import explain
from tests.support.world import World, world_running
from tests.sync.conftest import CATEGORY, Sides

ANN = "ann@example.com"
SHARED = [CATEGORY]
BOB_ID = 29199


@asynccontextmanager
async def world_with(azurite: str, **config: Any) -> AsyncIterator[World]:
    wcfg = SandboxConfig(sim_controls=True, concurrency_cap=None, **config)
    async with world_running(azurite, workbooks_config=wcfg) as w:
        await w.add_mailbox(ANN, internal_domains=["example.com"])
        yield w


def email_id(w: World) -> int:
    (email,) = w.emails()
    return int(email["id"])


# ----------------------------------------------------------------------------- 1. lead fields


async def test_org_only_lead_fields_match_people_and_leads(azurite_connection: str) -> None:
    async with world_with(
        azurite_connection, lead_email_fields=["org_lead_party[main_location[email]]"]
    ) as w:
        pid = w.person("Pat", "pat@cust.com")
        [lead] = w.seed(
            "crm/sales_leads",
            [
                {
                    "org_lead_party[name]": "Prospect",
                    "org_lead_party[main_location[email]]": "info@pro.com",
                }
            ],
        )
        w.send(ANN, to=["pat@cust.com", "info@pro.com"], categories=SHARED)
        run = await w.run(ANN)
        assert run.status == "ok", run.message
        assert w.links() == sorted([(email_id(w), PERSON, pid), (email_id(w), LEAD, lead["id"])])
        assert "person_lead_party[main_location[email]] does not exist" in run.message
        people = await w.run(ANN, Stream.PEOPLE, JobKind.RECONCILE)  # reads lead addresses too
        assert people.status == "ok", people.message


async def test_no_usable_lead_field_still_matches_people_and_says_how_to_fix(
    azurite_connection: str,
) -> None:
    async with world_with(azurite_connection, lead_email_fields=["person_lead_party[email]"]) as w:
        pid = w.person("Pat", "pat@cust.com")
        w.seed("crm/sales_leads", [{"person_lead_party[email]": "lee@pro.com"}])
        w.send(ANN, to=["pat@cust.com", "lee@pro.com"], categories=SHARED)
        run = await w.run(ANN)
        assert run.status == "ok", run.message
        assert w.links() == [(email_id(w), PERSON, pid)]
        assert "set WORKBOOKS_LEAD_EMAIL_FIELDS to one of: person_lead_party[email]" in run.message


# ----------------------------------------------------------------------------- 2. party columns


async def test_contact_details_without_party_columns_find_their_owners(
    azurite_connection: str,
) -> None:
    async with world_with(azurite_connection, party_columns=False) as w:
        owner = w.person("Olly", "olly@cust.com")
        w.contact_detail(owner, "olly.private@home.net", alternate=True)
        lid = w.lead("Lee", "lee@pro.com")
        party = w.workbooks.state.tables["crm/sales_leads"][lid]["person_lead_party_id"]
        w.seed("crm/party_locations", [{"party_id": party, "email": "lee.work@pro.com"}])
        gone = w.person("Gone", "gone@cust.com")  # deleted: its Contact Details match nothing
        w.contact_detail(gone, "gone.private@home.net", alternate=True)
        w.workbooks.state.tables["crm/people"][gone]["is_deleted"] = True
        w.send(
            ANN,
            to=["olly.private@home.net", "lee.work@pro.com", "gone.private@home.net"],
            categories=SHARED,
        )
        run = await w.run(ANN)
        assert run.status == "ok", run.message
        assert w.links() == sorted([(email_id(w), PERSON, owner), (email_id(w), LEAD, lid)])
        assert "Contact Details owners are looked up by id" in run.message
        pending = await w.services.store.pending.for_address(ANN, "gone.private@home.net")
        assert len(list(pending)) == 1  # waits for a live record


# ----------------------------------------------------------------------------- 3. watched


async def test_watched_not_filterable_syncs_assigned_records_and_says_so(
    azurite_connection: str,
) -> None:
    async with world_with(azurite_connection, watched_filterable=False) as w:
        sides = Sides(w)
        state = w.workbooks.state
        sides.wb_create("crm/people", {"name": "Mine Person", "main_location[email]": "m@x.com"})
        [theirs] = seed(state, "crm/people", [{"name": "Watched Person"}], user_id=BOB_ID)
        set_watched(state, 29198, "crm/people", theirs["id"])
        run = await sides.run(Stream.CONTACTS)
        names = [c["displayName"] for c in sides.outlook_items("contact").values()]
        assert names == ["Mine Person"]
        assert "watched records are not synced: `watched` is not filterable" in run.message
        sides.wb_create("activity/tasks", {"name": "My task"})
        [task] = seed(state, "activity/tasks", [{"name": "Watched task"}], user_id=BOB_ID)
        set_watched(state, 29198, "activity/tasks", task["id"])
        run = await sides.run(Stream.TODO)
        assert [t["title"] for t in sides.outlook_items("task").values()] == ["My task"]
        assert "watched records are not synced" in run.message
        assert writes_nothing(await sides.run(Stream.CONTACTS))  # stable: no flip-flop


async def test_a_tenant_changed_under_the_kept_schema_costs_one_failed_run(
    azurite_connection: str,
) -> None:
    """The schema is kept for hours (``WORKBOOKS_SCHEMA_TTL_SECONDS``), but a run Workbooks
    refuses as malformed drops it: the change costs one failed run, not hours of them."""
    async with world_with(azurite_connection) as w:
        sides = Sides(w)
        sides.wb_create("crm/people", {"name": "Mine Person", "main_location[email]": "m@x.com"})
        await sides.run(Stream.CONTACTS)  # the schema read: `watched` may be filtered on
        w.workbooks.state.configure({"watched_filterable": False})
        w.reset_call_counts()
        with pytest.raises(InvalidRequest, match="GET crm/people failed") as refused:
            await w.run(ANN, Stream.CONTACTS, JobKind.RECONCILE)
        assert "cannot be used in a filter" in (refused.value.detail or "")
        assert "GET metadata/types" not in w.workbooks_calls()  # the kept schema was used
        run = await sides.run(Stream.CONTACTS)
        assert "watched records are not synced: `watched` is not filterable" in run.message
        assert w.workbooks_calls()["GET metadata/types"] >= 1  # read again after the refusal


def writes_nothing(run: Any) -> bool:
    from tests.sync.conftest import writes

    return writes(run.counts) == {}


# ----------------------------------------------------------------------------- 4. location


def _event(subject: str, location: str) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    end = start + timedelta(hours=1)
    fmt = "%Y-%m-%dT%H:%M:%S.0000000"
    return {
        "subject": subject,
        "isAllDay": False,
        "start": {"dateTime": start.strftime(fmt), "timeZone": "UTC"},
        "end": {"dateTime": end.strftime(fmt), "timeZone": "UTC"},
        "location": {"displayName": location},
        "categories": SHARED,
    }


async def test_meetings_without_a_location_column_sync_and_keep_outlook_locations(
    azurite_connection: str,
) -> None:
    async with world_with(azurite_connection, meeting_location_field=None) as w:
        sides = Sides(w)
        eid = sides.outlook_create("event", _event("Lunch", "Cafe"))
        run = await sides.run(Stream.EVENTS)
        assert run.counts.get("workbooks_create") == 1, (run.counts, run.message)
        assert "location is not synced: activity/meetings has no 'location' column" in run.message
        [row] = sides.wb_rows("activity/meetings")
        assert row["name"] == "Lunch" and "location" not in row
        for _ in range(2):  # reconciles never clear the Outlook location
            sides.advance_clock()
            again = await sides.run(Stream.EVENTS)
            assert writes_nothing(again), again.counts
        assert sides.outlook_items("event")[eid]["location"]["displayName"] == "Cafe"
        # a location edited in Outlook stays in Outlook; the rest of the meeting still syncs
        sides.outlook_update(
            "event", eid, {"location": {"displayName": "Canteen"}, "subject": "Brunch"}
        )
        run = await sides.run(Stream.EVENTS, JobKind.PUSH)
        assert run.counts.get("workbooks_update") == 1 and not run.counts.get("item_errors")
        assert sides.wb_rows("activity/meetings")[0]["name"] == "Brunch"
        sides.advance_clock()
        assert writes_nothing(await sides.run(Stream.EVENTS))
        assert sides.outlook_items("event")[eid]["location"]["displayName"] == "Canteen"
        # a Workbooks meeting still becomes an event
        start = datetime.now(UTC) + timedelta(days=5)
        stamp = "%Y-%m-%dT%H:%M:%S.000Z,1,UTC"
        sides.wb_create(
            "activity/meetings",
            {
                "name": "Review",
                "start": start.strftime(stamp),
                "finish": (start + timedelta(hours=1)).strftime(stamp),
            },
        )
        run = await sides.run(Stream.EVENTS)
        assert run.counts.get("outlook_create") == 1, run.counts


async def test_a_renamed_location_column_syncs_through_the_setting(
    azurite_connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBOOKS_MEETING_LOCATION_FIELD", "venue")
    async with world_with(azurite_connection, meeting_location_field="venue") as w:
        sides = Sides(w)
        sides.outlook_create("event", _event("Lunch", "Cafe"))
        run = await sides.run(Stream.EVENTS)
        assert run.counts.get("workbooks_create") == 1, (run.counts, run.message)
        [row] = sides.wb_rows("activity/meetings")
        assert row["venue"] == "Cafe"


# ----------------------------------------------------------------------------- 5. link strategies


@pytest.mark.parametrize("strategy", ["association", "render_with", "none"])
async def test_no_link_endpoint_means_no_orphan_email(
    azurite_connection: str, strategy: str
) -> None:
    async with world_with(azurite_connection, email_link_strategy=strategy) as w:
        pid = w.person("Pat", "pat@cust.com")
        mid = w.send(ANN, to=["pat@cust.com"], categories=SHARED)
        run = await w.run(ANN)
        assert run.status == "ok", run.message
        assert "PUT email/email_links" not in w.workbooks_calls()
        if strategy == "none":
            assert w.emails() == [] and run.counts.get("linking_disabled") == 1
            assert "email linking is disabled" in run.message
            record = await explain(w.services, ANN, mid)
            assert record["state"] == "pending" and record["workbooks_email_id"] is None
            assert "email linking is disabled for this tenant" in record["explanation"]["error"]
        else:
            assert w.links() == [(email_id(w), PERSON, pid)]


# ----------------------------------------------------------------------------- 6. not found


async def test_rails_not_found_on_delete_is_already_gone(azurite_connection: str) -> None:
    async with world_with(azurite_connection, not_found_text="rails") as w:
        sides = Sides(w)
        pid = sides.wb_create("crm/people", {"name": "Gus Hill", "main_location[email]": "g@x.com"})
        await sides.run(Stream.CONTACTS)
        await w.set_policy(ANN, outlook_delete="delete")
        await sides.wb_delete("crm/people", pid)  # deleted in Workbooks meanwhile
        [oid] = sides.outlook_items("contact")
        sides.outlook_delete("contact", oid)
        run = await sides.run(Stream.CONTACTS, JobKind.PUSH)  # Outlook -> Workbooks only
        assert not run.counts.get("item_errors"), run.message
        assert await sides.links(Stream.CONTACTS) == []


# ----------------------------------------------------------------------------- 7. dead session


@pytest.mark.parametrize("location", ["same", "401"])
async def test_a_dead_session_is_logged_in_again(azurite_connection: str, location: str) -> None:
    async with world_with(azurite_connection, dead_session_location=location) as w:
        pid = w.person("Pat", "pat@cust.com")
        w.send(ANN, to=["pat@cust.com"], categories=SHARED)
        assert (await w.run(ANN)).status == "ok"
        expire_sessions(w.workbooks.state)
        w.send(ANN, to=["pat@cust.com"], subject="second", categories=SHARED)
        run = await w.run(ANN)
        assert run.status == "ok", run.message
        assert [r for _, _, r in w.links()] == [pid, pid]
        assert w.workbooks.state.stats["POST login.api"] == 2
        assert w.workbooks.state.stats["throttled"] == 0


# ----------------------------------------------------------------------------- time zones


async def test_the_mailbox_zone_comes_from_the_policy_workbooks_or_outlook(
    azurite_connection: str,
) -> None:
    async with world_with(azurite_connection) as w:
        services = w.services
        users = w.workbooks.state.config.users
        users[0].time_zone = "Pacific Time (US & Canada) (GMT-08:00)"
        mailbox = await services.store.mailboxes.get(ANN)
        assert mailbox is not None and mailbox.policy.time_zone is None
        assert await mailbox_time_zone(services, mailbox) == "America/Los_Angeles"
        explicit = await w.set_policy(ANN, time_zone="Asia/Tokyo")
        assert await mailbox_time_zone(services, explicit) == "Asia/Tokyo"
    async with world_with(azurite_connection) as w:
        w.workbooks.state.config.users[0].time_zone = "Atlantis (GMT+01:00)"  # unknown name
        w.graph.sandbox.state.mailbox(ANN).time_zone = "W. Europe Standard Time"
        mailbox = await w.services.store.mailboxes.get(ANN)
        assert mailbox is not None
        assert await mailbox_time_zone(w.services, mailbox) == "Europe/Berlin"
    async with world_with(azurite_connection) as w:
        w.workbooks.state.config.users[0].time_zone = ""
        w.graph_fault(status=403, path="mailboxSettings", code="ErrorAccessDenied")
        mailbox = await w.services.store.mailboxes.get(ANN)
        assert mailbox is not None
        assert await mailbox_time_zone(w.services, mailbox) == "UTC"


async def test_a_derived_zone_decides_a_due_date(azurite_connection: str) -> None:
    async with world_with(azurite_connection) as w:
        w.workbooks.state.config.users[0].time_zone = "Pacific Time (US & Canada) (GMT-08:00)"
        sides = Sides(w)
        # 04:30 UTC on the 10th is the evening of the 9th in Los Angeles (UTC: the 10th)
        sides.wb_create("activity/tasks", {"name": "Call", "due": "2030-03-10T04:30:00.000Z,1,UTC"})
        await sides.run(Stream.TODO)
        (task,) = sides.outlook_items("task").values()
        assert task["dueDateTime"]["dateTime"].startswith("2030-03-09")


def test_a_policy_zone_must_be_a_real_zone() -> None:
    from pydantic import ValidationError

    from sync.core.state_models import MailboxPolicy

    assert MailboxPolicy(time_zone=" Europe/Paris ").time_zone == "Europe/Paris"
    assert MailboxPolicy(time_zone="").time_zone is None
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        MailboxPolicy(time_zone="Mars/Olympus")


async def test_workbooks_checks_name_a_key_that_cannot_be_used(azurite_connection: str) -> None:
    from sync.engine.clients import workbooks_checks

    async with world_with(azurite_connection) as w:
        mailbox = await w.services.store.mailboxes.get(ANN)
        assert mailbox is not None
        unreadable = mailbox.model_copy(update={"api_key_ref": "env:WB_KEY_NOT_SET_ANYWHERE"})
        [check] = await workbooks_checks(w.services, unreadable)
        assert (check.name, check.status) == ("workbooks.api_key", "fail")
        assert "WB_KEY_NOT_SET_ANYWHERE" in check.fix
        wrong = await w.add_mailbox("bob@example.com", api_key="wrong-key")
        checks = await workbooks_checks(w.services, wrong)
        assert [(c.name, c.status) for c in checks] == [("workbooks.login", "fail")]
        good = {c.name: c.status for c in await workbooks_checks(w.services, mailbox)}
        assert good["workbooks.login"] == "ok" and good["mailbox.time_zone"] == "ok"
        assert "fail" not in good.values()

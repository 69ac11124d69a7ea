"""Whether a deleted record's Contact Details are listed [INF] (``sync.workbooks.owners``): the
rule that reads the tenant's own rows, and address resolution in each mode against sandboxes
that list them and that hide them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from devkit.sandbox.workbooks import SandboxConfig, running_sandbox
from devkit.sandbox.workbooks.control import seed
from devkit.sandbox.workbooks.store import SandboxState
from sync.workbooks import WorkbooksClient, WorkbooksIdentity
from sync.workbooks.owners import CHECK, Evidence, decide, gather
from sync.workbooks.queries import resolve_addresses
from sync.workbooks.tenant import Tenant, tenant_schema, verify

from .conftest import ANN_KEY, BOB_KEY, FAST
from .sandbox_support import seed_deleted_owners

# ----------------------------------------------------------------------------- the rule

LIVE = (("person", 1, "a@x.com"), ("person", 2, "b@x.com"))
DELETED = (("person", 9, "gone@x.com"),)
LISTED_MAINS = frozenset(LIVE)
STILL_LISTED = LISTED_MAINS | {("person", 9, "gone@x.com")}
ONE_MAIN = frozenset({("person", 1, "a@x.com")})


@pytest.mark.parametrize(
    ("setting", "evidence", "mode", "status"),
    [
        # both facts shown: the shortcut, whatever the setting but "listed"
        ("auto", Evidence(LIVE, DELETED, LISTED_MAINS), "hidden", "ok"),
        ("hidden", Evidence(LIVE, DELETED, LISTED_MAINS), "hidden", "ok"),
        # a deleted Person still owns a listed row
        ("auto", Evidence(LIVE, DELETED, STILL_LISTED), "listed", "ok"),
        ("hidden", Evidence(LIVE, DELETED, STILL_LISTED), "listed", "warn"),
        # a live Person's main email is not among Contact Details
        ("auto", Evidence(LIVE, DELETED, ONE_MAIN), "listed", "ok"),
        ("hidden", Evidence(LIVE, DELETED, ONE_MAIN), "listed", "warn"),
        # nothing deleted to look at: auto stays cautious, hidden is taken at its word
        ("auto", Evidence(LIVE, (), LISTED_MAINS), "listed", "ok"),
        ("hidden", Evidence(LIVE, (), LISTED_MAINS), "hidden", "warn"),
        ("auto", Evidence((), DELETED, frozenset()), "listed", "ok"),
        ("auto", Evidence(unread="throttled"), "listed", "ok"),
        ("hidden", Evidence(unread="throttled"), "hidden", "warn"),
    ],
)
def test_the_rule(setting: str, evidence: Evidence, mode: str, status: str) -> None:
    settled = decide(setting, evidence)
    assert (settled.mode, settled.check.name, settled.check.status) == (mode, CHECK, status)
    assert not settled.leads_in_details  # no lead was sampled
    if status == "warn":
        assert "WORKBOOKS_DELETED_OWNER_LOCATIONS" in settled.check.fix


LEADS_LIVE = (("lead", 5, "l@x.com"), ("lead", 5, "l.org@x.com"))
LEADS_GONE = (("lead", 6, "gone.lead@x.com"),)


@pytest.mark.parametrize(
    ("live", "gone", "listed", "in_details"),
    [
        # every email of each live lead is a row of that lead; no deleted lead's row listed
        (LEADS_LIVE, LEADS_GONE, frozenset(LEADS_LIVE), True),
        # one of a live lead's emails is not a row (e.g. a column that is not a location)
        (LEADS_LIVE, LEADS_GONE, frozenset(LEADS_LIVE[:1]), False),
        # a deleted lead's row still listed
        (LEADS_LIVE, LEADS_GONE, frozenset(LEADS_LIVE + LEADS_GONE), False),
        # no deleted lead to look at, or no live one: the Sales Leads read stays
        (LEADS_LIVE, (), frozenset(LEADS_LIVE), False),
        ((), LEADS_GONE, frozenset(), False),
        # the row names another owner (the lead's party as a Person, say)
        (LEADS_LIVE, LEADS_GONE, frozenset({("other", 5, "l@x.com"), LEADS_LIVE[1]}), False),
    ],
)
def test_the_sales_leads_rule(
    live: tuple[Any, ...], gone: tuple[Any, ...], listed: frozenset[Any], in_details: bool
) -> None:
    people = Evidence(LIVE + live, DELETED + gone, LISTED_MAINS | listed)
    assert decide("auto", people).leads_in_details is in_details
    # never without the People shortcut itself
    still = Evidence(LIVE + live, DELETED + gone, STILL_LISTED | listed)
    assert not decide("auto", still).leads_in_details
    assert not decide("listed", people).leads_in_details


def test_the_rule_says_what_it_saw() -> None:
    check = decide("auto", Evidence(LIVE, DELETED, STILL_LISTED)).check
    assert "deleted People 9 still have Contact Details listed" in check.message
    check = decide("auto", Evidence(LIVE, DELETED, ONE_MAIN)).check
    assert "People 2: an email not among Contact Details" in check.message
    check = decide("auto", Evidence(LIVE, (), LISTED_MAINS)).check
    assert "not shown either way" in check.message and "=hidden" in check.fix
    settled = decide("hidden", None, "Contact Details rows do not name their owner")
    assert settled.mode == "listed" and settled.check.message.endswith("do not name their owner")
    check = decide("auto", Evidence(LIVE + LEADS_LIVE, DELETED, LISTED_MAINS)).check
    assert "Sales Leads read apart" in check.message and "no deleted Sales Lead" in check.message


# ----------------------------------------------------------------------------- on a tenant


@asynccontextmanager
async def tenant(
    hides: bool, setting: str = "auto", lead_rows: bool = False
) -> AsyncIterator[tuple[SandboxState, Any]]:
    config = SandboxConfig(
        deleted_owner_locations="hidden" if hides else "listed", lead_party_locations=lead_rows
    )
    async with running_sandbox(config) as sb:
        yield sb.state, (sb.base_url, dataclasses.replace(FAST, deleted_owner_locations=setting))


@asynccontextmanager
async def client_of(where: tuple[str, Any]) -> AsyncIterator[WorkbooksClient]:
    async with WorkbooksClient(WorkbooksIdentity(where[0], SecretStr(ANN_KEY)), where[1]) as wb:
        yield wb


ADDRESSES = [
    "live@x.com",
    "gone@x.com",
    "gone.alt@y.com",
    "shared@y.com",
    "l@x.com",
    "k@x.com",
    "lead.work@y.com",
    "nobody@x.com",
]


async def resolved(wb: WorkbooksClient) -> tuple[dict[str, list[tuple[str, int]]], dict[str, int]]:
    """Who holds each address, and the reads it took (the schema loaded beforehand)."""
    await tenant_schema(wb)
    wb.calls.clear()
    found = await resolve_addresses(wb, ADDRESSES)
    summary = {
        a: [(m.record_type.split("::")[-1], m.record_id) for m in ms] for a, ms in found.items()
    }
    return summary, {k: n for k, n in wb.calls.items() if k.startswith("GET")}


def expected(rows: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    live = [("Person", rows["live"]["id"])]
    return {
        "live@x.com": live,
        "gone@x.com": [],
        "gone.alt@y.com": [],
        "shared@y.com": live,
        "l@x.com": [],
        "k@x.com": [("SalesLead", rows["kept"]["id"])],
        "lead.work@y.com": [],
        "nobody@x.com": [],
    }


async def mode_of(wb: WorkbooksClient) -> tuple[str, Any]:
    settled: Tenant = await tenant_schema(wb)
    [check] = [c for c in settled.checks if c.name == CHECK]
    return settled.owner_locations, check


async def test_a_tenant_that_hides_them_is_resolved_in_two_reads_side_by_side() -> None:
    async with tenant(hides=True) as (state, where):
        rows = seed_deleted_owners(state)
        async with client_of(where) as wb:
            mode, check = await mode_of(wb)
            assert (mode, check.status) == ("hidden", "ok"), check
            summary, gets = await resolved(wb)
    assert summary == expected(rows)
    assert gets == {"GET crm/party_locations": 1, "GET crm/sales_leads": 1}


async def test_where_lead_emails_are_contact_details_too_one_read_answers() -> None:
    async with tenant(hides=True, lead_rows=True) as (state, where):
        rows = seed_deleted_owners(state)
        async with client_of(where) as wb:
            mode, check = await mode_of(wb)
            assert (mode, check.status) == ("hidden", "ok"), check
            assert "Sales Leads too, so one read answers a lookup" in check.message
            summary, gets = await resolved(wb)
    assert summary == expected(rows)
    assert gets == {"GET crm/party_locations": 1}


async def test_lead_emails_among_contact_details_are_not_enough_where_deleted_ones_are_listed() -> (
    None
):
    async with tenant(hides=False, lead_rows=True) as (state, where):
        rows = seed_deleted_owners(state)
        async with client_of(where) as wb:
            settled = await tenant_schema(wb)
            assert (settled.owner_locations, settled.lead_locations) == ("listed", False)
            summary, gets = await resolved(wb)
    assert summary == expected(rows)
    assert gets == {"GET crm/party_locations": 1, "GET crm/people": 1, "GET crm/sales_leads": 1}


async def test_a_tenant_that_lists_them_is_resolved_confirming_every_owner() -> None:
    async with tenant(hides=False) as (state, where):
        rows = seed_deleted_owners(state)
        async with client_of(where) as wb:
            mode, check = await mode_of(wb)
            assert (mode, check.status) == ("listed", "ok")
            assert "still have Contact Details listed" in check.message
            summary, gets = await resolved(wb)
    assert summary == expected(rows)
    assert gets == {"GET crm/party_locations": 1, "GET crm/people": 1, "GET crm/sales_leads": 1}


async def test_hidden_set_on_a_tenant_that_lists_them_is_overruled() -> None:
    """The admin's word does not stand against the tenant's own rows: trusting them here
    would link an email to a deleted Person."""
    async with tenant(hides=False, setting="hidden") as (state, where):
        rows = seed_deleted_owners(state)
        async with client_of(where) as wb:
            mode, check = await mode_of(wb)
            assert (mode, check.status) == ("listed", "warn")
            summary, _ = await resolved(wb)
    assert summary == expected(rows)


async def test_trusting_them_where_they_are_listed_would_link_deleted_records() -> None:
    """What the rule guards against: the shortcut on a tenant that lists a deleted record's
    Contact Details matches the deleted Person (so the check above is not idle)."""
    async with tenant(hides=False) as (state, where):
        rows = seed_deleted_owners(state)
        async with client_of(where) as wb:
            settled = await tenant_schema(wb)
            settled.owner_locations = "hidden"
            summary, _ = await resolved(wb)
    assert ("Person", rows["gone"]["id"]) in summary["gone.alt@y.com"]


async def test_listed_reads_nothing_to_decide() -> None:
    async with tenant(hides=True, setting="listed") as (state, where):
        rows = seed_deleted_owners(state)
        async with client_of(where) as wb:
            await wb.ensure_login()
            mode, check = await mode_of(wb)
            assert not any(k.startswith("GET crm/") for k in wb.calls)
            assert (mode, check.status) == ("listed", "ok")
            summary, gets = await resolved(wb)
    assert summary == expected(rows)
    assert gets["GET crm/people"] == 1


async def test_without_a_deleted_person_auto_stays_cautious() -> None:
    async with tenant(hides=True) as (state, where):
        seed(state, "crm/people", [{"name": "Live", "main_location[email]": "live@x.com"}])
        async with client_of(where) as wb:
            mode, check = await mode_of(wb)
    assert (mode, check.status) == ("listed", "ok")
    assert "no deleted Person with an email" in check.message


async def test_a_refused_contact_details_read_falls_back_to_people() -> None:
    """A tenant that stops answering the Contact Details read (a permission taken away after
    the schema was loaded) still has its People matched by their main email."""
    async with tenant(hides=True) as (state, where):
        rows = seed_deleted_owners(state)
        async with client_of(where) as wb:
            assert (await mode_of(wb))[0] == "hidden"
            state.configure({"party_columns": False})  # party[...] now refused by name
            wb.calls.clear()
            found = await resolve_addresses(wb, ["live@x.com", "k@x.com"])
            assert [m.record_id for m in found["live@x.com"]] == [rows["live"]["id"]]
            assert [m.record_id for m in found["k@x.com"]] == [rows["kept"]["id"]]
            assert wb.calls["GET crm/people"] == 1
            settled = await tenant_schema(wb)
            assert settled.owner_locations == "listed"
            assert any(
                "Contact Details read refused" in n for n in settled.notes_for("party_locations")
            )


async def test_doctor_shows_the_finding() -> None:
    async with tenant(hides=True) as (state, where):
        seed_deleted_owners(state)
        async with client_of(where) as wb:
            checks = {c.name: c for c in await verify(wb)}
    assert checks[CHECK].status == "ok"
    assert "Contact Details alone name the live owners" in checks[CHECK].message


async def test_without_party_columns_nothing_is_sampled() -> None:
    """Rows that do not name their owner need the People read anyway: no sample is read."""
    config = SandboxConfig(deleted_owner_locations="hidden", party_columns=False)
    async with running_sandbox(config) as sb:
        seed_deleted_owners(sb.state)
        async with client_of((sb.base_url, FAST)) as wb:
            await wb.ensure_login()
            mode, check = await mode_of(wb)
            assert not any(k.startswith("GET crm/") for k in wb.calls)
    assert mode == "listed" and "do not name their owner" in check.message


async def test_one_look_serves_every_user_of_the_database() -> None:
    """The facts belong to the database: a second user's client sharing the first's map reads
    no sample, a client of its own does, and a doctor run (``verify``) looks again."""
    shared: dict[str, Any] = {}
    async with tenant(hides=True) as (state, where):
        seed_deleted_owners(state)
        ann_identity = WorkbooksIdentity(where[0], SecretStr(ANN_KEY))
        async with WorkbooksClient(ann_identity, where[1], shared=shared) as ann:
            assert (await mode_of(ann))[0] == "hidden"
        bob_identity = WorkbooksIdentity(where[0], SecretStr(BOB_KEY))
        async with WorkbooksClient(bob_identity, where[1], shared=shared) as bob:
            await bob.ensure_login()
            assert (await mode_of(bob))[0] == "hidden"
            assert not any(k.startswith("GET crm/") for k in bob.calls)
            await verify(bob)
            assert bob.calls["GET crm/people"] == 2 and bob.calls["GET crm/party_locations"] == 1
        async with WorkbooksClient(bob_identity, where[1]) as alone:
            await alone.ensure_login()
            assert (await mode_of(alone))[0] == "hidden"
            assert alone.calls["GET crm/people"] == 2


async def test_a_refused_sales_leads_sample_leaves_the_people_evidence() -> None:
    """A lead column the tenant refuses to read costs the Sales Leads shortcut only."""
    async with tenant(hides=True, lead_rows=True) as (state, where):
        seed_deleted_owners(state)
        async with client_of(where) as wb:
            evidence = await gather(wb, ("person_lead_party[no_such_column]",))
    assert not evidence.unread
    assert evidence.mains_listed() is True and evidence.deleted_hidden() is True
    assert evidence.mains_listed("lead") is None
    assert decide("auto", evidence).mode == "hidden"


async def test_users_loading_at_once_look_once() -> None:
    """A worker that starts many users' jobs together looks at the rows once, not per user."""
    shared: dict[str, Any] = {}
    async with tenant(hides=True) as (state, where):
        seed_deleted_owners(state)
        identities = [WorkbooksIdentity(where[0], SecretStr(k)) for k in (ANN_KEY, BOB_KEY) * 3]
        clients = [WorkbooksClient(i, where[1], shared=shared) for i in identities]
        try:
            modes = await asyncio.gather(*(mode_of(wb) for wb in clients))
            people_reads = sum(wb.calls["GET crm/people"] for wb in clients)
        finally:
            for wb in clients:
                await wb.close()
    assert [m for m, _ in modes] == ["hidden"] * 6
    assert people_reads == 2  # the live and the deleted sample, once

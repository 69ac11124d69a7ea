"""Whether Workbooks still lists the Contact Details of a deleted record [INF]
(workbooks-api.md §2.6, §4.3).

Address resolution (``sync.workbooks.queries``) reads Contact Details (``crm/party_locations``)
by address.  Two facts decide whether that read alone names the live owners of an address:

1. a Person's main location is one of those rows (§4.3, [EX][KB]), so a main email is found
   there as well as on the Person;
2. the rows of a deleted Person are not listed.  Deleted records are hidden (§2.6); whether
   the rows they own are hidden with them is not documented.

Where both hold, the People read that confirms the owners is not needed: one Workbooks call
fewer per lookup, and the lookup's remaining reads go side by side.  Where either fails or
cannot be shown, every owner is confirmed, as before: an email linked to a deleted record
would be hidden, and its address would not wait for a record that appears later.

The same two facts for Sales Leads (a lead party's main email is a Contact Details row naming
the lead, and a deleted lead's rows are not listed; ``org_lead_party[main_location[email]]``
suggests the first, nothing confirms it) make the Sales Leads read redundant too: then one
Contact Details read answers the whole lookup.

``WORKBOOKS_DELETED_OWNER_LOCATIONS`` chooses: ``listed`` (always confirm; no reads here),
``hidden`` (trust it, unless the tenant's rows show otherwise) or ``auto`` (the default: trust
it only where the tenant's rows show both facts); the Sales Leads shortcut needs its own
facts shown whatever the setting.  The evidence is read-only and small: the newest live People
and Sales Leads and the most recently deleted ones, with their email columns (four reads side
by side), then the Contact Details rows holding those addresses (one read per IN-list); once
per Workbooks database and ``schema_ttl_seconds``, whatever the number of users.  ``decide``
is the pure rule; ``settle`` makes the reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sync.core.checks import Check
from sync.core.email_linking import LEAD, PERSON
from sync.core.errors import InvalidRequest, NotFound, RetryLater
from sync.core.keys import normalise_address

from . import schema
from .reads import Record, iter_records, read_page, read_params
from .wire import Cond, any_of, chunked, in_list

if TYPE_CHECKING:
    from .client import WorkbooksClient
    from .tenant import Tenant

Mode = Literal["listed", "hidden"]
Kind = Literal["person", "lead", "other"]
Held = tuple[str, int, str]  # (kind, record id, address): an address a record holds
CHECK = "workbooks.deleted_owner_locations"
SETTING = "WORKBOOKS_DELETED_OWNER_LOCATIONS"
SAMPLE = 10  # records of each kind looked at: a handful shows the rule, few rows are read
MAIN = "main_location[email]"
KINDS: dict[str, Kind] = {PERSON: "person", LEAD: "lead"}
TITLES = {"person": ("People", "Person"), "lead": ("Sales Leads", "Sales Lead")}


@dataclass(frozen=True)
class Evidence:
    """What the tenant's own rows show.  ``live`` / ``deleted``: each address a sampled Person
    (main email) or Sales Lead (its email columns) holds; ``listed``: the owner and address of
    every Contact Details row found by those addresses.  ``unread``: why nothing could be read
    (empty when it was)."""

    live: tuple[Held, ...] = ()
    deleted: tuple[Held, ...] = ()
    listed: frozenset[Held] = frozenset()
    unread: str = ""

    def mains_listed(self, kind: str = "person") -> bool | None:
        """Every address a live record of ``kind`` holds is a Contact Details row of its own
        (None: none sampled)."""
        mine = [h for h in self.live if h[0] == kind]
        if not mine:
            return None
        return all(h in self.listed for h in mine)

    def deleted_hidden(self, kind: str = "person") -> bool | None:
        """No deleted record of ``kind`` owns a listed row (None: none sampled)."""
        mine = {h[1] for h in self.deleted if h[0] == kind}
        if not mine:
            return None
        return not any(k == kind and i in mine for k, i, _ in self.listed)

    def describe(self, kind: str = "person") -> str:
        if self.unread:
            return f"the tenant's rows could not be read ({self.unread})"
        many, one = TITLES[kind]
        parts = []
        mains, hidden = self.mains_listed(kind), self.deleted_hidden(kind)
        live = sorted({i for k, i, _ in self.live if k == kind})
        if mains is None:
            parts.append(f"no live {one} with an email to look at")
        elif mains:
            parts.append(f"the emails of {len(live)} live {many} are Contact Details rows")
        else:
            missing = sorted(
                {i for k, i, a in self.live if k == kind and (k, i, a) not in self.listed}
            )
            ids = ", ".join(str(i) for i in missing[:5])
            parts.append(f"{many} {ids}: an email not among Contact Details")
        gone = sorted({i for k, i, _ in self.deleted if k == kind})
        if hidden is None:
            parts.append(f"no deleted {one} with an email to look at")
        elif hidden:
            parts.append(f"none of {len(gone)} deleted {many} has a Contact Details row listed")
        else:
            shown = [str(i) for i in gone if any(h[:2] == (kind, i) for h in self.listed)]
            parts.append(f"deleted {many} {', '.join(shown[:5])} still have Contact Details listed")
        return "; ".join(parts)


@dataclass(frozen=True)
class Settled:
    """How address resolution runs on this tenant: ``mode`` (the People read left out or
    not), ``leads_in_details`` (the Sales Leads read left out as well), and why."""

    mode: Mode
    leads_in_details: bool
    check: Check


def decide(setting: str, evidence: Evidence | None, usable: str = "") -> Settled:
    """The way address resolution runs, and the check that says why.  ``evidence`` is None
    when nothing was read (``listed`` set, or ``usable`` names what stops the shortcut)."""
    listed_text = "each address lookup confirms Contact Details owners with a People read"
    if usable:
        return Settled("listed", False, Check(CHECK, "ok", f"{listed_text}: {usable}"))
    if setting == "listed" or evidence is None:
        return Settled("listed", False, Check(CHECK, "ok", f"{listed_text} ({SETTING}=listed)"))
    shown = evidence.describe()
    mains, hidden = evidence.mains_listed(), evidence.deleted_hidden()
    if mains is False or hidden is False:
        status: Literal["ok", "warn"] = "warn" if setting == "hidden" else "ok"
        fix = f"set {SETTING}=auto" if setting == "hidden" else ""
        return Settled("listed", False, Check(CHECK, status, f"{listed_text}: {shown}", fix))
    leads = evidence.mains_listed("lead") is True and evidence.deleted_hidden("lead") is True
    if mains and hidden:
        text = f"Contact Details alone name the live owners of an address: {shown}"
        return Settled("hidden", leads, Check(CHECK, "ok", text + _leads_text(evidence, leads)))
    if setting == "hidden":
        text = f"{SETTING}=hidden taken as set, not shown by the tenant: {shown}"
        fix = f"set {SETTING}=auto to have it shown first"
        return Settled(
            "hidden", leads, Check(CHECK, "warn", text + _leads_text(evidence, leads), fix)
        )
    return Settled(
        "listed",
        False,
        Check(
            CHECK,
            "ok",
            f"{listed_text}: not shown either way ({shown})",
            f"set {SETTING}=hidden once Workbooks confirms that a deleted record's Contact "
            "Details are not listed (one read fewer per address lookup)",
        ),
    )


def _leads_text(evidence: Evidence, leads: bool) -> str:
    if leads:
        return f"; Sales Leads too, so one read answers a lookup ({evidence.describe('lead')})"
    return f"; Sales Leads read apart ({evidence.describe('lead')})"


def _shortcut_blocked(tenant: Tenant) -> str:
    """Why the tenant's schema rules the shortcut out ('' when it does not)."""
    for decl in (schema.PEOPLE, schema.CONTACT_DETAILS):
        state = tenant.types.get(decl.key)
        if state is None or state.failure is not None:
            return f"{decl.title} are not usable on this tenant"
    if not tenant.party_columns:
        return "Contact Details rows do not name their owner (party[type], party[id])"
    return ""


def _lead_fields(tenant: Tenant) -> tuple[str, ...]:
    """The lead email columns to sample (none where leads are not matched by address)."""
    state = tenant.types.get(schema.SALES_LEADS.key)
    return () if state is None or state.failure is not None else tenant.lead_email_fields


# The facts belong to a Workbooks database, not to a user: what one user's client saw serves
# every client given the same ``shared`` map (the service's clients: one per deployment and
# process) for a schema's lifetime, so a tenant of many mailboxes pays the reads once per
# database, not once per mailbox.
SHARED_KEY = "owner_locations"
FLIGHTS_KEY = "owner_locations_looking"


async def settle(client: WorkbooksClient, tenant: Tenant) -> None:
    """Set ``tenant.owner_locations`` (and ``lead_locations``) and add its check; reads only
    what the setting needs."""
    setting = client.config.deleted_owner_locations
    blocked = _shortcut_blocked(tenant)
    fields = _lead_fields(tenant)
    evidence = None if setting == "listed" or blocked else await _evidence(client, fields)
    settled = decide(setting, evidence, blocked)
    tenant.owner_locations = settled.mode
    tenant.lead_locations = settled.leads_in_details
    tenant.checks.append(settled.check)


def _seen(client: WorkbooksClient) -> dict[str, tuple[float, Evidence]]:
    seen: dict[str, tuple[float, Evidence]] = client.shared.setdefault(SHARED_KEY, {})
    return seen


async def _evidence(client: WorkbooksClient, lead_fields: Sequence[str]) -> Evidence:
    """The kept evidence of the client's database; else one look, shared by the clients that
    ask while it is under way (a worker starting many users' jobs at once looks once)."""
    database = await _database(client)
    if not database:
        return await gather(client, lead_fields)
    key = f"{database}|{','.join(lead_fields)}"
    now = time.monotonic()
    kept = _seen(client).get(key)
    if kept is not None and now - kept[0] < client.config.schema_ttl_seconds:
        return kept[1]
    flights: dict[str, asyncio.Future[Evidence]] = client.shared.setdefault(FLIGHTS_KEY, {})
    flight = flights.get(key)
    if flight is not None:
        await asyncio.wait([flight])
        if not flight.cancelled():
            return flight.result()
        return await gather(client, lead_fields)  # the look was abandoned: one of its own
    flight = flights[key] = asyncio.get_running_loop().create_future()
    try:
        evidence = await gather(client, lead_fields)
    except BaseException:
        flight.cancel()
        raise
    finally:
        flights.pop(key, None)
    flight.set_result(evidence)
    if not evidence.unread:  # a failed look is not kept: the next load looks again
        _seen(client)[key] = (now, evidence)
    return evidence


async def _database(client: WorkbooksClient) -> str:
    """The database the client's user works in ('' when the login does not name it)."""
    login = await client.ensure_login()
    if login.database_instance_id is None:
        return ""
    return f"{client.identity.base_url.lower()}|{login.database_instance_id}"


async def forget(client: WorkbooksClient) -> None:
    """Look at the rows again at the next schema load (``doctor`` shows what is true now)."""
    database = await _database(client)
    for key in [k for k in _seen(client) if database and k.startswith(f"{database}|")]:
        _seen(client).pop(key, None)


async def gather(client: WorkbooksClient, lead_fields: Sequence[str] = ()) -> Evidence:
    """The sample (four reads side by side, then the Contact Details rows holding what they
    found); a refusal or an outage is evidence of nothing.  A refused Sales Leads read only
    leaves the leads out (their shortcut then needs no more than that to be off)."""
    deleted = Cond("is_deleted", "true")
    people = schema.PEOPLE.endpoint
    try:
        found = await asyncio.gather(
            _held(client, people, "person", (MAIN,), None),
            _held(client, people, "person", (MAIN,), deleted),
            _leads(client, lead_fields, None),
            _leads(client, lead_fields, deleted),
        )
        live = [h for part in found[0::2] for h in part]
        gone = [h for part in found[1::2] for h in part]
        addresses = sorted({a for _, _, a in (*live, *gone)})
        listed = await _listed(client, addresses) if addresses else frozenset()
    except (InvalidRequest, NotFound, RetryLater) as exc:
        return Evidence(unread=str(exc))
    return Evidence(tuple(live), tuple(gone), listed)


async def _leads(
    client: WorkbooksClient, lead_fields: Sequence[str], which: Cond | None
) -> list[Held]:
    if not lead_fields:
        return []
    try:
        return await _held(client, schema.SALES_LEADS.endpoint, "lead", lead_fields, which)
    except (InvalidRequest, NotFound):
        return []


async def _held(
    client: WorkbooksClient,
    endpoint: str,
    kind: Kind,
    columns: Sequence[str],
    which: Cond | None,  # None: live records (deleted ones are hidden unless asked for, §2.6)
) -> list[Held]:
    params = read_params(columns, which, 0, SAMPLE, (("updated_at", "DESC"), ("id", "DESC")))
    rows = await read_page(client, endpoint, params)
    return [
        (kind, record, address)
        for row in rows
        if (record := _id(row)) is not None
        for column in columns
        if (address := _address(row, column))
    ]


async def _listed(client: WorkbooksClient, addresses: list[str]) -> frozenset[Held]:
    columns = ["party[type]", "party[id]", "email", "alternate_email"]
    out: set[Held] = set()
    for chunk in chunked(addresses, client.config.in_list_size):
        values = in_list(chunk)
        where = any_of(Cond("email", "eq", values), Cond("alternate_email", "eq", values))
        async for row in iter_records(client, schema.CONTACT_DETAILS.endpoint, columns, where):
            owner = row.get("party[id]")
            if not isinstance(owner, int):
                continue
            kind = KINDS.get(str(row.get("party[type]")), "other")
            for column in ("email", "alternate_email"):
                if address := _address(row, column):
                    out.add((kind, owner, address))
    return frozenset(out)


def _address(row: Record, column: str) -> str:
    value = row.get(column)
    return normalise_address(value) if isinstance(value, str) else ""


def _id(row: Record) -> int | None:
    value = row.get("id")
    return value if isinstance(value, int) else None

"""Email-address resolution: which People, Sales Leads and Contact Details hold an address
(workbooks-api.md §4.1, §4.3, §4.4).  Email records and their links: ``sync.workbooks.emails``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from sync.core.email_linking import LEAD, PERSON
from sync.core.errors import InvalidRequest, NotFound

from . import schema
from .client import WorkbooksClient
from .reads import Record, iter_records
from .tenant import Tenant, tenant_schema
from .wire import Cond, Filter, any_of, chunked, in_list

# ---------------------------------------------------------------- address resolution


@dataclass(frozen=True)
class AddressMatch:
    """``address`` matched ``field`` of the record (``record_type``, ``record_id``)."""

    address: str
    record_type: str
    record_id: int
    field: str  # e.g. "main_location[email]" or "party_locations.alternate_email"
    location_id: int | None = None  # the Contact Details row, when matched through one


def normalise(address: str) -> str:
    return address.strip().lower()


async def resolve_addresses(
    client: WorkbooksClient, addresses: Iterable[str]
) -> dict[str, list[AddressMatch]]:
    """Which People / Sales Leads (and Organisations) each address belongs to, and via which
    field.  Three reads per IN-list chunk: Contact Details, then people main emails and lead
    emails (which also confirm the People and Leads owning those Contact Details exist);
    each as the tenant's schema allows (``sync.workbooks.schema``).  A lead or Contact Details
    read the tenant refuses is left out and noted (``Tenant.notes``), so it never stops the
    People match; throttling and outages still fail the whole resolution.
    Every input address is a key (lower-cased); no match gives an empty list."""
    wanted = list(dict.fromkeys(normalise(a) for a in addresses if a and a.strip()))
    found: dict[str, list[AddressMatch]] = {a: [] for a in wanted}
    if not wanted:
        return found
    tenant = await tenant_schema(client)
    tenant.require(schema.PEOPLE.key)
    size = client.config.in_list_size
    chunks = chunked(wanted, size)
    parts = await asyncio.gather(*(_resolve_chunk(client, tenant, list(c)) for c in chunks))
    unresolved: list[tuple[str, str, int, int]] = []
    for matches, pending in parts:
        for match in matches:
            _add(found, match)
        unresolved += pending
    for match in await _resolve_parties(client, tenant, unresolved):
        _add(found, match)
    return found


def _add(found: dict[str, list[AddressMatch]], match: AddressMatch) -> None:
    """One entry per (address, record); the first (most specific) field wins."""
    entries = found.setdefault(match.address, [])
    if not any(
        (m.record_type, m.record_id) == (match.record_type, match.record_id) for m in entries
    ):
        entries.append(match)


async def _optional(
    tenant: Tenant, decl: schema.Decl, read: Awaitable[list[Record]]
) -> list[Record]:
    """An optional lookup: a refusal (wrong column, unknown endpoint) is noted, not raised."""
    try:
        return await read
    except (InvalidRequest, NotFound) as exc:
        tenant.note(decl.key, f"{decl.title} are not matched by address: {exc}")
        return []


Resolved = tuple[list[AddressMatch], list[tuple[str, str, int, int]]]


async def _resolve_chunk(client: WorkbooksClient, tenant: Tenant, chunk: list[str]) -> Resolved:
    if tenant.owner_locations == "hidden":
        trusted = await _trusting_details(client, tenant, chunk)
        if trusted is not None:
            return trusted
    return await _confirming_owners(client, tenant, chunk)


async def _trusting_details(
    client: WorkbooksClient, tenant: Tenant, chunk: list[str]
) -> Resolved | None:
    """Where this tenant lists every main location among Contact Details and hides those of
    deleted records (``sync.workbooks.owners``): Contact Details and Sales Leads side by
    side, two reads, and the owners the rows name taken as live (one read where lead parties'
    emails are Contact Details rows too: ``Tenant.lead_locations``).  A Person's main email is
    found as its Contact Details row (``party_locations.email``).  None when the tenant
    refuses the Contact Details read: then People must be read after all."""
    values = in_list(chunk)
    wanted = set(chunk)
    lead_fields = list(tenant.lead_email_fields)
    details, leads = await asyncio.gather(
        _details_by_address(client, values, party=True),
        # Where lead parties' emails are Contact Details rows too, those rows name the lead.
        _nothing()
        if tenant.lead_locations
        else _leads_by_address(client, tenant, lead_fields, values, []),
        return_exceptions=True,
    )
    if isinstance(details, InvalidRequest | NotFound):
        tenant.owner_locations = "listed"  # until the schema is loaded again
        tenant.note(schema.CONTACT_DETAILS.key, f"Contact Details read refused: {details}")
        return None
    if isinstance(details, BaseException):
        raise details
    if isinstance(leads, BaseException):
        raise leads
    owned, pending = _location_matches(details, wanted)
    return _field_matches(leads, LEAD, lead_fields, wanted) + owned, pending


def _details_by_address(
    client: WorkbooksClient, values: str, *, party: bool
) -> Awaitable[list[Record]]:
    """Contact Details rows holding one of ``values`` (an IN-list) as either email, with the
    owner's party id, and its type and id where the tenant has ``party[...]``."""
    owner = ["party[type]", "party[id]"] if party else []
    return _collect(
        client,
        schema.CONTACT_DETAILS.endpoint,
        ["party_id", *owner, "email", "alternate_email"],
        any_of(Cond("email", "eq", values), Cond("alternate_email", "eq", values)),
    )


def _leads_by_address(
    client: WorkbooksClient, tenant: Tenant, fields: list[str], values: str, ids: list[int]
) -> Awaitable[list[Record]]:
    """Sales Leads holding one of ``values`` in ``fields``, or with one of ``ids``."""
    if not fields:
        return _nothing()
    size = client.config.in_list_size
    return _optional(
        tenant,
        schema.SALES_LEADS,
        _collect(
            client,
            schema.SALES_LEADS.endpoint,
            fields,
            _or_ids(any_of(*(Cond(f, "eq", values) for f in fields)), ids, size),
        ),
    )


async def _confirming_owners(client: WorkbooksClient, tenant: Tenant, chunk: list[str]) -> Resolved:
    """Contact Details first, then People and Sales Leads by address, which also confirm the
    Contact Details owners are live records (Workbooks may still list the Contact Details of
    a deleted record [INF]: an email linked there would be hidden, and its address would not
    wait for a record that appears later).  With ``WORKBOOKS_SPLIT_CONCURRENCY`` a job's reads
    go one after another anyway, so the order costs no time there."""
    values = in_list(chunk)
    wanted = set(chunk)
    details = tenant.types[schema.CONTACT_DETAILS.key]
    locations = (
        await _optional(
            tenant,
            schema.CONTACT_DETAILS,
            _details_by_address(client, values, party=tenant.party_columns),
        )
        if details.failure is None
        else []
    )
    owned, pending = _location_matches(locations, wanted)
    owners: dict[str, set[int]] = {}
    for match in owned:
        owners.setdefault(match.record_type, set()).add(match.record_id)
    lead_fields = list(tenant.lead_email_fields)
    size = client.config.in_list_size
    people_ids = sorted(owners.pop(PERSON, set()))
    lead_ids = sorted(owners.pop(LEAD, set()))
    by_address = asyncio.gather(
        _collect(
            client,
            schema.PEOPLE.endpoint,
            ["main_location[email]"],
            _or_ids(Cond("main_location[email]", "eq", values), people_ids, size),
        ),
        _leads_by_address(client, tenant, lead_fields, values, lead_ids),
    )
    people, leads = await by_address
    live = {(PERSON, int(r["id"])) for r in people} | {(LEAD, int(r["id"])) for r in leads}
    if len(people_ids) > size:  # more owners than one IN-list holds: confirmed on their own
        live |= {(PERSON, i) for i in await _live(client, schema.PEOPLE.endpoint, people_ids)}
    if lead_ids and (not lead_fields or len(lead_ids) > size or not leads):
        # Not confirmed by the leads read (none, refused, or too many ids): on their own.
        live |= {(LEAD, i) for i in await _live(client, schema.SALES_LEADS.endpoint, lead_ids)}
    # Owners of other types (an Organisation's main email) are not linked by address
    # (docs/email-linking.md): reported as found, never confirmed at the cost of a read.
    live |= {(kind, i) for kind, ids in owners.items() for i in ids}
    matches = _field_matches(people, PERSON, ["main_location[email]"], wanted)
    matches += _field_matches(leads, LEAD, lead_fields, wanted)
    matches += [m for m in owned if (m.record_type, m.record_id) in live]
    return matches, pending


def _or_ids(by_address: Filter | None, ids: list[int], size: int) -> Filter | None:
    """``by_address``, or one of ``ids`` (when they fit one IN-list)."""
    if not ids or len(ids) > size:
        return by_address
    return any_of(by_address, Cond("id", "eq", in_list(str(i) for i in ids)))


async def _live(client: WorkbooksClient, endpoint: str, ids: Iterable[int]) -> set[int]:
    """Which of these records exist (a deleted one is not listed).  Records the key may not
    read are taken as they are: a refusal says nothing about the record."""
    wanted = sorted(set(ids))
    found: set[int] = set()
    try:
        for chunk in chunked(wanted, client.config.in_list_size):
            where = Cond("id", "eq", in_list(str(i) for i in chunk))
            found |= {int(r["id"]) for r in await _collect(client, endpoint, [], where)}
    except (InvalidRequest, NotFound):
        return set(wanted)
    return found


def _location_matches(
    rows: list[Record], wanted: set[str]
) -> tuple[list[AddressMatch], list[tuple[str, str, int, int]]]:
    """Contact Details rows that hold a wanted address: matched to the owner they name, or left
    for a look-up by party id where the tenant's rows do not name it [INF]."""
    owned: list[AddressMatch] = []
    pending: list[tuple[str, str, int, int]] = []
    for row in rows:
        for fname in ("email", "alternate_email"):
            address = normalise(str(row.get(fname) or ""))
            if address not in wanted:
                continue
            owner_type, owner_id = row.get("party[type]"), row.get("party[id]")
            if owner_type and owner_id is not None:
                owned.append(
                    AddressMatch(
                        address,
                        str(owner_type),
                        int(owner_id),
                        f"party_locations.{fname}",
                        int(row["id"]),
                    )
                )
            elif row.get("party_id") is not None:  # [INF] no party[...] columns: look up later
                pending.append((address, fname, int(row["party_id"]), int(row["id"])))
    return owned, pending


async def _nothing() -> list[Record]:
    return []


def _field_matches(
    rows: list[Record], record_type: str, fields: list[str], wanted: set[str]
) -> list[AddressMatch]:
    out = []
    for row in rows:
        for fname in fields:
            address = normalise(str(row.get(fname) or ""))
            if address in wanted:
                out.append(AddressMatch(address, record_type, int(row["id"]), fname))
    return out


async def _collect(
    client: WorkbooksClient, endpoint: str, columns: list[str], where: Filter | None
) -> list[Record]:
    return [row async for row in iter_records(client, endpoint, columns, where, count_total=True)]


async def _resolve_parties(
    client: WorkbooksClient, tenant: Tenant, pending: list[tuple[str, str, int, int]]
) -> list[AddressMatch]:
    """Fallback when Contact Details rows do not name their owner: party ids are People ids
    (parties share one id space) or a lead's party ids (where the tenant has those columns)."""
    if not pending:
        return []
    party_ids = sorted({p[2] for p in pending})
    owners: dict[int, tuple[str, int]] = {}
    leads = tenant.types[schema.SALES_LEADS.key]
    keys = [k for k in ("person_lead_party_id", "org_lead_party_id") if leads.column(k)]
    for chunk in chunked(party_ids, client.config.in_list_size):
        ids = in_list(str(i) for i in chunk)
        rows = await _collect(client, schema.PEOPLE.endpoint, [], Cond("id", "eq", ids))
        for row in rows:
            owners[int(row["id"])] = (PERSON, int(row["id"]))
        if not keys or leads.failure is not None:
            continue
        lead_rows = await _optional(
            tenant,
            schema.SALES_LEADS,
            _collect(
                client,
                schema.SALES_LEADS.endpoint,
                keys,
                any_of(*(Cond(k, "eq", ids) for k in keys)),
            ),
        )
        for row in lead_rows:
            for key in keys:
                if row.get(key) is not None:
                    owners.setdefault(int(row[key]), (LEAD, int(row["id"])))
    return [
        AddressMatch(address, *owners[party], f"party_locations.{fname}", location)
        for address, fname, party, location in pending
        if party in owners
    ]

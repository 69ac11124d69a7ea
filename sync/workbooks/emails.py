"""Workbooks emails and their links to records, and who an address belongs to, in the core's
terms (``sync.core.email_linking``): workbooks-api.md §4.3, §4.4, §4.10.

[INF] §4.10/§8 q1: how an email is tied to a record is unconfirmed.  ``link_emails`` and
``links_of`` are the only code that knows the shape (``ClientConfig.email_link_path`` with
``email_id`` / ``resource_type`` / ``resource_id``); if the real mechanism differs, only they
change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync.core.email_linking import (
    CASE,
    LEAD,
    OPPORTUNITY,
    ORGANISATION,
    PERSON,
    RecordMatch,
    RecordRef,
)
from sync.core.errors import InvalidRequest
from sync.core.keys import normalise_address
from sync.core.mapping.scope import is_deleted

from .client import WorkbooksClient
from .config import ClientConfig
from .queries import resolve_addresses
from .reads import iter_records
from .wire import Cond, chunked, in_list
from .writes import WriteOp, WriteResult, write_batch

EMAILS = "email/emails"
# The records an email can be linked to (attach on request names one of these).
RECORD_ENDPOINTS: Mapping[str, str] = {
    PERSON: "crm/people",
    LEAD: "crm/sales_leads",
    ORGANISATION: "crm/organisations",
    CASE: "crm/cases",
    OPPORTUNITY: "crm/opportunities",
}


def address_sources(config: ClientConfig) -> dict[str, tuple[str, ...]]:
    """Endpoint -> the columns holding email addresses, for reading which addresses changed
    (lead fields are [INF], §4.4)."""
    return {
        "crm/people": ("main_location[email]", "main_location[alternate_email]"),
        "crm/sales_leads": tuple(config.lead_email_fields),
        "crm/party_locations": ("email", "alternate_email"),
    }


async def resolve_matches(
    client: WorkbooksClient, addresses: Iterable[str]
) -> dict[str, list[RecordMatch]]:
    """``resolve_addresses`` keyed and valued as the core plans with (normalised addresses)."""
    wanted = sorted(set(addresses))
    if not wanted:
        return {}
    found = await resolve_addresses(client, wanted)
    return {
        normalise_address(a): [
            RecordMatch(normalise_address(m.address), m.record_type, m.record_id, m.field)
            for m in ms
        ]
        for a, ms in found.items()
    }


async def record_exists(client: WorkbooksClient, ref: RecordRef) -> bool:
    """Whether the record exists; ``InvalidRequest`` for a type no email can be linked to."""
    endpoint = RECORD_ENDPOINTS.get(ref.record_type)
    if endpoint is None:
        raise InvalidRequest(f"records of type {ref.record_type!r} cannot hold emails")
    async for _ in iter_records(client, endpoint, [], Cond("id", "eq", str(ref.record_id))):
        return True
    return False


# ---------------------------------------------------------------- emails


async def emails_by_reference(client: WorkbooksClient, refs: Sequence[str]) -> dict[str, int]:
    """Workbooks emails we created earlier, found by ``created_through_reference``."""
    out: dict[str, int] = {}
    for chunk in chunked(sorted(set(refs)), client.config.in_list_size):
        where = Cond("created_through_reference", "eq", in_list(chunk))
        async for row in iter_records(client, EMAILS, ["created_through_reference"], where):
            ref = str(row.get("created_through_reference") or "")
            if ref and ref not in out:
                out[ref] = int(row["id"])
    return out


async def create_emails(
    client: WorkbooksClient, emails: Sequence[dict[str, Any]]
) -> list[WriteResult]:
    """Create ``email/emails`` records (``status`` DRAFT stores only; SEND sends)."""
    return await write_batch(client, EMAILS, [WriteOp.create(e) for e in emails])


# ---------------------------------------------------------------- links


@dataclass(frozen=True)
class EmailLink:
    email_id: int
    resource_type: str  # e.g. Private::Crm::Person
    resource_id: int


async def link_emails(client: WorkbooksClient, links: Sequence[EmailLink]) -> list[WriteResult]:
    """Tie emails to records (one result per link, in order)."""
    ops = [
        WriteOp.create(
            {
                "email_id": link.email_id,
                "resource_type": link.resource_type,
                "resource_id": link.resource_id,
            }
        )
        for link in links
    ]
    return await write_batch(client, client.config.email_link_path, ops)


async def links_of(client: WorkbooksClient, email_ids: Iterable[int]) -> set[tuple[int, str]]:
    """Existing (email id, 'Type:id') links of the given emails."""
    out: set[tuple[int, str]] = set()
    ids = sorted(set(email_ids))
    columns = ["email_id", "resource_type", "resource_id"]
    for chunk in chunked(ids, client.config.in_list_size):
        where = Cond("email_id", "eq", in_list(str(i) for i in chunk))
        async for row in iter_records(client, client.config.email_link_path, columns, where):
            if is_deleted(row):
                continue
            key = f"{row.get('resource_type')}:{int(row['resource_id'])}"
            out.add((int(row["email_id"]), key))
    return out

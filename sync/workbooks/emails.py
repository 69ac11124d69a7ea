"""Workbooks emails and their links to records, and who an address belongs to, in the core's
terms (``sync.core.email_linking``): workbooks-api.md §4.3, §4.4, §4.10.

How an email is tied to a Person, Lead, Organisation, Case or Opportunity is not documented
(§4.10, §8 q1).  The tenant's ``metadata/types`` says which mechanism it has
(``sync.workbooks.schema.choose_link``), and ``email_linker`` returns the one adapter for it:

* ``link_type``: the email is created, then one link record per record at the link type's
  endpoint;
* ``association``: the links travel with the email, as the parallel arrays of its polymorphic
  has-many, on create (and on update, which replaces the set: the current set is read first);
* ``render_with``: the email is created with ``render_with_resource_type/id`` of one record,
  which files it there; nothing can be added afterwards;
* ``none``: nothing links; the caller creates no email at all.

Only this module knows those shapes.  Emails are stored with the tenant's stored, non-sending
status (``Tenant.email_status``): never SEND, which would send the message again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync.core.email_linking import RecordMatch, RecordRef
from sync.core.errors import InvalidRequest, NotFound, SyncError
from sync.core.keys import normalise_address
from sync.core.mapping.scope import is_deleted

from . import schema
from .client import WorkbooksClient
from .metadata import LinkStrategy
from .queries import resolve_addresses
from .reads import iter_records
from .tenant import Tenant, tenant_schema
from .wire import Cond, chunked, in_list
from .writes import WriteOp, WriteResult, write_batch

EMAILS = schema.EMAILS.endpoint
# The records an email can be linked to (attach on request names one of these).
RECORD_ENDPOINTS: Mapping[str, str] = {c: schema.ENDPOINT_OF_CLASS[c] for c in schema.LINK_TARGETS}


async def address_sources(client: WorkbooksClient) -> dict[str, tuple[str, ...]]:
    """Endpoint -> the columns holding email addresses on this tenant, for reading which
    addresses changed (lead fields as the tenant's schema settled them, §4.4)."""
    tenant = await tenant_schema(client)
    out: dict[str, tuple[str, ...]] = {
        schema.PEOPLE.endpoint: ("main_location[email]", "main_location[alternate_email]")
    }
    if tenant.lead_email_fields and tenant.types[schema.SALES_LEADS.key].failure is None:
        out[schema.SALES_LEADS.endpoint] = tuple(tenant.lead_email_fields)
    if tenant.types[schema.CONTACT_DETAILS.key].failure is None:
        out[schema.CONTACT_DETAILS.endpoint] = ("email", "alternate_email")
    return out


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


async def schema_notes(client: WorkbooksClient) -> list[str]:
    """What this tenant's schema leaves out of email linking (for the run's status)."""
    tenant = await tenant_schema(client)
    return tenant.notes_for(
        schema.EMAILS.key,
        schema.PEOPLE.key,
        schema.SALES_LEADS.key,
        schema.CONTACT_DETAILS.key,
    )


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
    """Create ``email/emails`` records as given (``status`` DRAFT stores only; SEND sends).
    Email linking goes through ``email_linker``, which also sets the tenant's status."""
    return await write_batch(client, EMAILS, [WriteOp.create(e) for e in emails])


async def remove_emails(
    client: WorkbooksClient, emails: Sequence[tuple[int, int]]
) -> list[WriteResult]:
    """Delete emails (id, lock_version) this service created and could not link."""
    return await write_batch(client, EMAILS, [WriteOp.delete(i, v) for i, v in emails])


# ---------------------------------------------------------------- links


@dataclass(frozen=True)
class EmailLink:
    email_id: int
    resource_type: str  # e.g. Private::Crm::Person
    resource_id: int


@dataclass(frozen=True)
class NewEmail:
    """An email to create, and the records it should carry (in order of preference)."""

    fields: Mapping[str, object]
    links: Sequence[RecordRef]


@dataclass(frozen=True)
class Created:
    """A create's result, and the links written with the create itself."""

    result: WriteResult
    linked: tuple[RecordRef, ...] = ()


class EmailLinker:
    """Ties emails to records the way this tenant does (one subclass per strategy)."""

    def __init__(self, strategy: LinkStrategy, status: str, tenant: Tenant) -> None:
        self.strategy, self.status, self._tenant = strategy, status, tenant

    @property
    def enabled(self) -> bool:
        return self.strategy.enabled

    @property
    def kind(self) -> str:
        return self.strategy.kind

    @property
    def reason(self) -> str:
        return self.strategy.reason

    @property
    def later(self) -> bool:
        """Whether links can be added to an email that exists already."""
        return self.strategy.later

    def unusable(self, ref: RecordRef) -> str:
        """Why an email cannot be linked to ``ref`` on this tenant ("" when it can)."""
        if ref.record_type not in self.strategy.targets:
            return f"this tenant cannot link an email to a {ref.record_type}"
        return ""

    def at_create(self, refs: Sequence[RecordRef]) -> list[RecordRef]:
        """Which of ``refs`` are written with the email itself."""
        return []

    def create_fields(self, email: NewEmail) -> dict[str, object]:
        fields = dict(email.fields)
        fields["status"] = self.status
        return fields

    async def create(self, client: WorkbooksClient, emails: Sequence[NewEmail]) -> list[Created]:
        results = await create_emails(client, [self.create_fields(e) for e in emails])
        return [
            Created(r, tuple(self.at_create(e.links)) if r.ok else ())
            for e, r in zip(emails, results, strict=True)
        ]

    async def add(self, client: WorkbooksClient, links: Sequence[EmailLink]) -> list[WriteResult]:
        """Add links to existing emails (one result per link, in order)."""
        error = InvalidRequest(
            "this tenant links an email only when it is created (render_with): no record can "
            "be added to it afterwards"
        )
        return [WriteResult(WriteOp.create({}), False, error=error) for _ in links]

    async def present(
        self, client: WorkbooksClient, email_ids: Iterable[int]
    ) -> set[tuple[int, str]]:
        """Existing (email id, 'Type:id') links of the given emails."""
        return set()

    def disable(self, reason: str) -> None:
        """The mechanism failed as a whole (its endpoint is gone): no more emails this session."""
        self._tenant.link = self.strategy = LinkStrategy("none", reason=reason)
        self._tenant.note(schema.EMAILS.key, f"email linking is disabled: {reason}")


class LinkTypeLinker(EmailLinker):
    """A polymorphic link record per (email, record) at the link type's own endpoint."""

    async def add(self, client: WorkbooksClient, links: Sequence[EmailLink]) -> list[WriteResult]:
        s = self.strategy
        ops = [
            WriteOp.create(
                {
                    s.email_key: link.email_id,
                    s.type_key: link.resource_type,
                    s.id_key: link.resource_id,
                }
            )
            for link in links
        ]
        results = await write_batch(client, s.path, ops)
        if results and all(_refused_whole(r) for r in results):
            self.disable(f"the link endpoint {s.path} answered: {results[0].error}")
        return results

    async def present(
        self, client: WorkbooksClient, email_ids: Iterable[int]
    ) -> set[tuple[int, str]]:
        s = self.strategy
        out: set[tuple[int, str]] = set()
        columns = [s.email_key, s.type_key, s.id_key]
        for chunk in chunked(sorted(set(email_ids)), client.config.in_list_size):
            where = Cond(s.email_key, "eq", in_list(str(i) for i in chunk))
            async for row in iter_records(client, s.path, columns, where):
                if not is_deleted(row):
                    key = f"{row.get(s.type_key)}:{int(row[s.id_key])}"
                    out.add((int(row[s.email_key]), key))
        return out


class AssociationLinker(EmailLinker):
    """The email's own has-many, written as parallel arrays (a write replaces the set)."""

    def at_create(self, refs: Sequence[RecordRef]) -> list[RecordRef]:
        return [r for r in refs if not self.unusable(r)]

    def create_fields(self, email: NewEmail) -> dict[str, object]:
        fields = super().create_fields(email)
        refs = self.at_create(email.links)
        if refs:
            fields.update(self._arrays(refs))
        return fields

    def _arrays(self, refs: Sequence[RecordRef]) -> dict[str, object]:
        s = self.strategy
        return {
            s.types_field: "[" + ",".join(r.record_type for r in refs) + "]",
            s.ids_field: "[" + ",".join(str(r.record_id) for r in refs) + "]",
        }

    async def _current(
        self, client: WorkbooksClient, email_ids: Iterable[int]
    ) -> dict[int, tuple[int, list[RecordRef]]]:
        """email id -> (lock_version, its links)."""
        s = self.strategy
        out: dict[int, tuple[int, list[RecordRef]]] = {}
        for chunk in chunked(sorted(set(email_ids)), client.config.in_list_size):
            where = Cond("id", "eq", in_list(str(i) for i in chunk))
            async for row in iter_records(client, EMAILS, [s.types_field, s.ids_field], where):
                types, ids = _array(row.get(s.types_field)), _array(row.get(s.ids_field))
                refs = [
                    RecordRef(t, int(i)) for t, i in zip(types, ids, strict=False) if i.isdigit()
                ]
                out[int(row["id"])] = (int(row.get("lock_version") or 0), refs)
        return out

    async def present(
        self, client: WorkbooksClient, email_ids: Iterable[int]
    ) -> set[tuple[int, str]]:
        current = await self._current(client, email_ids)
        return {(eid, ref.key) for eid, (_, refs) in current.items() for ref in refs}

    async def add(self, client: WorkbooksClient, links: Sequence[EmailLink]) -> list[WriteResult]:
        """Read each email's set and lock_version, write the union once per email."""
        by_email: dict[int, list[RecordRef]] = {}
        for link in links:
            by_email.setdefault(link.email_id, []).append(
                RecordRef(link.resource_type, link.resource_id)
            )
        current = await self._current(client, by_email)
        ops: list[WriteOp] = []
        for eid, refs in by_email.items():
            if eid not in current:
                continue
            lock, have = current[eid]
            union = list({r.key: r for r in [*have, *refs]}.values())
            ops.append(WriteOp.update(eid, lock, self._arrays(union)))
        results = {
            op.id: r for op, r in zip(ops, await write_batch(client, EMAILS, ops), strict=True)
        }
        gone = NotFound("the email no longer exists", source="workbooks")
        return [
            results.get(link.email_id) or WriteResult(WriteOp.create({}), False, error=gone)
            for link in links
        ]


class RenderWithLinker(EmailLinker):
    """``render_with_resource_type/id`` on create: one record per email, at creation only."""

    def at_create(self, refs: Sequence[RecordRef]) -> list[RecordRef]:
        usable = [r for r in refs if not self.unusable(r)]
        return usable[:1]

    def create_fields(self, email: NewEmail) -> dict[str, object]:
        fields = super().create_fields(email)
        for ref in self.at_create(email.links):
            fields["render_with_resource_type"] = ref.record_type
            fields["render_with_resource_id"] = ref.record_id
        return fields

    async def present(
        self, client: WorkbooksClient, email_ids: Iterable[int]
    ) -> set[tuple[int, str]]:
        out: set[tuple[int, str]] = set()
        columns = ["render_with_resource_type", "render_with_resource_id"]
        for chunk in chunked(sorted(set(email_ids)), client.config.in_list_size):
            where = Cond("id", "eq", in_list(str(i) for i in chunk))
            async for row in iter_records(client, EMAILS, columns, where):
                kind, rid = row.get("render_with_resource_type"), row.get("render_with_resource_id")
                if kind and rid is not None and str(rid).isdigit():
                    out.add((int(row["id"]), f"{kind}:{int(rid)}"))
        return out


_LINKERS: dict[str, type[EmailLinker]] = {
    "link_type": LinkTypeLinker,
    "association": AssociationLinker,
    "render_with": RenderWithLinker,
    "none": EmailLinker,
}


async def email_linker(client: WorkbooksClient) -> EmailLinker:
    """The adapter for this tenant's email-link mechanism (``none``: linking is disabled)."""
    tenant = await tenant_schema(client)
    return _LINKERS[tenant.link.kind](tenant.link, tenant.email_status, tenant)


def _refused_whole(result: WriteResult) -> bool:
    """The whole request was refused as not found (the endpoint is missing), not one object."""
    error: SyncError | None = result.error
    return isinstance(error, NotFound) and not result.errors


def _array(value: object) -> list[str]:
    """An array attribute as read back: ``"[a,b]"`` (§2.5) or a JSON list."""
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    text = str(value or "").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [p.strip().strip("'\"") for p in text.split(",") if p.strip()]


async def link_emails(client: WorkbooksClient, links: Sequence[EmailLink]) -> list[WriteResult]:
    """Tie existing emails to records, the tenant's way (one result per link, in order)."""
    return await (await email_linker(client)).add(client, links)


async def links_of(client: WorkbooksClient, email_ids: Iterable[int]) -> set[tuple[int, str]]:
    """Existing (email id, 'Type:id') links of the given emails, the tenant's way."""
    return await (await email_linker(client)).present(client, email_ids)

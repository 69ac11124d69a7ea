"""The record types the two-way sync reads and writes (People, tasks, meetings), declared once,
and the queries it runs on them (workbooks-api.md §2.6-§2.8, §3).

A two-way stream reads one record type: the changes since a watermark, deleted records
included, limited server-side to "assigned to one of my queues, or watched", plus the records
it links (by id) once there is a watermark; records again by id (after a stale ``lock_version``); and
records by ``created_through_reference``, where a record created from an Outlook item names that
item, so a run that died before it stored the link finds the record instead of creating a
second one; and records by email address (``by_addresses``, the email linker's resolution), so
a newly shared item is matched to the record that already holds its address before anything is
created.  It writes one batch per plan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sync.core.errors import InvalidRequest

from . import schema, tenant
from .client import WorkbooksClient
from .queries import AddressMatch, resolve_addresses
from .reads import Record, Watermark, changed_since, iter_records
from .wire import Cond, Filter, any_of, chunked, in_list
from .writes import WriteOp, WriteResult, write_batch

ACTIVITY_QUEUE = "Private::Activity::ActivityQueue"
REFERENCE = "created_through_reference"
WATCHED = "watched"
REF_PREFIX = "OL:"  # "OL:" + the Outlook immutable id (workbooks-api.md §3.9)
REFERENCE_MAX = 255  # the column holds 255 characters
IN_LIST_SIZE = 50  # ids per IN-list query
MAX_SCOPED_IDS = 5000  # linked ids named in one changed-since filter (see ``changes``)


@dataclass(frozen=True)
class RecordType:
    """A record type the two-way sync keeps in step with Outlook (its columns: ``decl``)."""

    decl: schema.Decl
    queue_class: str  # the user's queue of this type ("assigned to me")
    activity: bool = False  # activities have their own scope rules and queues

    @property
    def endpoint(self) -> str:  # e.g. crm/people
        return self.decl.endpoint

    @property
    def type_name(self) -> str:  # the record's class, as links store it
        return self.decl.class_name


PEOPLE = RecordType(schema.PEOPLE, "Private::Crm::PersonQueue")
TASKS = RecordType(schema.TASKS, ACTIVITY_QUEUE, activity=True)
MEETINGS = RecordType(schema.MEETINGS, ACTIVITY_QUEUE, activity=True)


# ---------------------------------------------------------------- the tenant's columns


@dataclass(frozen=True)
class TenantColumns:
    """One record type's declared columns as this tenant has them: what a read selects, how
    rows read back and written out are named, and what is not synced (and why)."""

    record: RecordType
    state: tenant.TypeState
    watched: bool  # ``watched`` may scope a read (else it is not even selected)
    activity_type: str  # the verified activity_type of new activities
    notes: tuple[str, ...]

    def select(self, columns: Iterable[str]) -> list[str]:
        """Tenant column names to read for these declared ones (a user's filter-rule column,
        not declared, is passed as it is: the tenant refuses it if it does not exist)."""
        out = []
        for name in columns:
            if name == WATCHED and not self.watched:
                continue
            column = self.state.column(name) if name in self.state.decl.names else name
            if column:
                out.append(column)
        return list(dict.fromkeys(out))

    def row_in(self, row: Record) -> Record:
        """A row read from the tenant, with the declared column names."""
        if not self.state.rename:
            return row
        out = dict(row)
        for declared, column in self.state.rename.items():
            if column and column != declared and column in out:
                out[declared] = out.pop(column)
        return out

    def row_out(self, fields: Mapping[str, object], *, create: bool) -> dict[str, object]:
        """Declared columns to write -> the tenant's, without those it cannot take."""
        skip = self.state.unreadable | self.state.unwritable
        out: dict[str, object] = {}
        for name, value in fields.items():
            if name in skip:
                continue
            if name not in self.state.decl.names:
                raise InvalidRequest(f"{name!r} is not a declared column of {self.record.endpoint}")
            out[self.state.rename.get(name, name) or name] = value
        if create and self.record is TASKS and "activity_type" in out:
            out["activity_type"] = self.activity_type  # the verified WORKBOOKS_TASK_ACTIVITY_TYPE
        return out

    @property
    def unsynced(self) -> dict[str, str]:
        """Canonical fields the tenant cannot carry -> why (the two-way sync leaves them be)."""
        return self.state.unsynced


async def tenant_columns(client: WorkbooksClient, record: RecordType) -> TenantColumns:
    """The record type's columns on this tenant; ``SchemaMismatch`` if it cannot be synced."""
    found = await tenant.tenant_schema(client)
    state = found.require(record.decl.key)
    return TenantColumns(
        record,
        state,
        found.watched.get(record.decl.key, True),
        found.task_activity_type,
        tuple(found.notes_for(record.decl.key)),
    )


async def own_queue(client: WorkbooksClient, record: RecordType) -> int | None:
    """The user's personal queue for this type, from the login's ``my_queues``."""
    login = await client.ensure_login()
    return login.my_queues.get(record.queue_class)


async def my_queues(client: WorkbooksClient, record: RecordType, extra: Iterable[int]) -> list[int]:
    """The user's queues for this type: the personal one, and the team queues ``extra`` adds
    (the API does not say which teams a user is in)."""
    login = await client.ensure_login()
    mine = [q for k, q in login.my_queues.items() if k == record.queue_class]
    return list(dict.fromkeys([*mine, *extra]))


def mine_or_watched(queues: Iterable[int], *, watched: bool = True) -> Filter | None:
    """The server-side half of the scope: assigned to one of ``queues``, or watched (where the
    tenant lets ``watched`` be filtered on).  The user's own rules are applied on every row
    (``sync.core.mapping.scope``)."""
    conds = [Cond("assigned_to", "eq", str(q)) for q in queues]
    return any_of(*conds, Cond(WATCHED, "true") if watched else None)


async def changes(
    client: WorkbooksClient,
    record: RecordType,
    mark: Watermark,
    columns: Sequence[str],
    queues: Iterable[int],
    linked: Sequence[int] = (),
) -> AsyncIterator[tuple[Record, Watermark]]:
    """Records changed since ``mark``, deleted ones included, each with the watermark after it.
    Only the user's records are read: mine-or-watched, and the ``linked`` records by id, so a
    linked record that leaves the scope (reassigned, deleted) is seen leaving and one the user
    shared from a colleague's queue still brings its changes.  What a run reads follows the
    changes in the user's own scope and links, not every change of the tenant.  Beyond
    ``MAX_SCOPED_IDS`` linked records the ids are left out (a filter that size is no request
    to make [INF]): a first or full read (no watermark) reads mine-or-watched (the caller
    reads the linked records it did not return by id), a later one every change.  Rows carry
    the declared column names."""
    cols = await tenant_columns(client, record)
    mine = mine_or_watched(queues, watched=cols.watched)
    scope: Filter | None = mine
    if len(linked) <= MAX_SCOPED_IDS:
        ids = chunked(list(linked), IN_LIST_SIZE)
        scope = any_of(mine, *(Cond("id", "eq", in_list(str(i) for i in c)) for c in ids))
    elif mark.updated_at is not None:
        scope = None
    async for row, after in changed_since(
        client, record.endpoint, mark, cols.select(columns), scope
    ):
        yield cols.row_in(row), after


async def by_ids(
    client: WorkbooksClient, record: RecordType, ids: Sequence[int], columns: Sequence[str]
) -> AsyncIterator[Record]:
    """The records with these ids that still exist, by IN-lists."""
    cols = await tenant_columns(client, record)
    for chunk in chunked(ids, IN_LIST_SIZE):
        where = Cond("id", "eq", in_list(str(i) for i in chunk))
        async for row in iter_records(client, record.endpoint, cols.select(columns), where):
            yield cols.row_in(row)


def reference_to(outlook_id: str) -> str:
    """What a record created from this Outlook item carries in created_through_reference."""
    return (REF_PREFIX + outlook_id)[:REFERENCE_MAX]


async def created_from(
    client: WorkbooksClient, record: RecordType, outlook_ids: Sequence[str]
) -> dict[str, int]:
    """Outlook id -> the record created from it, for those that have one."""
    found: dict[str, int] = {}
    for chunk in chunked(outlook_ids, IN_LIST_SIZE):
        where = Cond(REFERENCE, "eq", in_list(REF_PREFIX + oid for oid in chunk))
        async for row in iter_records(client, record.endpoint, [REFERENCE], where):
            ref = str(row.get(REFERENCE) or "")
            if ref.startswith(REF_PREFIX):
                found[ref[len(REF_PREFIX) :]] = int(row["id"])
    return found


async def by_addresses(
    client: WorkbooksClient, record: RecordType, addresses: Sequence[str]
) -> dict[str, list[AddressMatch]]:
    """Address (lower-cased) -> the records of this type holding it as a main email or a
    Contact Details email; one resolution pass for all of them (three reads per IN-list)."""
    found = await resolve_addresses(client, addresses)
    return {
        address: [m for m in matches if m.record_type == record.type_name]
        for address, matches in found.items()
    }


async def write(
    client: WorkbooksClient, record: RecordType, ops: Sequence[WriteOp]
) -> list[WriteResult]:
    """One batched write (per-object results, in order), in the tenant's column names and
    without the columns it cannot take.  An update left with nothing to write is not sent: it
    succeeds as it stands (same id and lock_version)."""
    cols = await tenant_columns(client, record)
    sent: list[tuple[int, WriteOp]] = []
    out: list[WriteResult | None] = []
    for op in ops:
        fields = cols.row_out(op.fields, create=op.action == "create")
        if op.action == "update" and not fields:
            out.append(WriteResult(op, True, op.id, op.lock_version))
            continue
        sent.append((len(out), replace(op, fields=fields)))
        out.append(None)
    results = await write_batch(client, record.endpoint, [op for _, op in sent])
    for (index, _), result in zip(sent, results, strict=True):
        out[index] = replace(result, op=ops[index])
    return [r for r in out if r is not None]


async def schema_notes(client: WorkbooksClient, record: RecordType) -> tuple[str, ...]:
    """What this tenant's schema leaves out of syncing this record type (for the status)."""
    return (await tenant_columns(client, record)).notes


def pinned(
    fields: dict[str, Any], unsynced: Mapping[str, str], base: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``fields`` read from a row, with the canonical fields the tenant cannot carry taken
    from ``base`` (the pair's last synced values): unchanged on this side, so the Outlook value
    is kept, never cleared.  Without a base (a record nothing is linked to) they are left out."""
    if not unsynced:
        return fields
    out = dict(fields)
    for name in unsynced:
        if base is not None and name in base:
            out[name] = base[name]
        else:
            out.pop(name, None)
    return out

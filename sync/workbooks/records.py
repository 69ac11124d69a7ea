"""The record types the two-way sync reads and writes (People, tasks, meetings), declared once,
and the queries it runs on them (workbooks-api.md §2.6-§2.8, §3).

A two-way stream reads one record type: the changes since a watermark, deleted records
included, limited server-side to "assigned to one of my queues, or watched" when there is no
watermark yet (a first or full read); records again by id (after a stale ``lock_version``); and
records by ``created_through_reference``, where a record created from an Outlook item names that
item, so a run that died before it stored the link finds the record instead of creating a
second one; and records by email address (``by_addresses``, the email linker's resolution), so
a newly shared item is matched to the record that already holds its address before anything is
created.  It writes one batch per plan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from sync.core.mapping.activities import MEETING_TYPE, TASK_TYPE
from sync.core.mapping.contacts import PERSON_TYPE

from .client import WorkbooksClient
from .queries import AddressMatch, resolve_addresses
from .reads import Record, Watermark, changed_since, iter_records
from .wire import Cond, Filter, any_of, chunked, in_list
from .writes import WriteOp, WriteResult, write_batch

ACTIVITY_QUEUE = "Private::Activity::ActivityQueue"
REFERENCE = "created_through_reference"
REF_PREFIX = "OL:"  # "OL:" + the Outlook immutable id (workbooks-api.md §3.9)
REFERENCE_MAX = 255  # the column holds 255 characters
IN_LIST_SIZE = 50  # ids per IN-list query


@dataclass(frozen=True)
class RecordType:
    """A record type the two-way sync keeps in step with Outlook."""

    endpoint: str  # e.g. crm/people
    type_name: str  # the record's class, as links store it
    queue_class: str  # the user's queue of this type ("assigned to me")
    activity: bool = False  # activities have their own scope rules and queues


PEOPLE = RecordType("crm/people", PERSON_TYPE, "Private::Crm::PersonQueue")
TASKS = RecordType("activity/tasks", TASK_TYPE, ACTIVITY_QUEUE, activity=True)
MEETINGS = RecordType("activity/meetings", MEETING_TYPE, ACTIVITY_QUEUE, activity=True)


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


def mine_or_watched(queues: Iterable[int]) -> Filter | None:
    """The server-side half of the scope: assigned to one of ``queues``, or watched.  The
    user's own rules are applied on every row (``sync.core.mapping.scope``)."""
    conds = [Cond("assigned_to", "eq", str(q)) for q in queues]
    return any_of(*conds, Cond("watched", "true"))


def changes(
    client: WorkbooksClient,
    record: RecordType,
    mark: Watermark,
    columns: Sequence[str],
    queues: Iterable[int],
) -> AsyncIterator[tuple[Record, Watermark]]:
    """Records changed since ``mark``, deleted ones included, each with the watermark after it.
    Without a watermark (a first or full read) only mine-or-watched records are read; after
    that every change is, so a record that leaves the scope is seen leaving."""
    scope = mine_or_watched(queues) if mark.updated_at is None else None
    return changed_since(client, record.endpoint, mark, columns, scope)


async def by_ids(
    client: WorkbooksClient, record: RecordType, ids: Sequence[int], columns: Sequence[str]
) -> AsyncIterator[Record]:
    """The records with these ids that still exist, by IN-lists."""
    for chunk in chunked(ids, IN_LIST_SIZE):
        where = Cond("id", "eq", in_list(str(i) for i in chunk))
        async for row in iter_records(client, record.endpoint, columns, where):
            yield row


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
    """One batched write (per-object results, in order)."""
    return await write_batch(client, record.endpoint, ops)

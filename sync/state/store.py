"""State on Azure Table Storage (azure-data-tables, async), behind small typed repositories.

Layout (physical table = ``SYNC_TABLE_PREFIX`` + logical name, see ``sync.state.tables``):

=============  ==========================  ==========================================
table          PartitionKey                RowKey
=============  ==========================  ==========================================
mailboxes      "mailbox"                   key(mailbox)
               "doctor"                    key(mailbox): its last doctor report
subscriptions  key(subscription id)        "sub"
               "wbt|"+tenant / "wbk|"+sha256  "wbhook": Workbooks webhooks (tenant, token)
cursors        key(mailbox)                stream
dirty          key(mailbox)                stream
links          key(mailbox)|stream         "o:"+key(outlook id)  and  "w:"+type:id
               (same partition)            "x:r:"+type:id: a record the user removed from Outlook
                                           "x:i:"+key(outlook id): an ambiguous/duplicate item
emails         key(mailbox)                key(message immutable id)
pending        key(address)                key(mailbox)|key(message id)
runs           key(mailbox)                inverted time + job id (newest first)
jobs           "job"                       job id
=============  ==========================  ==========================================

Read-modify-write goes through ``_cas``: read, change, ``update_entity`` with the ETag and
``IfNotModified``; on ``ResourceModifiedError`` (HTTP 412) re-read and retry a bounded number of
times.  A link is written as two rows in one partition (one per direction) inside one
transaction, so a lookup from either side never sees half a link.  The identity rows of a
(mailbox, stream) (``IdentityStore``: removals remembered, items left ambiguous or duplicate)
live in the links' partition, after the links in key order, so one range query reads them all
and a run loads them with the links.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from sync.core.doctor import DoctorReport
from sync.core.keys import address_key, decode_key, encode_key, normalise_address
from sync.core.series import series_time
from sync.core.state_models import (
    STORED,
    Cursor,
    EmailRecord,
    IdentityIssue,
    JobStatus,
    Lease,
    Link,
    Mailbox,
    PendingAddress,
    Removal,
    RunRecord,
    SubscriptionRecord,
    identity_counts,
    utcnow,
)
from sync.core.streams import (
    LeaseRow,
    LeaseState,
    Marked,
    MarkerRow,
    MarkerState,
    OwnMarker,
    TakenMarker,
    flag_lasts,
    holds,
    lease_expiry,
    lease_state,
    marker_state,
)
from sync.core.streams import marked as marked_outcome
from sync.core.subscriptions import hash_client_state
from sync.core.workbooks_hooks import HookTenant, HookToken
from sync.state.batch import submit as submit_batch
from sync.state.health import StreamHealthStore
from sync.state.limits import (
    check_entity,
    chunk_batch,
    pack_bytes,
    pack_ints,
    pack_json,
    unpack_bytes,
    unpack_ints,
    unpack_json,
)
from sync.state.tables import TABLES

log = logging.getLogger(__name__)

__all__ = ["StateStore", "hash_client_state"]

CAS_ATTEMPTS = 8
KNOWN_ROWS = 20_000  # rows a remembering table keeps per process (a few MB at most)
# Tables whose rows one process rewrites run after run: the streams' cursors and their health
# rows (in the runs table), written from the version last seen instead of read first.
REMEMBERING = ("cursors", "runs")
T = TypeVar("T")


class ConcurrencyError(RuntimeError):
    """A read-modify-write kept losing to other writers; the caller should retry the job."""


def _dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value))


def _flag_date(row: Mapping[str, Any]) -> datetime | None:
    """A marker's ``remembered_until``; None when absent or unreadable, which every reader
    takes the safe way (a whole window)."""
    try:
        return _dt(row.get("remembered_until"))
    except (TypeError, ValueError):
        return None


def _with_etag(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of a stored entity, with its ETag under ``etag``."""
    meta = getattr(entity, "metadata", None) or {}
    out = dict(entity)
    out["etag"] = str(meta.get("etag", ""))
    return out


class _Table:
    """Thin wrapper adding limit checks and ETag-guarded read-modify-write.

    With ``remember``, the table keeps the last version of each row this process read or wrote,
    with its ETag (a bounded map, newest last): a conditional write can start from it without
    reading the row again, and a 412 says someone else wrote since.  Writes return the new ETag
    the service answered with, so what was just written is never read back."""

    def __init__(self, client: TableClient, *, remember: bool = False) -> None:
        self.client = client
        self._known: OrderedDict[tuple[str, str], dict[str, Any]] | None = (
            OrderedDict() if remember else None
        )

    # -- what this process last saw of a row
    def known(self, pk: str, rk: str) -> dict[str, Any] | None:
        if self._known is None:
            return None
        row = self._known.get((pk, rk))
        return dict(row) if row is not None else None

    def _note(self, pk: str, rk: str, row: Mapping[str, Any] | None) -> None:
        if self._known is None:
            return
        key = (pk, rk)
        self._known.pop(key, None)
        if row is None:
            return
        if len(self._known) >= KNOWN_ROWS:
            self._known.popitem(last=False)
        self._known[key] = {**row, "PartitionKey": pk, "RowKey": rk}

    def _wrote(self, entity: Mapping[str, Any], meta: Mapping[str, Any] | None) -> str:
        etag = str((meta or {}).get("etag") or "")
        pk, rk = str(entity["PartitionKey"]), str(entity["RowKey"])
        self._note(pk, rk, {**entity, "etag": etag} if etag else None)
        return etag

    async def get(self, pk: str, rk: str) -> dict[str, Any] | None:
        try:
            entity = await self.client.get_entity(pk, rk)
        except ResourceNotFoundError:
            self._note(pk, rk, None)
            return None
        row = _with_etag(entity)
        self._note(pk, rk, row)
        return row

    async def upsert(
        self, entity: dict[str, Any], *, replace: bool = True, note: bool = True
    ) -> None:
        """Insert or replace (or merge).  ``note=False``: a row this process will not write
        again (a run's record), so it is not kept among the rows it remembers."""
        check_entity(entity)
        mode = UpdateMode.REPLACE if replace else UpdateMode.MERGE
        meta = await self.client.upsert_entity(entity, mode=mode)
        if replace and note:
            self._wrote(entity, meta)
        else:  # a merge (the stored row is more than what was sent), or a row not kept
            self._note(str(entity["PartitionKey"]), str(entity["RowKey"]), None)

    async def create(self, entity: dict[str, Any]) -> str | None:
        """Insert; its ETag, or None if the key exists (the cheap 'claim once' primitive)."""
        check_entity(entity)
        try:
            meta = await self.client.create_entity(entity)
        except ResourceExistsError:
            return None
        return self._wrote(entity, meta) or "*"

    async def replace_if(self, entity: dict[str, Any], etag: str) -> str | None:
        """Replace only if unchanged since ``etag``; the new ETag, or None when someone else
        wrote first (or the row is gone)."""
        result = await self.replace_version(entity, etag)
        return result if isinstance(result, str) else None

    async def replace_version(self, entity: dict[str, Any], etag: str) -> str | bool | None:
        """Replace only the version ``etag``: the new ETag when replaced, False when the row
        changed since (412), None when it is gone (404), as ``delete_if`` answers."""
        check_entity(entity)
        body = {k: v for k, v in entity.items() if k != "etag"}
        try:
            meta = await self.client.update_entity(
                body,
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            self._note(str(body["PartitionKey"]), str(body["RowKey"]), None)
            return False
        except ResourceNotFoundError:
            self._note(str(body["PartitionKey"]), str(body["RowKey"]), None)
            return None
        return self._wrote(body, meta) or "*"

    async def delete(self, pk: str, rk: str, etag: str | None = None) -> bool:
        self._note(pk, rk, None)
        try:
            if etag:
                await self.client.delete_entity(
                    pk, rk, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            else:
                await self.client.delete_entity(pk, rk)
        except ResourceModifiedError:
            return False
        except ResourceNotFoundError:
            return True
        return True

    async def delete_if(self, pk: str, rk: str, etag: str) -> bool | None:
        """Delete only the version ``etag``: True when deleted, False when the row changed
        since (412), None when it is gone (404)."""
        self._note(pk, rk, None)
        try:
            await self.client.delete_entity(
                pk, rk, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            return False
        except ResourceNotFoundError:
            return None
        return True

    async def delete_existing(self, pk: str, rk: str) -> bool:
        """Delete in one request; True if the row existed.  (The SDK hides a 404 on delete, so
        the answer's status is taken from the response itself.)"""
        self._note(pk, rk, None)
        statuses: list[int] = []

        def hook(response: Any) -> None:
            statuses.append(int(response.http_response.status_code))

        await self.client.delete_entity(pk, rk, raw_response_hook=hook)
        return bool(statuses) and statuses[-1] != 404

    async def query(
        self,
        flt: str,
        parameters: dict[str, Any] | None = None,
        *,
        page: int = 1000,
        select: list[str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"results_per_page": page}
        if select is not None:
            kwargs["select"] = select
        async for entity in self.client.query_entities(flt, parameters=parameters or {}, **kwargs):
            yield _with_etag(entity)

    async def partition(self, pk: str) -> AsyncIterator[dict[str, Any]]:
        async for e in self.query("PartitionKey eq @pk", {"pk": pk}):
            yield e

    async def prefix(
        self, pk: str, prefix: str, *, page: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        """The rows of one partition whose RowKey starts with ``prefix``, in key order."""
        flt = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": pk, "lo": prefix, "hi": _after_prefix(prefix)}
        async for e in self.query(flt, params, page=page):
            yield e

    async def transact(self, operations: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Submit operations (one partition) in limit-respecting transactions."""
        for batch in chunk_batch(operations):
            for _, entity in batch:
                self._note(str(entity["PartitionKey"]), str(entity["RowKey"]), None)
            try:
                await submit_batch(self.client, _operations(batch))
            except TableTransactionError as exc:
                # Deleting a row that is already gone is success for us (idempotent replays).
                if getattr(exc, "error_code", "") == "ResourceNotFound" and all(
                    v == "delete" for v, _ in batch
                ):
                    continue
                raise

    async def transact_inserting(self, operations: list[Operation]) -> set[str]:
        """Submit operations, one partition's at a time, where some are inserts that may find
        their row already there: an insert that conflicts is left out, with the operations it
        names in ``drop_with``, and the rest submitted again.  Returns the RowKeys that
        existed."""
        by_pk: dict[str, list[Operation]] = {}
        for op in operations:
            by_pk.setdefault(str(op.entity["PartitionKey"]), []).append(op)
        existing: set[str] = set()
        for ops in by_pk.values():
            existing |= await self._transact_partition(ops)
        return existing

    async def _transact_partition(self, operations: list[Operation]) -> set[str]:
        existing: set[str] = set()
        todo = list(operations)
        while todo:
            batch = next(chunk_batch((op.verb, op.entity) for op in todo))
            chunk, rest = todo[: len(batch)], todo[len(batch) :]
            for op in chunk:
                self._note(str(op.entity["PartitionKey"]), str(op.entity["RowKey"]), None)
            try:
                await submit_batch(self.client, _operations(batch))
            except TableTransactionError as exc:
                index = getattr(exc, "index", None)
                code = getattr(exc, "error_code", "")
                if code != "EntityAlreadyExists" or not isinstance(index, int):
                    raise
                if not 0 <= index < len(chunk) or chunk[index].verb != "create":
                    raise
                failed = chunk[index]
                existing.add(failed.row_key)
                gone = {failed.row_key, *failed.drop_with}
                todo = [op for op in chunk if op.row_key not in gone] + [
                    op for op in rest if op.row_key not in gone
                ]
                continue
            todo = rest
        return existing

    async def cas(
        self,
        pk: str,
        rk: str,
        change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        *,
        attempts: int = CAS_ATTEMPTS,
        from_known: bool = False,
    ) -> dict[str, Any] | None:
        """Read-modify-write with ETag; ``change`` gets the current row (or None) and returns
        the new row (or None to leave it).  Retries on conflict, at most ``attempts`` times.

        ``from_known``: start from the version this process last read or wrote (a remembering
        table), with no read; a 412 (someone wrote since) falls back to reading."""
        known = self.known(pk, rk) if from_known else None
        if known is not None:
            new = change(dict(known))
            if new is None:
                return known
            new["PartitionKey"], new["RowKey"] = pk, rk
            etag = await self.replace_if(new, str(known.get("etag") or ""))
            if etag is not None:
                return {**new, "etag": etag}
        for _ in range(attempts):
            current = await self.get(pk, rk)
            new = change(dict(current) if current else None)
            if new is None:
                return current
            new["PartitionKey"], new["RowKey"] = pk, rk
            if current is None:
                etag = await self.create(new)
            else:
                etag = await self.replace_if(new, current["etag"])
            if etag is not None:
                return {**new, "etag": etag}
        raise ConcurrencyError(f"gave up after {attempts} conflicting writes on {pk}/{rk}")


@dataclass(frozen=True)
class Operation:
    """One operation of a partition's transaction.  ``verb`` is create (an insert that may
    conflict), upsert or delete; ``drop_with``: RowKeys to leave out too when this insert
    finds its row there already (they only made sense with it)."""

    verb: str
    entity: Mapping[str, Any]
    drop_with: tuple[str, ...] = ()

    @property
    def row_key(self) -> str:
        return str(self.entity["RowKey"])


def _operations(batch: list[tuple[str, Mapping[str, Any]]]) -> list[Any]:
    ops: list[Any] = []
    for verb, entity in batch:
        body = {k: v for k, v in entity.items() if k != "etag"}
        if verb == "upsert":
            ops.append(("upsert", body, {"mode": UpdateMode.REPLACE}))
        else:
            ops.append((verb, body))
    return ops


def _after_prefix(prefix: str) -> str:
    """The smallest key above every key that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# ---------------------------------------------------------------------------------- mailboxes


def _mailbox_key(mailbox_id: str) -> str | None:
    """RowKey of a mailbox; None for an id that normalises to nothing (no such row exists)."""
    address = normalise_address(mailbox_id)
    return encode_key(address) if address else None


# Mailboxes as jobs see them, per process: (table, key) -> (read at, monotonic; mailbox).
_FOR_JOBS: dict[tuple[str, str], tuple[float, Mailbox | None]] = {}
MAILBOX_CACHE_SECONDS = 30.0
MAILBOX_CACHE_SIZE = 10_000


class MailboxRegistry:
    PK = "mailbox"

    def __init__(self, table: _Table) -> None:
        self._t = table

    def _cache_key(self, key: str) -> tuple[str, str]:
        return (str(getattr(self._t.client, "table_name", "")), key)

    def _forget(self, mailbox_id: str) -> None:
        key = _mailbox_key(mailbox_id)
        if key:
            _FOR_JOBS.pop(self._cache_key(key), None)

    async def for_job(self, mailbox_id: str) -> Mailbox | None:
        """The mailbox as a job runs it: read at most once per ``MAILBOX_CACHE_SECONDS`` in
        a process (every job reads it, and it rarely changes).  A change made in this
        process is seen at once; one made elsewhere (another instance's admin call) within
        that time."""
        key = _mailbox_key(mailbox_id)
        if key is None:
            return None
        cache_key = self._cache_key(key)
        now = time.monotonic()
        hit = _FOR_JOBS.get(cache_key)
        if hit is not None and now - hit[0] < MAILBOX_CACHE_SECONDS:
            return hit[1]
        found = await self.get(mailbox_id)
        if len(_FOR_JOBS) >= MAILBOX_CACHE_SIZE:
            _FOR_JOBS.clear()
        _FOR_JOBS[cache_key] = (now, found)
        return found

    @classmethod
    def _row(cls, mailbox: Mailbox) -> dict[str, Any]:
        return {
            "PartitionKey": cls.PK,
            "RowKey": encode_key(mailbox.id),
            "mailbox": mailbox.id,
            "enabled": mailbox.enabled,
            # Columns of their own too, so the console's list of every mailbox reads a few
            # short columns instead of each whole record (sync/console/data.py).
            "disabled_reason": mailbox.disabled_reason[:1000],
            "workbooks_user": mailbox.workbooks_user,
            # How overdue a stream may get before the list calls it failing (its interval).
            "reconcile_minutes": mailbox.policy.reconcile_interval_minutes,
            "data": mailbox.model_dump_json(),
        }

    async def get(self, mailbox_id: str) -> Mailbox | None:
        key = _mailbox_key(mailbox_id)
        row = await self._t.get(self.PK, key) if key else None
        return Mailbox.model_validate_json(row["data"], context=STORED) if row else None

    async def put(self, mailbox: Mailbox) -> None:
        try:
            await self._t.upsert(self._row(mailbox.model_copy(update={"updated_at": utcnow()})))
        finally:
            self._forget(mailbox.id)

    async def add(self, mailbox: Mailbox) -> bool:
        """Register a new mailbox; False if it already exists."""
        try:
            return await self._t.create(self._row(mailbox)) is not None
        finally:
            self._forget(mailbox.id)

    async def list(self, *, enabled_only: bool = False) -> list[Mailbox]:
        out = [
            Mailbox.model_validate_json(r["data"], context=STORED)
            async for r in self._t.partition(self.PK)
        ]
        return [m for m in out if m.enabled or not enabled_only]

    async def remove(self, mailbox_id: str) -> bool:
        key = _mailbox_key(mailbox_id)
        try:
            if key is None or await self._t.get(self.PK, key) is None:
                return False
            return await self._t.delete(self.PK, key)
        finally:
            self._forget(mailbox_id)

    async def set_enabled(self, mailbox_id: str, enabled: bool, reason: str = "") -> Mailbox | None:
        key = _mailbox_key(mailbox_id)
        if key is None:
            return None

        def change(row: dict[str, Any] | None) -> dict[str, Any] | None:
            if row is None:
                return None
            mb = Mailbox.model_validate_json(row["data"], context=STORED).model_copy(
                update={"enabled": enabled, "disabled_reason": reason, "updated_at": utcnow()}
            )
            return self._row(mb)

        try:
            row = await self._t.cas(self.PK, key, change)
        finally:
            self._forget(mailbox_id)
        return Mailbox.model_validate_json(row["data"], context=STORED) if row else None

    async def update(self, mailbox_id: str, change: Callable[[Mailbox], Mailbox]) -> Mailbox | None:
        """ETag-guarded change of a registered mailbox (None: not registered); ``change``
        may raise (a validation error), which leaves the row as it was."""
        key = _mailbox_key(mailbox_id)
        if key is None:
            return None

        def apply(row: dict[str, Any] | None) -> dict[str, Any] | None:
            if row is None:
                return None
            current = Mailbox.model_validate_json(row["data"], context=STORED)
            mb = change(current).model_copy(update={"id": current.id, "updated_at": utcnow()})
            return self._row(mb)

        try:
            row = await self._t.cas(self.PK, key, apply)
        finally:
            self._forget(mailbox_id)
        return Mailbox.model_validate_json(row["data"], context=STORED) if row else None


class DoctorResults:
    """The last ``doctor`` report of each mailbox (``python -m sync status`` shows it): rows in
    the mailboxes table under their own partition, so the registry's partition holds only
    mailboxes and one query reads every mailbox's report."""

    PK = "doctor"

    def __init__(self, table: _Table) -> None:
        self._t = table

    async def put(self, report: DoctorReport) -> None:
        row: dict[str, Any] = {
            "PartitionKey": self.PK,
            "RowKey": encode_key(report.mailbox),
            "mailbox": report.mailbox,
            "status": report.status,
        }
        row.update(pack_json("data", report.as_dict()))
        await self._t.upsert(row)

    async def get(self, mailbox_id: str) -> DoctorReport | None:
        key = _mailbox_key(mailbox_id)
        row = await self._t.get(self.PK, key) if key else None
        return DoctorReport.from_dict(unpack_json("data", row)) if row else None

    async def all(self) -> dict[str, DoctorReport]:
        out = {}
        async for row in self._t.partition(self.PK):
            report = DoctorReport.from_dict(unpack_json("data", row))
            out[report.mailbox] = report
        return out


# ------------------------------------------------------------------------------ subscriptions


class SubscriptionStore:
    RK = "sub"

    def __init__(self, table: _Table) -> None:
        self._t = table

    @staticmethod
    def _row(rec: SubscriptionRecord) -> dict[str, Any]:
        return {
            "PartitionKey": encode_key(rec.subscription_id),
            "RowKey": SubscriptionStore.RK,
            "mailbox": rec.mailbox,
            "stream": rec.stream,
            "data": rec.model_dump_json(),
        }

    async def get(self, subscription_id: str) -> SubscriptionRecord | None:
        if not subscription_id or len(subscription_id) > 128:
            return None
        row = await self._t.get(encode_key(subscription_id), self.RK)
        return SubscriptionRecord.model_validate_json(row["data"]) if row else None

    async def put(self, record: SubscriptionRecord) -> None:
        await self._t.upsert(self._row(record))

    async def delete(self, subscription_id: str) -> None:
        await self._t.delete(encode_key(subscription_id), self.RK)

    async def list_all(self) -> list[SubscriptionRecord]:
        return [
            SubscriptionRecord.model_validate_json(r["data"])
            async for r in self._t.query("RowKey eq @rk", {"rk": self.RK})
        ]

    async def list_for_mailbox(self, mailbox: str) -> list[SubscriptionRecord]:
        flt = "RowKey eq @rk and mailbox eq @mb"
        return [
            SubscriptionRecord.model_validate_json(r["data"])
            async for r in self._t.query(flt, {"rk": self.RK, "mb": normalise_address(mailbox)})
        ]


# ------------------------------------------------------------------- Workbooks webhooks


class WorkbooksHookStore:
    """Workbooks webhook subscriptions, per tenant (a Workbooks database shared by mailboxes),
    and the callback tokens deliveries arrive with: rows of the subscriptions table beside the
    Graph ones (RowKey ``wbhook``; Graph's are ``sub``).  A token row is keyed by the token's
    sha256 only and holds the subscription's secret sealed under the token
    (``sync.core.workbooks_hooks``), so a delivery is verified after one point read."""

    RK = "wbhook"
    TENANT, TOKEN = "wbt|", "wbk|"

    def __init__(self, table: _Table) -> None:
        self._t = table

    async def tenant(self, tenant: str) -> HookTenant | None:
        row = await self._t.get(self.TENANT + tenant, self.RK)
        return HookTenant.model_validate_json(row["data"]) if row else None

    async def update_tenant(
        self, tenant: str, change: Callable[[HookTenant | None], HookTenant | None]
    ) -> HookTenant | None:
        """ETag-guarded read-modify-write; ``change`` returns None to leave the row as it is."""

        def apply(row: dict[str, Any] | None) -> dict[str, Any] | None:
            current = HookTenant.model_validate_json(row["data"]) if row else None
            new = change(current)
            return None if new is None else {"data": new.model_dump_json()}

        row = await self._t.cas(self.TENANT + tenant, self.RK, apply)
        return HookTenant.model_validate_json(row["data"]) if row else None

    async def tenants(self) -> list[HookTenant]:
        flt = "PartitionKey ge @lo and PartitionKey lt @hi and RowKey eq @rk"
        params = {"lo": self.TENANT, "hi": _after_prefix(self.TENANT), "rk": self.RK}
        return [HookTenant.model_validate_json(r["data"]) async for r in self._t.query(flt, params)]

    async def delete_tenant(self, tenant: str) -> None:
        await self._t.delete(self.TENANT + tenant, self.RK)

    async def token(self, token_hash: str) -> HookToken | None:
        if not token_hash or len(token_hash) > 64:
            return None
        row = await self._t.get(self.TOKEN + token_hash, self.RK)
        return HookToken.model_validate_json(row["data"]) if row else None

    async def put_token(self, token: HookToken) -> None:
        row = {"PartitionKey": self.TOKEN + token.token_hash, "RowKey": self.RK}
        await self._t.upsert({**row, "data": token.model_dump_json()})

    async def delete_token(self, token_hash: str) -> None:
        await self._t.delete(self.TOKEN + token_hash, self.RK)


# ------------------------------------------------------------------------- cursors and leases

_CURSOR_FIELDS = ("delta_link", "watermark", "resync_reason", "last_error")


class CursorStore:
    def __init__(self, table: _Table) -> None:
        self._t = table

    @staticmethod
    def _from_row(mailbox: str, stream: str, row: dict[str, Any] | None) -> Cursor:
        if row is None:
            return Cursor(mailbox=mailbox, stream=stream)
        return Cursor(
            mailbox=mailbox,
            stream=stream,
            delta_link=unpack_json("delta_link", row),
            watermark=unpack_json("watermark", row),
            resync_requested=bool(row.get("resync_requested", False)),
            resync_reason=row.get("resync_reason", "") or "",
            window_start=_dt(row.get("window_start")),
            window_end=_dt(row.get("window_end")),
            lease_owner=row.get("lease_owner") or None,
            lease_until=_dt(row.get("lease_until")),
            last_success_at=_dt(row.get("last_success_at")),
            last_error=row.get("last_error", "") or "",
            consecutive_failures=int(row.get("consecutive_failures", 0) or 0),
            extra=unpack_json("extra", row, {}) or {},
            etag=row.get("etag"),
        )

    @staticmethod
    def _to_row(c: Cursor) -> dict[str, Any]:
        row: dict[str, Any] = {
            "mailbox": c.mailbox,
            "stream": c.stream,
            "resync_requested": c.resync_requested,
            "resync_reason": c.resync_reason[:1000],
            "window_start": c.window_start,
            "window_end": c.window_end,
            "lease_owner": c.lease_owner or "",
            "lease_until": c.lease_until,
            "last_success_at": c.last_success_at,
            "last_error": c.last_error[:4000],
            "consecutive_failures": c.consecutive_failures,
        }
        # Links and watermarks can exceed one property's 32K characters (a watermark lists the
        # ids already seen in its second); pack_json spreads them over several properties.
        row.update(pack_json("delta_link", c.delta_link))
        row.update(pack_json("watermark", c.watermark))
        row.update(pack_json("extra", c.extra))
        return {k: v for k, v in row.items() if v is not None}

    async def get(self, mailbox: str, stream: str) -> Cursor:
        row = await self._t.get(encode_key(mailbox), stream)
        return self._from_row(mailbox, stream, row)

    async def list_for_mailbox(self, mailbox: str) -> list[Cursor]:
        return [
            self._from_row(mailbox, r["RowKey"], r)
            async for r in self._t.partition(encode_key(mailbox))
        ]

    async def for_run(self, lease: Lease) -> Cursor:
        """The cursor a run holding ``lease`` starts from.  The claim wrote the row moments ago
        and this process kept what it wrote (with its ETag), so it is not read again; without
        that (another process claimed, or the row was forgotten) it is read."""
        pk = encode_key(lease.mailbox)
        known = self._t.known(pk, lease.stream)
        if known is not None and known.get("lease_owner") == lease.owner:
            return self._from_row(lease.mailbox, lease.stream, known)
        return await self.get(lease.mailbox, lease.stream)

    async def update(self, mailbox: str, stream: str, change: Callable[[Cursor], Cursor]) -> Cursor:
        """ETag-guarded read-modify-write of a cursor (bounded retries on conflict).

        When this process knows the row (it read or wrote it last), the write starts from that
        version and its ETag, with no read; a 412 (someone wrote since) falls back to reading.
        A change that leaves the row as it is writes nothing."""
        pk = encode_key(mailbox)
        known = self._t.known(pk, stream)
        if known is not None:
            done = await self._update_known(mailbox, stream, known, change)
            if done is not None:
                return done

        def apply(row: dict[str, Any] | None) -> dict[str, Any]:
            return self._to_row(change(self._from_row(mailbox, stream, row)))

        row = await self._t.cas(pk, stream, apply)
        return self._from_row(mailbox, stream, row)

    async def _update_known(
        self, mailbox: str, stream: str, known: dict[str, Any], change: Callable[[Cursor], Cursor]
    ) -> Cursor | None:
        """``update`` from the remembered row; None when it must read the row after all."""
        current = self._from_row(mailbox, stream, known)
        try:
            new = self._to_row(change(current))
        except Exception:
            return None  # decided on the row as it was: decide again on the row as it is
        if new == self._to_row(current):
            return current
        new["PartitionKey"], new["RowKey"] = encode_key(mailbox), stream
        etag = await self._t.replace_if(new, str(known.get("etag") or ""))
        if etag is None:
            return None
        return self._from_row(mailbox, stream, {**new, "etag": etag})

    async def advance(self, lease: Lease, change: Callable[[Cursor], Cursor]) -> Cursor:
        """Update the cursor only while ``lease`` still holds (its owner is the writer)."""

        def guarded(c: Cursor) -> Cursor:
            if not holds(c.lease_owner, lease.owner):
                raise LeaseLost(f"lease on {lease.mailbox}/{lease.stream} is no longer ours")
            return change(c)

        return await self.update(lease.mailbox, lease.stream, guarded)

    async def request_resync(self, mailbox: str, stream: str, reason: str) -> Cursor:
        def change(c: Cursor) -> Cursor:
            return c.model_copy(update={"resync_requested": True, "resync_reason": reason})

        return await self.update(mailbox, stream, change)

    async def claim(
        self, mailbox: str, stream: str, owner: str, seconds: int, *, now: datetime | None = None
    ) -> Lease | None:
        """Take the stream's lease if it is free or expired. None if another worker holds it.

        Exactly one of several concurrent claimers wins: each writes with the ETag it read, so
        all but the first get 412 and, on re-reading, see a live lease."""
        now = now or utcnow()
        pk = encode_key(mailbox)
        # The row as this process last wrote it (the previous run's release, usually): the
        # claim's conditional write starts from it without a read; if anyone wrote since,
        # the write fails and the row is read.
        known = self._t.known(pk, stream)
        for attempt in range(CAS_ATTEMPTS + 1):
            remembered = attempt == 0 and known is not None
            row = known if remembered else await self._t.get(pk, stream)
            cur = self._from_row(mailbox, stream, row)
            if lease_state(cur.lease_owner, cur.lease_until, owner, now) is LeaseState.HELD:
                if remembered:
                    continue  # what this process remembers may be old: read the row
                return None
            until = lease_expiry(now, seconds)
            new = self._to_row(cur.model_copy(update={"lease_owner": owner, "lease_until": until}))
            new["PartitionKey"], new["RowKey"] = encode_key(mailbox), stream
            # The write answers with the row's new ETag (kept with the row: ``for_run`` and the
            # run's cursor writes start from it), so nothing is read back; None: another
            # claimer wrote first, so read again.
            etag = await (self._t.replace_if(new, row["etag"]) if row else self._t.create(new))
            if etag is None:
                continue
            return Lease(mailbox=mailbox, stream=stream, owner=owner, until=until, etag=etag)
        return None

    async def renew(self, lease: Lease, seconds: int, *, now: datetime | None = None) -> Lease:
        now = now or utcnow()
        until = lease_expiry(now, seconds)

        def change(c: Cursor) -> Cursor:
            if not holds(c.lease_owner, lease.owner):
                raise LeaseLost(f"lease on {lease.mailbox}/{lease.stream} was taken over")
            return c.model_copy(update={"lease_until": until})

        await self.update(lease.mailbox, lease.stream, change)
        return lease.model_copy(update={"until": until})

    async def release(self, lease: Lease, then: Callable[[Cursor], Cursor] | None = None) -> bool:
        """Free the stream, applying ``then`` (the run's last position) in the same write.
        False when the lease was no longer ours: nothing is written."""
        ours = True

        def change(c: Cursor) -> Cursor:
            nonlocal ours
            ours = holds(c.lease_owner, lease.owner)
            if not ours:
                return c  # someone else owns it now; leave their lease and cursor alone
            c = then(c) if then is not None else c
            return c.model_copy(update={"lease_owner": None, "lease_until": None})

        await self.update(lease.mailbox, lease.stream, change)
        return ours

    async def leased(self) -> list[LeaseRow]:
        """Every cursor row that names a lease owner, across mailboxes (the sweeper's query:
        the streams running now, plus the cut ones)."""
        flt = "lease_owner gt @empty"
        return [
            LeaseRow(
                str(r.get("mailbox") or ""),
                str(r["RowKey"]),
                str(r.get("lease_owner") or ""),
                _dt(r.get("lease_until")),
                r["etag"],
            )
            async for r in self._t.query(flt, {"empty": ""})
        ]

    async def clear_cut(self, lease: LeaseRow) -> bool:
        """Forget a cut run's lease once its stream is re-sent; False if the row changed since
        the sweeper read it (a claim took the stream meanwhile)."""
        try:
            await self._t.client.update_entity(
                {
                    "PartitionKey": encode_key(lease.mailbox),
                    "RowKey": lease.stream,
                    "lease_owner": "",
                },
                mode=UpdateMode.MERGE,
                etag=lease.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True


class LeaseLost(RuntimeError):
    """Our lease expired and another worker took the stream; stop without advancing."""


# ------------------------------------------------------------------------ dirty-stream markers


@dataclass(frozen=True)
class Placed:
    """What placing a marker came to; the marker it set (its ETag and date), if it set one;
    and whether its first look found a marker there (None when it cannot say)."""

    outcome: Marked
    etag: str | None = None
    marked_at: datetime | None = None
    found: bool | None = None
    # REMEMBERED: how long, from the call's start, the caller may answer from memory: as long
    # as the marker's flag is dated for (``sync.core.streams.flag_lasts``).
    remember_for: float = 0.0

    @property
    def own(self) -> OwnMarker | None:
        """The marker set, as the webhook's memory keeps it (``OwnMarker``)."""
        if self.etag is None or self.marked_at is None:
            return None
        return OwnMarker(self.etag, self.marked_at)


def _real_etag(etag: str) -> str | None:
    """``_Table.create``/``replace_if`` answer ``"*"`` when the service named no ETag; a
    conditional delete on that would match any version, so it is no ETag at all."""
    return None if etag == "*" else etag


class DirtyMarkers:
    """'A job for this stream is already queued': lets the webhook enqueue once per burst.
    Marker names, states and outcomes are those of ``sync.core.streams``.

    A row: ``marked_at`` (when its job was queued), ``mailbox``, and ``remembered`` once a
    webhook instance answers repeats from memory (``mark_or_remember``), with
    ``remembered_until``, the flagging instance's clock when its memory lapses; the run that
    takes a remembered marker reads again once that time has passed (``memory_left``)."""

    def __init__(self, table: _Table) -> None:
        self._t = table

    async def mark(
        self, mailbox: str, stream: str, *, ttl_seconds: int, now: datetime | None = None
    ) -> bool:
        """True if the caller should enqueue (no live marker existed); False to coalesce."""
        placed = await self.place(mailbox, stream, ttl_seconds=ttl_seconds, now=now)
        return placed.outcome is Marked.QUEUE

    async def place(
        self,
        mailbox: str,
        stream: str,
        *,
        ttl_seconds: int,
        remember_for: float = 0.0,
        expect_live: bool = False,
        own: OwnMarker | None = None,
        now: datetime | None = None,
    ) -> Placed:
        """``mark`` (or, with ``remember_for``, ``mark_or_remember``) that also answers with
        the marker it set (ETag and date): the job it queues carries the ETag, so the run takes
        the marker with one conditional delete instead of a read and a delete (``take``).

        The first look: inserts first unless ``expect_live`` (reads first); with ``own`` (the
        marker this caller set last, ``Placed.own``) and ``remember_for``, flags that version
        with one conditional write and no read, which only succeeds while the row is exactly
        the one the caller wrote."""
        return await self._mark(
            mailbox,
            stream,
            ttl_seconds,
            now,
            remember_for=remember_for,
            insert_first=not expect_live,
            own=own if remember_for > 0 else None,
        )

    async def mark_or_remember(
        self,
        mailbox: str,
        stream: str,
        *,
        ttl_seconds: int,
        window: float = 1.0,
        expect_live: bool = False,
        now: datetime | None = None,
    ) -> Marked:
        """``mark`` for the webhook's memory: a live marker is flagged ``remembered``, dated
        ``window`` seconds ahead (one conditional write per marker and window, by whichever
        instance finds it unflagged or its date passed) and the answer says whether this
        instance may now answer repeats from memory (for as long as the flag's date allows:
        ``Placed.remember_for``).

        ``expect_live`` (the last look at this marker found it live: a burst, or jobs that
        wait) reads first; otherwise it inserts first, which is one round trip when there is no
        marker, as between bursts, where a read would need an insert after it."""
        placed = await self.place(
            mailbox,
            stream,
            ttl_seconds=ttl_seconds,
            remember_for=window,
            expect_live=expect_live,
            now=now,
        )
        return placed.outcome

    async def _mark(
        self,
        mailbox: str,
        stream: str,
        ttl: int,
        now: datetime | None,
        *,
        remember_for: float,
        insert_first: bool = False,
        own: OwnMarker | None = None,
    ) -> Placed:
        now = now or utcnow()
        remember = remember_for > 0
        until = now + timedelta(seconds=remember_for)  # the date a flag written here carries
        pk = encode_key(mailbox)
        fresh = {"PartitionKey": pk, "RowKey": stream, "marked_at": now, "mailbox": mailbox}
        found: bool | None = None  # what the first look found
        if own is not None:
            placed = await self._flag_own(fresh, own, now, ttl, remember_for)
            if placed is not None:
                return placed
            found = True  # there, but not as we wrote it: read it below
        elif insert_first:
            if etag := await self._insert(fresh):
                return Placed(Marked.QUEUE, _real_etag(etag), now, found=False)
            found = True
        lost_flag = False
        for _ in range(3):
            row = await self._t.get(pk, stream)
            if found is None:
                found = row is not None
            if row is None and lost_flag:
                # Taken while we flagged it: the run's read covers us.
                return Placed(Marked.COALESCED, found=found)
            marked = _dt(row.get("marked_at")) if row is not None else None
            state = marker_state(exists=row is not None, marked_at=marked, now=now, ttl_seconds=ttl)
            # A flag whose date has passed is dated afresh before this caller remembers.
            lasts = (
                flag_lasts(bool(row.get("remembered")), _flag_date(row), now)
                if row is not None
                else None
            )
            outcome = marked_outcome(state, flagged=lasts is not None, remember=remember)
            if row is None:
                if etag := await self._insert(fresh):
                    return Placed(Marked.QUEUE, _real_etag(etag), now, found=found)
                continue  # another instance created it between our read and insert: re-read
            if outcome is None:
                # Live and not yet flagged: flag it as it is.  If the run took it meanwhile the
                # write fails, and the run's read covers this notification (the marker was live
                # when we read it): coalesced, but not remembered.
                flag = {**row, "remembered": True, "remembered_until": until}
                if await self._t.replace_if(flag, row["etag"]):
                    return Placed(Marked.REMEMBERED, found=found, remember_for=remember_for)
                lost_flag = True
                continue
            if outcome is Marked.REMEMBERED:
                return Placed(outcome, found=found, remember_for=lasts or 0.0)
            if outcome is not Marked.QUEUE:
                return Placed(outcome, found=found)
            # Stale marker: its job was lost (crash between mark and enqueue, or poisoned).
            if etag := await self._t.replace_if(fresh, row["etag"]):
                return Placed(Marked.QUEUE, _real_etag(etag), now, found=found)
        return Placed(Marked.COALESCED, found=found)

    async def _flag_own(
        self, fresh: dict[str, Any], own: OwnMarker, now: datetime, ttl: int, remember_for: float
    ) -> Placed | None:
        """The first look at a marker this instance set (``OwnMarker``), without reading it:
        the row is exactly what it wrote, or the conditional write fails.  Live, it is flagged
        (``remembered``, as a read would have done); stale, it is set afresh and its job must be
        queued again; gone (its run took it), a new one is inserted.  None when the row changed
        since (another instance flagged it, the sweeper refreshed it): the caller reads it."""
        state = marker_state(exists=True, marked_at=own.marked_at, now=now, ttl_seconds=ttl)
        live = state is MarkerState.LIVE
        until = now + timedelta(seconds=remember_for)
        row = (
            {**fresh, "marked_at": own.marked_at, "remembered": True, "remembered_until": until}
            if live
            else fresh
        )
        result = await self._t.replace_version(row, own.etag)
        if isinstance(result, str):
            if live:
                return Placed(Marked.REMEMBERED, found=True, remember_for=remember_for)
            return Placed(Marked.QUEUE, _real_etag(result), now, found=True)
        if result is False:
            return None
        # Gone (its run took it): insert a new one.
        if etag := await self._insert(fresh):
            return Placed(Marked.QUEUE, _real_etag(etag), now, found=False)
        return None  # inserted by another instance meanwhile: read it

    async def _insert(self, fresh: dict[str, Any]) -> str | None:
        """``create`` of a new marker, safe when the connection drops under it.  The insert
        may have landed with its reply lost (aiohttp reports a closed socket as a request
        error even after the request went out), and azure-core sends no POST again by itself:
        answering 503 then would leave the marker with no job, and Graph's retry would
        coalesce into it (the sweeper's re-send, a minute later, was the only way out).  So
        the row is read: none, the insert is sent again (once); one dated as this insert
        (``marked_at``, to the microsecond) is this insert's, flagged since or not, and its
        job is queued; any other is someone else's.  With storage down, the read fails as
        the insert did."""
        try:
            return await self._t.create(fresh)
        except (ServiceRequestError, ServiceResponseError):
            row = await self._t.get(fresh["PartitionKey"], fresh["RowKey"])
            if row is None:
                return await self._t.create(fresh)
            if _dt(row.get("marked_at")) == fresh["marked_at"]:
                return str(row["etag"]) or "*"
            return None

    async def take(self, mailbox: str, stream: str, etag: str | None = None) -> TakenMarker | None:
        """Remove the marker before a read; None if there was none.  Conditional on the row
        read, so a ``remembered`` flag written meanwhile is never lost with the row.

        ``etag``: the marker as its job's sender set it (``place``).  A delete conditional on
        it succeeds only while the marker is exactly that unflagged row, so it takes the
        marker in one request; any other answer (flagged or refreshed since: 412) falls back
        to reading."""
        pk = encode_key(mailbox)
        if etag:
            deleted = await self._t.delete_if(pk, stream, etag)
            if deleted is None:
                return None  # taken by another run already: nothing pending
            if deleted:
                return TakenMarker(remembered=False)
        for _ in range(CAS_ATTEMPTS):
            row = await self._t.get(pk, stream)
            if row is None:
                return None
            # (A row deleted by someone else since our read counts as taken: following up on
            # it is harmless.)
            if not await self._t.delete(pk, stream, row["etag"]):
                continue  # flagged or refreshed since we read it: read it again
            return TakenMarker(
                remembered=bool(row.get("remembered")), remembered_until=_flag_date(row)
            )
        raise ConcurrencyError(f"gave up taking the marker {pk}/{stream}")

    async def clear(self, mailbox: str, stream: str) -> bool:
        """Remove the marker; True if there was one (a notification was pending).
        (The SDK's delete ignores a missing row, so existence needs the read.)"""
        pk = encode_key(mailbox)
        if await self._t.get(pk, stream) is None:
            return False
        await self._t.delete(pk, stream)
        return True

    async def is_marked(self, mailbox: str, stream: str) -> bool:
        return await self._t.get(encode_key(mailbox), stream) is not None

    async def older_than(self, when: datetime) -> list[MarkerRow]:
        """Every marker set before ``when``, across mailboxes (the sweeper's one query: it
        returns only the few markers whose job is late)."""
        out = []
        async for row in self._t.query("marked_at lt @t", {"t": when}):
            mailbox = str(row.get("mailbox") or "") or _decoded(row["PartitionKey"])
            if mailbox:
                out.append(
                    MarkerRow(mailbox, str(row["RowKey"]), _dt(row.get("marked_at")), row["etag"])
                )
        return out

    async def refresh(self, marker: MarkerRow, now: datetime | None = None) -> bool:
        """Date a late marker anew once its job is re-sent (only if nobody touched it)."""
        pk = encode_key(marker.mailbox)
        fresh = {
            "PartitionKey": pk,
            "RowKey": marker.name,
            "marked_at": now or utcnow(),
            "mailbox": marker.mailbox,
        }
        return await self._t.replace_if(fresh, marker.etag) is not None


def _decoded(key: str) -> str:
    try:
        return decode_key(key)
    except ValueError:
        return ""


# -------------------------------------------------------------------------------------- links


def _link_pk(mailbox: str, stream: str) -> str:
    return f"{encode_key(mailbox)}|{stream}"


def _o_key(outlook_id: str) -> str:
    return "o:" + encode_key(outlook_id)


def _w_key(workbooks_type: str, workbooks_id: int) -> str:
    return "w:" + encode_key(f"{workbooks_type}:{workbooks_id}")


SUMMARY_KEY = "!summary"  # sorts before "o:", "w:" and "x:": never part of a range read
# Linked series a summary names (Outlook id and tracked time, ~200 characters each); a calendar
# with more is read whole by the runs that need its series (``sync.engine.links``).
MAX_SUMMARY_SERIES = 500


@dataclass
class LinkSummary:
    """What a run needs of a (mailbox, stream)'s links without reading them all, kept in one
    row of their partition and written with them: the linked records (id -> type; their count
    is the mass-change brake's base) and those a one-way run linked unsettled.

    Always a superset: a link's record is added before its rows are written and removed only
    after they are deleted, so a run that stops in between leaves an id too many (a lookup that
    finds nothing), never one too few.  A full read of the links rewrites it exactly."""

    ids: dict[int, str] = field(default_factory=dict)
    unsettled: set[int] = field(default_factory=set)
    # Linked series (Outlook id -> ``tracked_text`` of its snapshot), so a calendar run finds
    # the series whose occurrence has passed without reading every link.  None: not known (a
    # row written before it was kept, or more than ``MAX_SUMMARY_SERIES``).  Never one too
    # few: a new series enters with its rows, a changed or gone one is updated after them.
    series: dict[str, str] | None = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.ids)

    def copy(self) -> LinkSummary:
        series = None if self.series is None else dict(self.series)
        return LinkSummary(dict(self.ids), set(self.unsettled), series)

    def of_type(self, workbooks_type: str) -> list[int]:
        return sorted(i for i, t in self.ids.items() if t == workbooks_type)

    def to_row(self, pk: str) -> dict[str, Any]:
        """The summary's row: how many ids of each type (JSON) and the ids themselves packed
        (``pack_ints``, one run per type, then the unsettled ones) in binary properties.  At
        one to three bytes an id it holds a few hundred thousand linked records, where the JSON
        of the first layout reached Table Storage's 1 MiB at about 75,000."""
        types: dict[str, list[int]] = {}
        for wid, kind in self.ids.items():
            types.setdefault(kind, []).append(wid)
        order = sorted(types)
        packed = b"".join(pack_ints(types[kind]) for kind in order) + pack_ints(self.unsettled)
        meta: dict[str, Any] = {
            "v": 2,
            "types": {kind: len(types[kind]) for kind in order},
            "unsettled": len(self.unsettled),
        }
        if self.series is not None:  # absent: not known (a reader of the first v2 rows)
            meta["series"] = self.series
        row: dict[str, Any] = {"PartitionKey": pk, "RowKey": SUMMARY_KEY, "data_kind": "summary"}
        row.update(pack_json("data", meta))
        row.update(pack_bytes("ids", packed))
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LinkSummary | None:
        """The summary a row holds; None when it cannot be read (an unknown layout, damaged
        data): the next full read of the links writes it anew."""
        try:
            data = unpack_json("data", row, {}) or {}
            if data.get("v") == 1:  # the first layout: every id in the JSON
                ids = {int(i): str(t) for t, found in data.get("types", {}).items() for i in found}
                return cls(ids, {int(i) for i in data.get("unsettled", [])}, None)
            if data.get("v") != 2:
                return None
            packed, at = unpack_bytes("ids", row), 0
            ids = {}
            for kind in sorted(data.get("types", {})):
                found, at = unpack_ints(packed, int(data["types"][kind]), at)
                ids.update(dict.fromkeys(found, str(kind)))
            unsettled, at = unpack_ints(packed, int(data.get("unsettled", 0)), at)
            found_series = data.get("series")
            series = (
                None
                if found_series is None
                else {str(k): str(v) for k, v in dict(found_series).items()}
            )
        except (ValueError, TypeError, AttributeError):
            return None
        if at != len(packed):
            return None  # more bytes than counts: not what ``to_row`` wrote
        return cls(ids, set(unsettled), series)

    @classmethod
    def of(cls, links: Iterable[Link]) -> LinkSummary:
        out = cls()
        series: dict[str, str] = {}
        for link in links:
            out.ids[link.workbooks_id] = link.workbooks_type
            if link.unsettled:
                out.unsettled.add(link.workbooks_id)
            if (text := series_time(link.snapshot)) is not None:
                series[link.outlook_id] = text
        out.series = series if len(series) <= MAX_SUMMARY_SERIES else None
        return out

    def add(self, links: Iterable[Link]) -> dict[str, str | None]:
        """Name the records (and new series) of links about to be written; returns the series
        values that change or go once they are written (``settle``).  Before the rows: never
        one too few."""
        later: dict[str, str | None] = {}
        for link in links:
            self.ids[link.workbooks_id] = link.workbooks_type
            if link.unsettled:
                self.unsettled.add(link.workbooks_id)
            if self.series is None:
                continue
            text = series_time(link.snapshot)
            if link.outlook_id not in self.series:
                if text is not None:
                    self.series[link.outlook_id] = text
            elif self.series[link.outlook_id] != text:
                later[link.outlook_id] = text
        if self.series is not None and len(self.series) > MAX_SUMMARY_SERIES:
            self.series = None
        return later

    def settle(
        self, written: Iterable[Link], removed: Iterable[Link], later: Mapping[str, str | None]
    ) -> LinkSummary:
        """The summary once ``written`` are stored and ``removed`` deleted (a new one)."""
        out = self.copy()
        written = list(written)
        kept = {x.workbooks_id for x in written}
        kept_items = {x.outlook_id for x in written}
        for link in removed:
            if link.workbooks_id not in kept:
                out.ids.pop(link.workbooks_id, None)
                out.unsettled.discard(link.workbooks_id)
            if out.series is not None and link.outlook_id not in kept_items:
                out.series.pop(link.outlook_id, None)
        out.unsettled -= {x.workbooks_id for x in written if not x.unsettled}
        if out.series is not None:
            for oid, text in later.items():
                if text is None:
                    out.series.pop(oid, None)
                else:
                    out.series[oid] = text
        return out


class LinkStore:
    def __init__(self, table: _Table) -> None:
        self._t = table

    @staticmethod
    def _rows(link: Link) -> tuple[dict[str, Any], dict[str, Any]]:
        pk = _link_pk(link.mailbox, link.stream)
        body: dict[str, Any] = {"PartitionKey": pk, "data_kind": "link"}
        body.update(pack_json("data", link.model_dump(mode="json")))
        o_row = {**body, "RowKey": _o_key(link.outlook_id)}
        w_row = {**body, "RowKey": _w_key(link.workbooks_type, link.workbooks_id)}
        return o_row, w_row

    @staticmethod
    def _load(row: dict[str, Any] | None) -> Link | None:
        return Link.model_validate(unpack_json("data", row)) if row else None

    async def by_outlook(self, mailbox: str, stream: str, outlook_id: str) -> Link | None:
        return self._load(await self._t.get(_link_pk(mailbox, stream), _o_key(outlook_id)))

    async def by_workbooks(
        self, mailbox: str, stream: str, workbooks_type: str, workbooks_id: int
    ) -> Link | None:
        return self._load(
            await self._t.get(_link_pk(mailbox, stream), _w_key(workbooks_type, workbooks_id))
        )

    async def summary(self, mailbox: str, stream: str) -> LinkSummary | None:
        """The stream's ``LinkSummary`` (one read); None if it has none yet."""
        row = await self._t.get(_link_pk(mailbox, stream), SUMMARY_KEY)
        return LinkSummary.from_row(row) if row else None

    async def write_summary(self, mailbox: str, stream: str, summary: LinkSummary) -> None:
        await self._t.upsert(summary.to_row(_link_pk(mailbox, stream)))

    async def put(self, link: Link) -> None:
        await self.put_many([link])

    async def put_many(
        self,
        links: list[Link],
        removed: list[Link] | None = None,
        *,
        summary: LinkSummary | None = None,
    ) -> None:
        """Write and delete links of one (mailbox, stream) in as few transactions as allowed,
        keeping the stream's ``LinkSummary`` a superset of them: the records of new links go
        into it with the first transaction, those of removed ones leave it after the deletes.
        ``summary``: the stream's current one, as the caller keeps it (updated in place);
        without it the stored one is read first."""
        removed = removed or []
        by_pk: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        streams: dict[str, tuple[str, str]] = {}
        for link in links:
            for row in self._rows(link):
                by_pk.setdefault(row["PartitionKey"], []).append(("upsert", row))
        for link in removed:
            pk = _link_pk(link.mailbox, link.stream)
            for rk in (_o_key(link.outlook_id), _w_key(link.workbooks_type, link.workbooks_id)):
                by_pk.setdefault(pk, []).append(("delete", {"PartitionKey": pk, "RowKey": rk}))
        for link in [*links, *removed]:
            streams[_link_pk(link.mailbox, link.stream)] = (link.mailbox, link.stream)
        for pk, ops in by_pk.items():
            mine = [x for x in links if _link_pk(x.mailbox, x.stream) == pk]
            gone = [x for x in removed if _link_pk(x.mailbox, x.stream) == pk]
            known = summary if summary is not None and len(by_pk) == 1 else None
            await self._put_partition(pk, ops, mine, gone, known, streams[pk])

    async def _put_partition(
        self,
        pk: str,
        ops: list[tuple[str, Mapping[str, Any]]],
        links: list[Link],
        removed: list[Link],
        summary: LinkSummary | None,
        stream: tuple[str, str],
    ) -> None:
        if summary is None:
            summary = await self.summary(*stream)
            if summary is None:  # none yet: start it from every link (once per stream)
                summary = LinkSummary.of([x async for x in self.list(*stream)])
        # A batch may touch each row only once; keep the last operation per row.
        last: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for verb, entity in ops:
            last[str(entity["RowKey"])] = (verb, entity)
        # Deletes of rows that do not exist fail a whole transaction; do them one by one.
        upserts = [op for op in last.values() if op[0] == "upsert"]
        deletes = [op for op in last.values() if op[0] == "delete"]
        before = summary.copy()
        later = summary.add(links)
        grown = summary != before
        if grown or upserts:
            head = [("upsert", summary.to_row(pk))] if grown else []
            await self._t.transact([*head, *upserts])
        for _, entity in deletes:
            await self._t.delete(str(entity["PartitionKey"]), str(entity["RowKey"]))
        shrunk = summary.settle(links, removed, later)
        if shrunk != summary:
            await self._t.upsert(shrunk.to_row(pk))
            summary.ids, summary.unsettled = shrunk.ids, shrunk.unsettled
            summary.series = shrunk.series

    async def delete(self, link: Link) -> None:
        await self.put_many([], removed=[link])

    async def list(self, mailbox: str, stream: str) -> AsyncIterator[Link]:
        flt = "PartitionKey eq @pk and RowKey ge 'o:' and RowKey lt 'o;'"
        async for row in self._t.query(flt, {"pk": _link_pk(mailbox, stream)}):
            link = self._load(row)
            if link:
                yield link

    async def count(self, mailbox: str, stream: str) -> int:
        """How many links the stream has (its summary's count; counted if it has none)."""
        summary = await self.summary(mailbox, stream)
        if summary is not None:
            return summary.count
        return len([1 async for _ in self.list(mailbox, stream)])


# ----------------------------------------------------------------------------------- identity

_REMOVAL, _ISSUE = "x:r:", "x:i:"


def _removal_key(workbooks_type: str, workbooks_id: int) -> str:
    return _REMOVAL + encode_key(f"{workbooks_type}:{workbooks_id}")


def _issue_key(outlook_id: str) -> str:
    return _ISSUE + encode_key(outlook_id)


def _removal(row: Mapping[str, Any]) -> Removal:
    return Removal.model_validate(unpack_json("data", row))


def _issue(row: Mapping[str, Any]) -> IdentityIssue:
    return IdentityIssue.model_validate(unpack_json("data", row))


class IdentityStore:
    """What a (mailbox, stream) remembers beyond its links: records the user removed from
    Outlook (so no run puts them back) and shared items left unlinked as ambiguous or
    duplicate (for status and ``items``).  Rows in the links' partition (see the layout)."""

    def __init__(self, table: _Table) -> None:
        self._t = table

    async def _rows(self, mailbox: str, stream: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
        async for row in self._t.prefix(_link_pk(mailbox, stream), prefix):
            yield row

    async def removals(self, mailbox: str, stream: str) -> list[Removal]:
        return [_removal(r) async for r in self._rows(mailbox, stream, _REMOVAL)]

    async def issues(self, mailbox: str, stream: str) -> list[IdentityIssue]:
        return [_issue(r) async for r in self._rows(mailbox, stream, _ISSUE)]

    async def load(self, mailbox: str, stream: str) -> tuple[list[Removal], list[IdentityIssue]]:
        """``removals`` and ``issues`` with one range read (a run needs both)."""
        removals: list[Removal] = []
        issues: list[IdentityIssue] = []
        async for row in self._rows(mailbox, stream, "x:"):
            key = str(row["RowKey"])
            if key.startswith(_REMOVAL):
                removals.append(_removal(row))
            elif key.startswith(_ISSUE):
                issues.append(_issue(row))
        return removals, issues

    async def counts(self, mailbox: str, stream: str) -> dict[str, int]:
        """{"ambiguous", "duplicate", "removed"} for status, without unpacking the rows."""
        return identity_counts(
            [str(row.get("kind") or "") async for row in self._rows(mailbox, stream, "x:")]
        )

    async def save(
        self,
        mailbox: str,
        stream: str,
        *,
        removals: list[Removal] | None = None,
        issues: list[IdentityIssue] | None = None,
    ) -> None:
        """Record removals and issues (replacing any with the same key), in transactions."""
        pk = _link_pk(mailbox, stream)
        ops: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for removal in removals or []:
            rk = _removal_key(removal.workbooks_type, removal.workbooks_id)
            ops[rk] = ("upsert", self._row(pk, rk, "removed", removal.model_dump(mode="json")))
        for issue in issues or []:
            rk = _issue_key(issue.outlook_id)
            ops[rk] = ("upsert", self._row(pk, rk, issue.kind, issue.model_dump(mode="json")))
        if ops:
            await self._t.transact(list(ops.values()))

    @staticmethod
    def _row(pk: str, rk: str, kind: str, data: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk, "data_kind": "identity"}
        row["kind"] = kind
        row.update(pack_json("data", data))
        return row

    async def drop(
        self,
        mailbox: str,
        stream: str,
        *,
        removals: list[Removal] | None = None,
        issues: list[str] | None = None,
    ) -> None:
        """Forget these removals and the issues of these Outlook ids (missing rows are fine)."""
        pk = _link_pk(mailbox, stream)
        keys = [_removal_key(r.workbooks_type, r.workbooks_id) for r in removals or []]
        keys += [_issue_key(oid) for oid in issues or []]
        for rk in dict.fromkeys(keys):
            await self._t.delete(pk, rk)

    async def clear_removals(self, mailbox: str, stream: str) -> int:
        """Forget every removal of the stream (an operator restores removed items)."""
        gone = await self.removals(mailbox, stream)
        await self.drop(mailbox, stream, removals=gone)
        return len(gone)


# ------------------------------------------------------------------------------------- emails

# Row kinds sharing the emails table with the EmailRecords.  ``encode_key`` never writes a "%"
# that is not followed by two hex digits, so these prefixes can never start a record's key.
INTENT_PREFIX = "%i:"  # a create intent: "%i:" + created_through_reference
PENDING_PREFIX = "%p:"  # a pending address: "%p:" + address + "%|" + message
PENDING_SEPARATOR = "%|"
_OTHER_ROWS = (INTENT_PREFIX, PENDING_PREFIX)


class EmailStore:
    def __init__(self, table: _Table) -> None:
        self._t = table

    @property
    def table(self) -> _Table:
        return self._t

    @staticmethod
    def is_record(row: Mapping[str, Any]) -> bool:
        """Whether a row of the emails table is an EmailRecord (a mailbox's partition also
        holds its create intents and pending addresses, under their own prefixes)."""
        return not str(row.get("RowKey", "")).startswith((INTENT_PREFIX, PENDING_PREFIX))

    async def get(self, mailbox: str, message_key: str) -> EmailRecord | None:
        if not mailbox or not message_key:
            return None  # no such row: empty keys are never written
        row = await self._t.get(encode_key(mailbox), encode_key(message_key))
        return EmailRecord.model_validate(unpack_json("data", row)) if row else None

    async def by_internet_id(self, mailbox: str, internet_message_id: str) -> EmailRecord | None:
        if not mailbox:
            return None
        flt = "PartitionKey eq @pk and internet_message_id eq @imid"
        async for row in self._t.query(
            flt, {"pk": encode_key(mailbox), "imid": internet_message_id}
        ):
            return EmailRecord.model_validate(unpack_json("data", row))
        return None

    @staticmethod
    def row(record: EmailRecord) -> dict[str, Any]:
        row: dict[str, Any] = {
            "PartitionKey": encode_key(record.mailbox),
            "RowKey": encode_key(record.message_key),
            "internet_message_id": record.internet_message_id,
            "state": record.state,
        }
        row.update(pack_json("data", record.model_dump(mode="json")))
        return row

    async def put(self, record: EmailRecord) -> None:
        await self._t.upsert(self.row(record))

    async def write(self, operations: list[Operation]) -> set[str]:
        """Operations on rows of the emails table (records, intents, pending addresses), one
        transaction per partition where the limits allow.  Inserts (``create``) that find their
        row there already are left out with the operations they name (``Operation``); returns
        the RowKeys of those rows."""
        return await self._t.transact_inserting(operations)

    async def list(self, mailbox: str) -> AsyncIterator[EmailRecord]:
        async for row in self._t.partition(encode_key(mailbox)):
            if not str(row["RowKey"]).startswith(_OTHER_ROWS):
                yield EmailRecord.model_validate(unpack_json("data", row))


# --------------------------------------------------------------------------------- create intents


class EmailIntents:
    """ "A Workbooks email for this message is being created": one row per
    ``created_through_reference``, inserted (never overwritten) before the create.

    An insert that succeeds proves that no run ever started to create that email, so the
    create needs no Workbooks lookup by reference first; one that finds the row there means an
    earlier attempt may have created it, and only then is Workbooks asked.  The row lives in
    the partition of the message's author (its ``from`` address): every copy of one message,
    in whichever mailbox it was sent or filed, names the same author, so they all meet on the
    same row; and for the usual case (the mailbox's own message) that is the mailbox's own
    partition, so the intent goes in one transaction with the records of its batch.

    Emails created before intents existed have none: ``since`` is when this table first held
    one, and a message sent before then (with an hour's margin for clocks, and for instances
    of an older version still finishing their jobs during a deployment) is always looked up.
    """

    META_PK, META_RK = "%meta", "intents"
    MARGIN = timedelta(hours=1)

    def __init__(self, table: _Table) -> None:
        self._t = table
        self._since: datetime | None = None

    @staticmethod
    def row(author: str, reference: str, mailbox: str, message_key: str) -> dict[str, Any]:
        return {
            "PartitionKey": encode_key(normalise_address(author)),
            "RowKey": INTENT_PREFIX + encode_key(reference),
            "mailbox": mailbox,
            "message_key": message_key[:512],
            "claimed_at": utcnow(),
        }

    @staticmethod
    def reference_of(row_key: str) -> str | None:
        return (
            decode_key(row_key[len(INTENT_PREFIX) :]) if row_key.startswith(INTENT_PREFIX) else None
        )

    async def since(self) -> datetime:
        """When intents were first written here (now, if never)."""
        if self._since is None:
            await self.start(utcnow())
        assert self._since is not None
        return self._since

    async def start(self, at: datetime) -> datetime:
        """Record that every email created from ``at`` on has an intent, unless a time is
        recorded already (a new deployment, whose table holds no older emails, may say so
        for a time in the past); returns the recorded time."""
        row = {"PartitionKey": self.META_PK, "RowKey": self.META_RK, "at": at}
        if await self._t.create(row) is None:
            stored = await self._t.get(self.META_PK, self.META_RK)
            at = _dt(stored.get("at") if stored else None) or at
        self._since = at
        return at

    async def covers(self, sent_at: datetime | None) -> bool:
        """Whether a message sent then can only have been created with an intent."""
        if sent_at is None:
            return False
        return sent_at >= await self.since() + self.MARGIN

    async def claim(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert these intents; returns the references whose intent existed already."""
        existing = await self._t.transact_inserting([Operation("create", row) for row in rows])
        return {r for r in (self.reference_of(k) for k in existing) if r}


# ------------------------------------------------------------------------------ pending index


class PendingIndex:
    """Unmatched recipients of shared messages, for retroactive linking: in the emails table,
    in the mailbox's partition, keyed by address then message, so every lookup is one range
    read of one partition (an address of one mailbox, or all of a mailbox's addresses), and the
    entries of a batch go in the same transaction as its records."""

    def __init__(self, table: _Table) -> None:
        self._t = table

    @staticmethod
    def _address_prefix(address: str) -> str:
        return f"{PENDING_PREFIX}{address_key(address)}{PENDING_SEPARATOR}"

    @classmethod
    def keys(cls, item: PendingAddress) -> tuple[str, str]:
        """(PartitionKey, RowKey): the mailbox; then the address, then the message."""
        return encode_key(item.mailbox), cls._address_prefix(item.address) + encode_key(
            item.message_key
        )

    @classmethod
    def row(cls, item: PendingAddress) -> dict[str, Any]:
        pk, rk = cls.keys(item)
        return {"PartitionKey": pk, "RowKey": rk, "data": item.model_dump_json()}

    async def add_many(self, items: list[PendingAddress]) -> None:
        by_pk: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for item in items:
            row = self.row(item)
            by_pk.setdefault(row["PartitionKey"], []).append(("upsert", row))
        for ops in by_pk.values():
            await self._t.transact(ops)

    async def for_address(self, mailbox: str, address: str) -> list[PendingAddress]:
        """The pending entries of one address in one mailbox: one range read."""
        if not normalise_address(address) or not normalise_address(mailbox):
            return []
        rows = self._t.prefix(encode_key(normalise_address(mailbox)), self._address_prefix(address))
        return [PendingAddress.model_validate_json(r["data"]) async for r in rows]

    async def for_mailbox(self, mailbox: str) -> list[PendingAddress]:
        """Every pending entry of a mailbox, in address order."""
        rows = self._t.prefix(encode_key(normalise_address(mailbox)), PENDING_PREFIX)
        return [PendingAddress.model_validate_json(r["data"]) async for r in rows]

    async def remove(self, item: PendingAddress) -> None:
        await self._t.delete(*self.keys(item))

    async def remove_many(self, items: list[PendingAddress]) -> None:
        """Remove entries, one transaction per partition (one by one if some are gone)."""
        by_pk: dict[str, dict[str, tuple[str, Mapping[str, Any]]]] = {}
        for item in items:
            pk, rk = self.keys(item)
            by_pk.setdefault(pk, {})[rk] = ("delete", {"PartitionKey": pk, "RowKey": rk})
        for pk, ops in by_pk.items():
            try:
                await self._t.transact(list(ops.values()))
            except TableTransactionError:
                for rk in ops:
                    await self._t.delete(pk, rk)

    async def count(self, mailbox: str) -> int:
        return len(await self.for_mailbox(mailbox))


# ---------------------------------------------------------------------------------- run log


def _inverted(ts: datetime) -> str:
    # Newest first: RowKeys sort ascending, so store (max - time).
    return f"{(9_999_999_999_999 - int(ts.timestamp() * 1000)):013d}"


class RunLog:
    """One row per job run, newest first in each mailbox's partition, kept ``keep_days``:
    the mailbox's renewal job (every few hours) deletes its older rows, which sit at the end
    of its partition (one range read, deletes in transactions), so a sync run writes its row
    and nothing else."""

    def __init__(self, table: _Table, keep_days: int = 14) -> None:
        self._t = table
        self.keep_days = keep_days

    async def put(self, run: RunRecord) -> None:
        row: dict[str, Any] = {
            "PartitionKey": encode_key(run.mailbox),
            "RowKey": f"{_inverted(run.started_at)}|{encode_key(run.job_id)}|{run.stream}",
            "status": run.status,
            "stream": run.stream,
        }
        row.update(pack_json("data", run.model_dump(mode="json")))
        await self._t.upsert(row, note=False)

    async def prune(self, mailbox: str, *, now: datetime | None = None) -> int:
        """Delete the mailbox's runs older than ``keep_days`` (0: keep every run); returns how
        many."""
        if not self.keep_days:
            return 0
        pk = encode_key(mailbox)
        cutoff = _inverted((now or utcnow()) - timedelta(days=self.keep_days))
        old = [
            ("delete", {"PartitionKey": pk, "RowKey": r["RowKey"]})
            async for r in self._t.query(
                "PartitionKey eq @pk and RowKey gt @cutoff",
                {"pk": pk, "cutoff": cutoff},
                select=["RowKey"],
            )
        ]
        if old:
            await self._t.transact(old)
        return len(old)

    async def recent(self, mailbox: str, limit: int = 20) -> list[RunRecord]:
        out: list[RunRecord] = []
        async for row in self._t.partition(encode_key(mailbox)):
            out.append(RunRecord.model_validate(unpack_json("data", row)))
            if len(out) >= limit:
                break
        return out

    async def count(self, mailbox: str) -> int:
        pk = encode_key(mailbox)
        return len(
            [1 async for _ in self._t.query("PartitionKey eq @pk", {"pk": pk}, select=["RowKey"])]
        )


class JobStatusStore:
    PK = "job"

    def __init__(self, table: _Table) -> None:
        self._t = table

    async def put(self, status: JobStatus) -> None:
        status = status.model_copy(update={"updated_at": utcnow()})
        await self._t.upsert(
            {
                "PartitionKey": self.PK,
                "RowKey": encode_key(status.job_id),
                "data": status.model_dump_json(),
            }
        )

    async def get(self, job_id: str) -> JobStatus | None:
        if not job_id or len(job_id) > 64:
            return None
        row = await self._t.get(self.PK, encode_key(job_id))
        return JobStatus.model_validate_json(row["data"]) if row else None

    async def update(
        self, job_id: str, change: Callable[[JobStatus], JobStatus]
    ) -> JobStatus | None:
        def apply(row: dict[str, Any] | None) -> dict[str, Any] | None:
            if row is None:
                return None
            new = change(JobStatus.model_validate_json(row["data"]))
            new = new.model_copy(update={"updated_at": utcnow()})
            return {"data": new.model_dump_json()}

        row = await self._t.cas(self.PK, encode_key(job_id), apply)
        return JobStatus.model_validate_json(row["data"]) if row else None


# ------------------------------------------------------------------------------------- facade


class StateStore:
    """All repositories over one TableServiceClient. Create once per process."""

    def __init__(
        self, service: TableServiceClient, prefix: str, *, runs_keep_days: int = 14
    ) -> None:
        self.service = service
        self.prefix = prefix
        # Cursor rows are written by the run that holds their lease, so this process usually
        # knows their current version: remember it, and write without reading first.
        t = {
            name: _Table(service.get_table_client(f"{prefix}{name}"), remember=name in REMEMBERING)
            for name in TABLES
        }
        self.mailboxes = MailboxRegistry(t["mailboxes"])
        self.doctor = DoctorResults(t["mailboxes"])
        self.subscriptions = SubscriptionStore(t["subscriptions"])
        self.workbooks_hooks = WorkbooksHookStore(t["subscriptions"])
        self.cursors = CursorStore(t["cursors"])
        self.dirty = DirtyMarkers(t["dirty"])
        self.links = LinkStore(t["links"])
        self.identity = IdentityStore(t["links"])
        self.emails = EmailStore(t["emails"])
        self.intents = EmailIntents(t["emails"])
        self.pending = PendingIndex(t["emails"])
        self.runs = RunLog(t["runs"], runs_keep_days)
        self.jobs = JobStatusStore(t["jobs"])
        self.health = StreamHealthStore(t["runs"], t["cursors"])
        self._tables = t

    @classmethod
    def from_connection_string(cls, conn: str, prefix: str) -> StateStore:
        return cls(TableServiceClient.from_connection_string(conn), prefix)

    async def ensure_tables(self) -> None:
        for name in TABLES:
            await self.service.create_table_if_not_exists(f"{self.prefix}{name}")

    async def drop_tables(self) -> None:
        """Delete every table of this prefix (tests and local resets only)."""
        for name in TABLES:
            await self.service.delete_table(f"{self.prefix}{name}")

    async def close(self) -> None:
        for table in self._tables.values():
            await table.client.close()
        await self.service.close()

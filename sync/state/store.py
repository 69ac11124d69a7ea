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
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from sync.core.doctor import DoctorReport
from sync.core.keys import address_key, decode_key, encode_key, normalise_address
from sync.core.state_models import (
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
    utcnow,
)
from sync.core.streams import (
    LeaseRow,
    LeaseState,
    Marked,
    MarkerRow,
    TakenMarker,
    holds,
    lease_expiry,
    lease_state,
    marker_state,
)
from sync.core.streams import marked as marked_outcome
from sync.core.subscriptions import hash_client_state
from sync.core.workbooks_hooks import HookTenant, HookToken
from sync.state.limits import check_entity, chunk_batch, pack_json, unpack_json
from sync.state.tables import TABLES

log = logging.getLogger(__name__)

__all__ = ["StateStore", "hash_client_state"]

CAS_ATTEMPTS = 8
T = TypeVar("T")


class ConcurrencyError(RuntimeError):
    """A read-modify-write kept losing to other writers; the caller should retry the job."""


def _dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value))


def _with_etag(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of a stored entity, with its ETag under ``etag``."""
    meta = getattr(entity, "metadata", None) or {}
    out = dict(entity)
    out["etag"] = str(meta.get("etag", ""))
    return out


class _Table:
    """Thin wrapper adding limit checks and ETag-guarded read-modify-write."""

    def __init__(self, client: TableClient) -> None:
        self.client = client

    async def get(self, pk: str, rk: str) -> dict[str, Any] | None:
        try:
            entity = await self.client.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None
        return _with_etag(entity)

    async def upsert(self, entity: dict[str, Any], *, replace: bool = True) -> None:
        check_entity(entity)
        mode = UpdateMode.REPLACE if replace else UpdateMode.MERGE
        await self.client.upsert_entity(entity, mode=mode)

    async def create(self, entity: dict[str, Any]) -> bool:
        """Insert; False if the key exists (the cheap 'claim once' primitive)."""
        check_entity(entity)
        try:
            await self.client.create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    async def replace_if(self, entity: dict[str, Any], etag: str) -> bool:
        """Replace only if unchanged since ``etag``; False when someone else wrote first."""
        check_entity(entity)
        body = {k: v for k, v in entity.items() if k != "etag"}
        try:
            await self.client.update_entity(
                body,
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    async def delete(self, pk: str, rk: str, etag: str | None = None) -> bool:
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

    async def query(
        self, flt: str, parameters: dict[str, Any] | None = None, *, page: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        async for entity in self.client.query_entities(
            flt, parameters=parameters or {}, results_per_page=page
        ):
            yield _with_etag(entity)

    async def partition(self, pk: str) -> AsyncIterator[dict[str, Any]]:
        async for e in self.query("PartitionKey eq @pk", {"pk": pk}):
            yield e

    async def transact(self, operations: list[tuple[str, Mapping[str, Any]]]) -> None:
        """Submit operations (one partition) in limit-respecting transactions."""
        for batch in chunk_batch(operations):
            ops: list[Any] = []
            for verb, entity in batch:
                body = {k: v for k, v in entity.items() if k != "etag"}
                if verb == "upsert":
                    ops.append(("upsert", body, {"mode": UpdateMode.REPLACE}))
                else:
                    ops.append((verb, body))
            try:
                await self.client.submit_transaction(ops)
            except TableTransactionError as exc:
                # Deleting a row that is already gone is success for us (idempotent replays).
                if getattr(exc, "error_code", "") == "ResourceNotFound" and all(
                    v == "delete" for v, _ in batch
                ):
                    continue
                raise

    async def cas(
        self,
        pk: str,
        rk: str,
        change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        *,
        attempts: int = CAS_ATTEMPTS,
    ) -> dict[str, Any] | None:
        """Read-modify-write with ETag; ``change`` gets the current row (or None) and returns
        the new row (or None to leave it).  Retries on conflict, at most ``attempts`` times."""
        for _ in range(attempts):
            current = await self.get(pk, rk)
            new = change(dict(current) if current else None)
            if new is None:
                return current
            new["PartitionKey"], new["RowKey"] = pk, rk
            if current is None:
                if await self.create(new):
                    return new
            elif await self.replace_if(new, current["etag"]):
                return new
        raise ConcurrencyError(f"gave up after {attempts} conflicting writes on {pk}/{rk}")


# ---------------------------------------------------------------------------------- mailboxes


def _mailbox_key(mailbox_id: str) -> str | None:
    """RowKey of a mailbox; None for an id that normalises to nothing (no such row exists)."""
    address = normalise_address(mailbox_id)
    return encode_key(address) if address else None


class MailboxRegistry:
    PK = "mailbox"

    def __init__(self, table: _Table) -> None:
        self._t = table

    @classmethod
    def _row(cls, mailbox: Mailbox) -> dict[str, Any]:
        return {
            "PartitionKey": cls.PK,
            "RowKey": encode_key(mailbox.id),
            "mailbox": mailbox.id,
            "enabled": mailbox.enabled,
            "data": mailbox.model_dump_json(),
        }

    async def get(self, mailbox_id: str) -> Mailbox | None:
        key = _mailbox_key(mailbox_id)
        row = await self._t.get(self.PK, key) if key else None
        return Mailbox.model_validate_json(row["data"]) if row else None

    async def put(self, mailbox: Mailbox) -> None:
        await self._t.upsert(self._row(mailbox.model_copy(update={"updated_at": utcnow()})))

    async def add(self, mailbox: Mailbox) -> bool:
        """Register a new mailbox; False if it already exists."""
        return await self._t.create(self._row(mailbox))

    async def list(self, *, enabled_only: bool = False) -> list[Mailbox]:
        out = [Mailbox.model_validate_json(r["data"]) async for r in self._t.partition(self.PK)]
        return [m for m in out if m.enabled or not enabled_only]

    async def remove(self, mailbox_id: str) -> bool:
        key = _mailbox_key(mailbox_id)
        if key is None or await self._t.get(self.PK, key) is None:
            return False
        return await self._t.delete(self.PK, key)

    async def set_enabled(self, mailbox_id: str, enabled: bool, reason: str = "") -> Mailbox | None:
        key = _mailbox_key(mailbox_id)
        if key is None:
            return None

        def change(row: dict[str, Any] | None) -> dict[str, Any] | None:
            if row is None:
                return None
            mb = Mailbox.model_validate_json(row["data"]).model_copy(
                update={"enabled": enabled, "disabled_reason": reason, "updated_at": utcnow()}
            )
            return {"mailbox": mb.id, "enabled": enabled, "data": mb.model_dump_json()}

        row = await self._t.cas(self.PK, key, change)
        return Mailbox.model_validate_json(row["data"]) if row else None


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
        params = {"lo": self.TENANT, "hi": self.TENANT[:-1] + "}", "rk": self.RK}
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

    async def update(self, mailbox: str, stream: str, change: Callable[[Cursor], Cursor]) -> Cursor:
        """ETag-guarded read-modify-write of a cursor (bounded retries on conflict)."""

        def apply(row: dict[str, Any] | None) -> dict[str, Any]:
            return self._to_row(change(self._from_row(mailbox, stream, row)))

        row = await self._t.cas(encode_key(mailbox), stream, apply)
        return self._from_row(mailbox, stream, row)

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
        for _ in range(CAS_ATTEMPTS):
            row = await self._t.get(encode_key(mailbox), stream)
            cur = self._from_row(mailbox, stream, row)
            if lease_state(cur.lease_owner, cur.lease_until, owner, now) is LeaseState.HELD:
                return None
            until = lease_expiry(now, seconds)
            new = self._to_row(cur.model_copy(update={"lease_owner": owner, "lease_until": until}))
            new["PartitionKey"], new["RowKey"] = encode_key(mailbox), stream
            check_entity(new)
            try:  # the write answers with the row's new ETag: no read back
                if row is None:
                    written = await self._t.client.create_entity(new)
                else:
                    written = await self._t.client.update_entity(
                        new,
                        mode=UpdateMode.REPLACE,
                        etag=row["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue  # another claimer wrote first: read again
            etag = str(written.get("etag") or "")
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

    async def release(self, lease: Lease) -> None:
        def change(c: Cursor) -> Cursor:
            if not holds(c.lease_owner, lease.owner):
                return c  # someone else owns it now; leave their lease alone
            return c.model_copy(update={"lease_owner": None, "lease_until": None})

        await self.update(lease.mailbox, lease.stream, change)

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


class DirtyMarkers:
    """'A job for this stream is already queued': lets the webhook enqueue once per burst.
    Marker names, states and outcomes are those of ``sync.core.streams``.

    A row: ``marked_at`` (when its job was queued), ``mailbox``, and ``remembered`` once a
    webhook instance answers repeats from memory (``mark_or_remember``); the run that takes a
    remembered marker follows up after the memory window."""

    def __init__(self, table: _Table) -> None:
        self._t = table

    async def mark(
        self, mailbox: str, stream: str, *, ttl_seconds: int, now: datetime | None = None
    ) -> bool:
        """True if the caller should enqueue (no live marker existed); False to coalesce."""
        outcome = await self._mark(mailbox, stream, ttl_seconds, now, remember=False)
        return outcome is Marked.QUEUE

    async def mark_or_remember(
        self,
        mailbox: str,
        stream: str,
        *,
        ttl_seconds: int,
        expect_live: bool = False,
        now: datetime | None = None,
    ) -> Marked:
        """``mark`` for the webhook's memory: a live marker is flagged ``remembered`` (one
        conditional write per marker, by whichever instance finds it unflagged first) and the
        answer says whether this instance may now answer repeats from memory.

        ``expect_live`` (the last look at this marker found it live: a burst, or jobs that
        wait) reads first; otherwise it inserts first, which is one round trip when there is no
        marker, as between bursts, where a read would need an insert after it."""
        return await self._mark(
            mailbox, stream, ttl_seconds, now, remember=True, insert_first=not expect_live
        )

    async def _mark(
        self,
        mailbox: str,
        stream: str,
        ttl: int,
        now: datetime | None,
        *,
        remember: bool,
        insert_first: bool = False,
    ) -> Marked:
        now = now or utcnow()
        pk = encode_key(mailbox)
        fresh = {"PartitionKey": pk, "RowKey": stream, "marked_at": now, "mailbox": mailbox}
        lost_flag = False
        if insert_first and await self._t.create(fresh):
            return Marked.QUEUE
        for _ in range(3):
            row = await self._t.get(pk, stream)
            if row is None and lost_flag:
                return Marked.COALESCED  # taken while we flagged it: the run's read covers us
            marked = _dt(row.get("marked_at")) if row is not None else None
            state = marker_state(exists=row is not None, marked_at=marked, now=now, ttl_seconds=ttl)
            flagged = bool(row.get("remembered")) if row is not None else False
            outcome = marked_outcome(state, flagged=flagged, remember=remember)
            if row is None:
                if await self._t.create(fresh):
                    return Marked.QUEUE
                continue  # another instance created it between our read and insert: re-read
            if outcome is None:
                # Live and not yet flagged: flag it as it is.  If the run took it meanwhile the
                # write fails, and the run's read covers this notification (the marker was live
                # when we read it): coalesced, but not remembered.
                flag = {**row, "remembered": True}
                if await self._t.replace_if(flag, row["etag"]):
                    return Marked.REMEMBERED
                lost_flag = True
                continue
            if outcome is not Marked.QUEUE:
                return outcome
            # Stale marker: its job was lost (crash between mark and enqueue, or poisoned).
            if await self._t.replace_if(fresh, row["etag"]):
                return Marked.QUEUE
        return Marked.COALESCED

    async def take(self, mailbox: str, stream: str) -> TakenMarker | None:
        """Remove the marker before a read; None if there was none.  Conditional on the row
        read, so a ``remembered`` flag written meanwhile is never lost with the row."""
        pk = encode_key(mailbox)
        for _ in range(CAS_ATTEMPTS):
            row = await self._t.get(pk, stream)
            if row is None:
                return None
            # (A row deleted by someone else since our read counts as taken: the SDK ignores
            # the 404, and following up on it is harmless.)
            try:
                await self._t.client.delete_entity(
                    pk, stream, etag=row["etag"], match_condition=MatchConditions.IfNotModified
                )
            except ResourceModifiedError:
                continue  # flagged or refreshed since we read it: read it again
            return TakenMarker(remembered=bool(row.get("remembered")))
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
        return await self._t.replace_if(fresh, marker.etag)


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

    async def put(self, link: Link) -> None:
        await self.put_many([link])

    async def put_many(self, links: list[Link], removed: list[Link] | None = None) -> None:
        """Write and delete links of one (mailbox, stream) in as few transactions as allowed."""
        by_pk: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for link in links:
            for row in self._rows(link):
                by_pk.setdefault(row["PartitionKey"], []).append(("upsert", row))
        for link in removed or []:
            pk = _link_pk(link.mailbox, link.stream)
            for rk in (_o_key(link.outlook_id), _w_key(link.workbooks_type, link.workbooks_id)):
                by_pk.setdefault(pk, []).append(("delete", {"PartitionKey": pk, "RowKey": rk}))
        for ops in by_pk.values():
            # A batch may touch each row only once; keep the last operation per row.
            last: dict[str, tuple[str, Mapping[str, Any]]] = {}
            for verb, entity in ops:
                last[str(entity["RowKey"])] = (verb, entity)
            # Deletes of rows that do not exist fail a whole transaction; do them one by one.
            upserts = [op for op in last.values() if op[0] == "upsert"]
            deletes = [op for op in last.values() if op[0] == "delete"]
            if upserts:
                await self._t.transact(upserts)
            for _, entity in deletes:
                await self._t.delete(str(entity["PartitionKey"]), str(entity["RowKey"]))

    async def delete(self, link: Link) -> None:
        await self.put_many([], removed=[link])

    async def list(self, mailbox: str, stream: str) -> AsyncIterator[Link]:
        flt = "PartitionKey eq @pk and RowKey ge 'o:' and RowKey lt 'o;'"
        async for row in self._t.query(flt, {"pk": _link_pk(mailbox, stream)}):
            link = self._load(row)
            if link:
                yield link

    async def count(self, mailbox: str, stream: str) -> int:
        return len([1 async for _ in self.list(mailbox, stream)])


# ----------------------------------------------------------------------------------- identity

_REMOVAL, _ISSUE = "x:r:", "x:i:"


def _removal_key(workbooks_type: str, workbooks_id: int) -> str:
    return _REMOVAL + encode_key(f"{workbooks_type}:{workbooks_id}")


def _issue_key(outlook_id: str) -> str:
    return _ISSUE + encode_key(outlook_id)


class IdentityStore:
    """What a (mailbox, stream) remembers beyond its links: records the user removed from
    Outlook (so no run puts them back) and shared items left unlinked as ambiguous or
    duplicate (for status and ``items``).  Rows in the links' partition (see the layout)."""

    def __init__(self, table: _Table) -> None:
        self._t = table

    async def _rows(self, mailbox: str, stream: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
        flt = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        hi = prefix[:-1] + ";"  # ';' sorts right after ':'
        params = {"pk": _link_pk(mailbox, stream), "lo": prefix, "hi": hi}
        async for row in self._t.query(flt, params):
            yield row

    async def removals(self, mailbox: str, stream: str) -> list[Removal]:
        return [
            Removal.model_validate(unpack_json("data", r))
            async for r in self._rows(mailbox, stream, _REMOVAL)
        ]

    async def issues(self, mailbox: str, stream: str) -> list[IdentityIssue]:
        return [
            IdentityIssue.model_validate(unpack_json("data", r))
            async for r in self._rows(mailbox, stream, _ISSUE)
        ]

    async def counts(self, mailbox: str, stream: str) -> dict[str, int]:
        """{"ambiguous", "duplicate", "removed"} for status, without unpacking the rows."""
        out = {"ambiguous": 0, "duplicate": 0, "removed": 0}
        async for row in self._rows(mailbox, stream, "x:"):
            kind = str(row.get("kind") or "")
            if kind in out:
                out[kind] += 1
        return out

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


class EmailStore:
    def __init__(self, table: _Table) -> None:
        self._t = table

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

    async def put(self, record: EmailRecord) -> None:
        row: dict[str, Any] = {
            "PartitionKey": encode_key(record.mailbox),
            "RowKey": encode_key(record.message_key),
            "internet_message_id": record.internet_message_id,
            "state": record.state,
        }
        row.update(pack_json("data", record.model_dump(mode="json")))
        await self._t.upsert(row)

    async def list(self, mailbox: str) -> AsyncIterator[EmailRecord]:
        async for row in self._t.partition(encode_key(mailbox)):
            yield EmailRecord.model_validate(unpack_json("data", row))


# ------------------------------------------------------------------------------ pending index


class PendingIndex:
    """Unmatched recipients of shared messages, keyed by address for retroactive linking."""

    def __init__(self, table: _Table) -> None:
        self._t = table

    @staticmethod
    def _keys(item: PendingAddress) -> tuple[str, str]:
        """(PartitionKey, RowKey): the address, then which message of which mailbox."""
        row_key = f"{encode_key(item.mailbox)}|{encode_key(item.message_key)}"
        return address_key(item.address), row_key

    async def add_many(self, items: list[PendingAddress]) -> None:
        by_pk: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for item in items:
            pk, rk = self._keys(item)
            row: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk, "data": item.model_dump_json()}
            by_pk.setdefault(pk, []).append(("upsert", row))
        for ops in by_pk.values():
            await self._t.transact(ops)

    async def for_address(self, address: str) -> list[PendingAddress]:
        return [
            PendingAddress.model_validate_json(r["data"])
            async for r in self._t.partition(address_key(address))
        ]

    async def remove(self, item: PendingAddress) -> None:
        await self._t.delete(*self._keys(item))

    async def count(self) -> int:
        return len([1 async for _ in self._t.query("", None)])


# ---------------------------------------------------------------------------------- run log


def _inverted(ts: datetime) -> str:
    # Newest first: RowKeys sort ascending, so store (max - time).
    return f"{(9_999_999_999_999 - int(ts.timestamp() * 1000)):013d}"


class RunLog:
    def __init__(self, table: _Table) -> None:
        self._t = table

    async def put(self, run: RunRecord) -> None:
        row: dict[str, Any] = {
            "PartitionKey": encode_key(run.mailbox),
            "RowKey": f"{_inverted(run.started_at)}|{encode_key(run.job_id)}|{run.stream}",
            "status": run.status,
            "stream": run.stream,
        }
        row.update(pack_json("data", run.model_dump(mode="json")))
        await self._t.upsert(row)

    async def recent(self, mailbox: str, limit: int = 20) -> list[RunRecord]:
        out: list[RunRecord] = []
        async for row in self._t.partition(encode_key(mailbox)):
            out.append(RunRecord.model_validate(unpack_json("data", row)))
            if len(out) >= limit:
                break
        return out


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

    def __init__(self, service: TableServiceClient, prefix: str) -> None:
        self.service = service
        self.prefix = prefix
        t = {name: _Table(service.get_table_client(f"{prefix}{name}")) for name in TABLES}
        self.mailboxes = MailboxRegistry(t["mailboxes"])
        self.doctor = DoctorResults(t["mailboxes"])
        self.subscriptions = SubscriptionStore(t["subscriptions"])
        self.workbooks_hooks = WorkbooksHookStore(t["subscriptions"])
        self.cursors = CursorStore(t["cursors"])
        self.dirty = DirtyMarkers(t["dirty"])
        self.links = LinkStore(t["links"])
        self.identity = IdentityStore(t["links"])
        self.emails = EmailStore(t["emails"])
        self.pending = PendingIndex(t["pending"])
        self.runs = RunLog(t["runs"])
        self.jobs = JobStatusStore(t["jobs"])
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

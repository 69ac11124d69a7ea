"""Webhook subscriptions (``admin/triggers/webhook_subscriptions``, workbooks-api.md §4.11) and
the created-since reads that stand in for them where a key may not manage triggers.

A subscription is a record like any other: read with filters, created and deleted with the batch
writer.  The create reply is the only place its ``secret_key`` ever appears.  A key that may not
manage triggers gets 404 ("not found, or access denied", §1.7): ``TriggersDenied``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sync.core.errors import InvalidRequest, NotFound, SyncError
from sync.core.workbooks_hooks import Existing

from . import errors, schema
from .client import WorkbooksClient
from .reads import Record, iter_records
from .wire import Cond, format_criterion
from .writes import WriteOp, write_batch

WEBHOOKS = "admin/triggers/webhook_subscriptions"
SUBSCRIPTION_NAME = "Outlook Sync: retroactive email links"
_COLUMNS = ("trigger_id", "callback_url", "enabled", "lock_version")
# Where each address source's records live (the ``source`` of ``sync.core.workbooks_hooks``).
SOURCE_ENDPOINTS = {
    "people": schema.PEOPLE.endpoint,
    "leads": schema.SALES_LEADS.endpoint,
    "contact_details": schema.CONTACT_DETAILS.endpoint,
}


class TriggersDenied(SyncError):
    """This key may not manage webhook subscriptions (or the tenant has none)."""


@dataclass(frozen=True)
class Created:
    subscription_id: int
    secret_key: str  # never logged, never stored in the clear


async def list_subscriptions(client: WorkbooksClient) -> list[Existing]:
    """Every webhook subscription the key can see (ours are told apart by callback URL)."""
    try:
        rows = [r async for r in iter_records(client, WEBHOOKS, _COLUMNS)]
    except NotFound as exc:
        raise TriggersDenied(
            f"the API key may not manage triggers ({exc})", source=errors.SOURCE
        ) from None
    return [
        Existing(
            int(r["id"]),
            int(r.get("trigger_id") or 0),
            str(r.get("callback_url") or ""),
            r.get("enabled") in (True, 1, "1", "true"),
            int(r.get("lock_version") or 0),
        )
        for r in rows
        if r.get("id") is not None
    ]


async def create_subscription(
    client: WorkbooksClient, trigger_id: int, callback_url: str, description: str
) -> Created:
    """One enabled subscription; raises the write's error (``InvalidRequest`` for a trigger
    the tenant does not have)."""
    op = WriteOp.create(
        {
            "name": SUBSCRIPTION_NAME,
            "description": description,
            "callback_url": callback_url,
            "enabled": True,
            "trigger_id": trigger_id,
        }
    )
    (result,) = await write_batch(client, WEBHOOKS, [op])
    if isinstance(result.error, NotFound):
        raise TriggersDenied(
            f"the API key may not manage triggers (creating one: {result.error})",
            source=errors.SOURCE,
        )
    secret = result.values.get("secret_key")
    if not result.ok or result.id is None:
        raise result.error or InvalidRequest(f"webhook subscription refused: {result.errors}")
    if not isinstance(secret, str) or not secret:
        # Without its secret no delivery could be verified: remove it again.
        await delete_subscriptions(client, [(result.id, result.lock_version or 0)])
        raise InvalidRequest("the webhook subscription was created without a secret_key")
    return Created(result.id, secret)


async def delete_subscriptions(
    client: WorkbooksClient, subscriptions: Sequence[tuple[int, int]]
) -> list[SyncError | None]:
    """Delete (id, lock_version) pairs; a subscription already gone counts as deleted."""
    if not subscriptions:
        return []
    ops = [WriteOp.delete(i, lock) for i, lock in subscriptions]
    results = await write_batch(client, WEBHOOKS, ops)
    return [None if r.ok or isinstance(r.error, NotFound) else r.error for r in results]


async def created_since(
    client: WorkbooksClient, source: str, columns: Iterable[str], since: datetime
) -> AsyncIterator[Record]:
    """Records of an address source created at or after ``since`` (server time), oldest
    first, with their ``created_at``: one cheap read per poll, whatever the mailboxes."""
    endpoint = SOURCE_ENDPOINTS[source]
    wanted = [*columns, "created_at"]
    where = Cond("created_at", "ge", format_criterion(since))
    async for row in iter_records(
        client, endpoint, wanted, where, sort=(("created_at", "ASC"), ("id", "ASC"))
    ):
        yield row

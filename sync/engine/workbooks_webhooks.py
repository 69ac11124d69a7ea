"""Workbooks webhooks and the created-since poll: what makes retroactive linking take seconds
(rule 7 of docs/email-linking.md).  Decisions are in ``sync.core.workbooks_hooks``; the API
calls in ``sync.workbooks.triggers``; this module carries them out.

* **Upkeep** (``keep_up``): at onboarding (a mailbox added or enabled) and in every renewal
  sweep, the tenant of the mailbox (its Workbooks database; mailboxes of one tenant share its
  subscriptions) gets one subscription per new-record trigger, where the key may manage
  triggers.  Each subscription calls its own URL with a random token; the token's row (stored
  before anything else, right after Workbooks answers) holds the secret sealed under that
  token.  A tenant is checked against Workbooks at most once an hour, under a short lease so
  two mailboxes never create subscriptions at once; what is not right is deleted and made
  again.  ``release`` deletes them when the tenant's last enabled mailbox goes.
* **Deliveries** (``verify``, ``take``): a delivery is verified against the token's secret and
  only read for the addresses it announces.  Mailboxes with pending entries for those
  addresses (point reads by address) get a PEOPLE job through the stream marker, exactly as a
  Graph notification gets its stream's job: a burst queues one job per mailbox.
* **Poll** (``poll``): for every tenant, one created-since read per address source that no
  webhook covers (all of them where the key may not manage triggers), fanned out the same way.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from sync.concurrency import gather_bounded
from sync.core.checks import Check
from sync.core.doctor import NO_TRIGGER, workbooks_webhooks_check
from sync.core.errors import InvalidRequest, SyncError
from sync.core.jobs import Stream
from sync.core.keys import normalise_address
from sync.core.state_models import Mailbox, utcnow
from sync.core.workbooks_hooks import (
    SOURCES,
    Delivery,
    HookSubscription,
    HookTenant,
    HookToken,
    Known,
    Trigger,
    callback_url,
    new_token,
    plan_upkeep,
    plausible_token,
    polled,
    seal,
    signature_ok,
    tenant_key,
    token_hash,
    unseal,
    verify_due,
    wanted_triggers,
)
from sync.engine.clients import identity_fingerprint, workbooks_client
from sync.runtime import Services
from sync.webhook import queue_stream

if TYPE_CHECKING:
    from sync.state.store import StateStore
    from sync.workbooks.client import WorkbooksClient

log = logging.getLogger("sync.engine.workbooks_webhooks")

VERIFY_EVERY = timedelta(hours=1)  # a tenant's subscriptions are checked at most this often
UPKEEP_LEASE = timedelta(minutes=2)
POLL_START = timedelta(minutes=15)  # how far back a tenant's first poll looks
POLL_OVERLAP = timedelta(seconds=60)  # re-read: a record committed late with an earlier stamp
MAX_ADDRESSES = 200  # addresses of one delivery or poll looked up; beyond, every mailbox
LOOKUPS = 16  # pending-index reads in flight
TOKEN_MEMORY_SECONDS = 300.0
MISS_MEMORY_SECONDS = 10.0
HOOK_DESCRIPTION = "New records: earlier sent emails to their addresses are linked"
T = TypeVar("T")


# ===================================================================== tenants


async def tenant_of(services: Services, mailbox: Mailbox) -> tuple[str, WorkbooksClient]:
    """The mailbox's tenant key (its Workbooks database) and its client (logged in)."""
    client = await workbooks_client(services, mailbox)
    login = await client.ensure_login()
    fingerprint = identity_fingerprint(
        mailbox.workbooks_url, client.identity.api_key.get_secret_value()
    )
    return tenant_key(mailbox.workbooks_url, login.database_instance_id, fingerprint), client


# ===================================================================== upkeep


@dataclass
class Upkeep:
    """What one upkeep did, for the renewal run and the CLI."""

    tenant: str = ""
    created: int = 0
    deleted: int = 0
    webhooks: tuple[str, ...] = ()  # sources covered by a webhook
    polled: dict[str, str] = field(default_factory=dict)  # source -> why it is polled
    skipped: str = ""  # why nothing was checked this time

    def describe(self) -> str:
        hooks = ", ".join(self.webhooks) or "none"
        by_reason: dict[str, list[str]] = {}
        for source, why in self.polled.items():
            by_reason.setdefault(why, []).append(source)
        poll = "; ".join(f"{', '.join(s)} ({why})" for why, s in by_reason.items()) or "none"
        return f"Workbooks webhooks: {hooks}; polled: {poll}"


def _wanted(services: Services) -> tuple[tuple[Trigger, ...], str]:
    """The triggers to subscribe to, or none and why."""
    if not services.settings.workbooks.webhooks:
        return (), "webhooks are turned off (WORKBOOKS_WEBHOOKS=false)"
    if not services.settings.app.public_base_url:
        return (), "SYNC_PUBLIC_BASE_URL is not set"
    return wanted_triggers(services.settings.workbooks.contact_details_trigger_id), ""


Change = Callable[[HookTenant | None], HookTenant | None]


def _claim(owner: str, now: datetime, url: str, tenant: str) -> Change:
    def change(row: HookTenant | None) -> HookTenant | None:
        row = row or HookTenant(tenant=tenant, workbooks_url=url)
        if row.upkeep_owner and row.upkeep_until is not None and row.upkeep_until > now:
            return None  # another mailbox's upkeep is at it
        return row.model_copy(update={"upkeep_owner": owner, "upkeep_until": now + UPKEEP_LEASE})

    return change


async def keep_up(services: Services, mailbox: Mailbox, *, force: bool = False) -> Upkeep:
    """Bring the webhook subscriptions of the mailbox's tenant in line (or release them when
    the mailbox is disabled).  Checked against Workbooks at most every ``VERIFY_EVERY``."""
    if not mailbox.enabled:
        return await release(services, mailbox.id)
    store = services.store.workbooks_hooks
    tenant, client = await tenant_of(services, mailbox)
    wanted, why_not = _wanted(services)
    now = utcnow()
    row = await store.tenant(tenant)
    if row is not None and not force and not verify_due(row.verified_at, now, VERIFY_EVERY):
        return _report(row, skipped="checked recently")
    owner = uuid.uuid4().hex
    claimed = await store.update_tenant(tenant, _claim(owner, now, mailbox.workbooks_url, tenant))
    if claimed is None or claimed.upkeep_owner != owner:
        return _report(claimed, skipped="another mailbox of the tenant is checking it")
    out = Upkeep(tenant=tenant)
    subscriptions: list[HookSubscription] = []
    polled_why: dict[str, str] = {}
    allowed: bool | None = claimed.allowed
    try:
        if wanted:
            allowed, subscriptions, polled_why = await _subscribe(
                services, client, claimed, wanted, out
            )
        else:
            await _unsubscribe(services, client, claimed, out)
            polled_why = {s: why_not for s in SOURCES}
    except BaseException:
        await store.update_tenant(tenant, _unclaim(owner))
        raise
    covered = {s.source for s in subscriptions}
    for source in SOURCES:
        if source not in covered:
            polled_why.setdefault(source, NO_TRIGGER)

    def done(current: HookTenant | None) -> HookTenant:
        base = current or claimed
        return base.model_copy(
            update={
                "allowed": allowed,
                "reason": "; ".join(sorted(set(polled_why.values()))),
                "subscriptions": subscriptions,
                "polled_sources": polled_why,
                "verified_at": utcnow(),
                "upkeep_owner": "",
                "upkeep_until": None,
            }
        )

    saved = await store.update_tenant(tenant, done)
    return _report(saved, into=out)


async def doctor_check(services: Services, mailbox: Mailbox) -> Check:
    """``doctor``'s ``workbooks.webhooks``: the tenant's stored webhook state against the
    subscriptions Workbooks lists now.  Reads only: it creates, mends and deletes nothing."""
    from sync.workbooks.triggers import TriggersDenied, list_subscriptions

    wanted, why_not = _wanted(services)
    if not wanted:
        off = not services.settings.workbooks.webhooks
        return workbooks_webhooks_check(why_not, None, None, turned_off=off)
    tenant, client = await tenant_of(services, mailbox)
    stored = await services.store.workbooks_hooks.tenant(tenant)
    try:
        live = await list_subscriptions(client)
    except TriggersDenied as exc:
        return workbooks_webhooks_check("", stored, None, denied=str(exc))
    except SyncError as exc:
        return workbooks_webhooks_check("", stored, None, unread=str(exc))
    return workbooks_webhooks_check("", stored, live)


def _unclaim(owner: str) -> Change:
    def change(row: HookTenant | None) -> HookTenant | None:
        if row is None or row.upkeep_owner != owner:
            return None
        return row.model_copy(update={"upkeep_owner": "", "upkeep_until": None})

    return change


def _report(row: HookTenant | None, *, skipped: str = "", into: Upkeep | None = None) -> Upkeep:
    out = into or Upkeep()
    if row is not None:
        out.tenant = row.tenant
        out.webhooks = tuple(sorted(row.webhook_sources()))
        out.polled = {s: row.polled_sources.get(s, "not checked yet") for s in polled(row)}
    out.skipped = skipped
    return out


async def _subscribe(
    services: Services,
    client: WorkbooksClient,
    row: HookTenant,
    wanted: tuple[Trigger, ...],
    out: Upkeep,
) -> tuple[bool | None, list[HookSubscription], dict[str, str]]:
    """(allowed, subscriptions, sources left to polling) after creating what is missing and
    deleting what is not right."""
    from sync.workbooks.triggers import (
        TriggersDenied,
        create_subscription,
        delete_subscriptions,
        list_subscriptions,
    )

    base = services.settings.app.public_base_url or ""
    store = services.store.workbooks_hooks
    try:
        existing = await list_subscriptions(client)
    except TriggersDenied as exc:
        why = str(exc)
        log.info("workbooks webhooks not available for %s: %s", row.workbooks_url, exc)
        return False, [], {s: why for s in SOURCES}
    known = [Known(s.trigger_id, s.subscription_id, s.token_hash) for s in row.subscriptions]
    plan = plan_upkeep(wanted, known, existing, base)
    kept = [
        s for s in row.subscriptions if s.subscription_id in {k.subscription_id for k in plan.keep}
    ]
    failures = await delete_subscriptions(
        client, [(e.subscription_id, e.lock_version) for e in plan.delete]
    )
    out.deleted += sum(f is None for f in failures)
    kept_ids = {s.subscription_id for s in kept}
    for sub in row.subscriptions:
        if sub.subscription_id not in kept_ids:  # deleted now, or gone at Workbooks already
            await store.delete_token(sub.token_hash)
    polled_why: dict[str, str] = {}
    for trigger in plan.create:
        token = new_token()
        hashed = token_hash(token)
        try:
            made = await create_subscription(
                client, trigger.trigger_id, callback_url(base, token), HOOK_DESCRIPTION
            )
        except TriggersDenied as exc:
            why = str(exc)
            return False, kept, {s: why for s in SOURCES if s not in {k.source for k in kept}}
        except InvalidRequest as exc:
            polled_why[trigger.source] = f"trigger {trigger.trigger_id} refused: {exc}"
            continue
        now = utcnow()
        # The token row first: a delivery may arrive before this upkeep has finished.
        await store.put_token(
            HookToken(
                token_hash=hashed,
                tenant=row.tenant,
                workbooks_url=row.workbooks_url,
                trigger_id=trigger.trigger_id,
                subscription_id=made.subscription_id,
                sealed_secret=seal(made.secret_key, token, hashed),
                created_at=now,
            )
        )
        kept.append(
            HookSubscription(
                trigger_id=trigger.trigger_id,
                source=trigger.source,
                subscription_id=made.subscription_id,
                token_hash=hashed,
                created_at=now,
            )
        )
        out.created += 1
    return True, kept, polled_why


async def _unsubscribe(
    services: Services, client: WorkbooksClient, row: HookTenant, out: Upkeep
) -> None:
    """Webhooks are off: delete the subscriptions this tenant still has (best effort)."""
    from sync.workbooks.triggers import TriggersDenied, delete_subscriptions, list_subscriptions

    if not row.subscriptions:
        return
    mine = {s.subscription_id for s in row.subscriptions}
    try:
        listed = {e.subscription_id: e for e in await list_subscriptions(client)}
    except TriggersDenied:
        listed = {}
    pairs = [(i, listed[i].lock_version) for i in sorted(mine) if i in listed]
    out.deleted += sum(f is None for f in await delete_subscriptions(client, pairs))
    for sub in row.subscriptions:
        await services.store.workbooks_hooks.delete_token(sub.token_hash)


async def release(services: Services, mailbox_id: str) -> Upkeep:
    """The mailbox stops syncing: when no other enabled mailbox shares its tenant, the
    tenant's subscriptions are deleted at Workbooks (best effort) and forgotten."""
    mailbox = await services.store.mailboxes.get(mailbox_id)
    if mailbox is None:
        return Upkeep(skipped="mailbox not registered")
    tenant, client = await tenant_of(services, mailbox)
    row = await services.store.workbooks_hooks.tenant(tenant)
    if row is None:
        return Upkeep(tenant=tenant, skipped="no webhooks")
    for other in await services.store.mailboxes.list(enabled_only=True):
        same_service = other.id != mailbox.id and other.workbooks_url == mailbox.workbooks_url
        if same_service and (await tenant_of(services, other))[0] == tenant:
            return _report(row, skipped=f"still used by {other.id}")
    out = Upkeep(tenant=tenant)
    await _unsubscribe(services, client, row, out)
    await services.store.workbooks_hooks.delete_tenant(tenant)
    return out


# ===================================================================== deliveries


_TOKENS: weakref.WeakKeyDictionary[StateStore, dict[str, tuple[float, HookToken | None]]] = (
    weakref.WeakKeyDictionary()
)


async def _token(services: Services, hashed: str) -> HookToken | None:
    """The token's row, remembered for a while (misses briefly) per store."""
    memory = _TOKENS.setdefault(services.store, {})
    now = time.monotonic()
    hit = memory.get(hashed)
    if hit is not None:
        ttl = TOKEN_MEMORY_SECONDS if hit[1] is not None else MISS_MEMORY_SECONDS
        if now - hit[0] < ttl:
            return hit[1]
    record = await services.store.workbooks_hooks.token(hashed)
    if len(memory) > 10_000:
        memory.clear()
    memory[hashed] = (now, record)
    return record


async def verify(
    services: Services, token: str, signature: str | None, body: bytes
) -> HookToken | None:
    """The subscription a delivery belongs to, when its token is ours and its signature is the
    HMAC-SHA256 of exactly these bytes with that subscription's secret; else None."""
    if not plausible_token(token):
        return None
    hashed = token_hash(token)
    record = await _token(services, hashed)
    if record is None:
        return None
    secret = unseal(record.sealed_secret, token, hashed)
    if secret is None or not signature_ok(secret, body, signature):
        return None
    return record


@dataclass
class Hinted:
    """What a delivery or a poll set off."""

    addresses: int = 0
    mailboxes: list[str] = field(default_factory=list)
    queued: int = 0
    coalesced: int = 0


async def affected(
    services: Services, workbooks_url: str, addresses: Iterable[str], *, everyone: bool = False
) -> list[str]:
    """Enabled mailboxes of this Workbooks service with pending entries for ``addresses``, or
    every one of them when ``everyone``.  Pending entries live in each mailbox's own partition
    (so a mailbox's own lookups are point reads), so this asks each mailbox of the service:
    one short range read per mailbox and address, a bounded number at a time."""
    wanted = sorted({normalise_address(a) for a in addresses if a})
    url = workbooks_url.rstrip("/")
    mailboxes = [
        m.id
        for m in await services.store.mailboxes.list(enabled_only=True)
        if m.workbooks_url.rstrip("/") == url
    ]
    if everyone or len(wanted) > MAX_ADDRESSES:
        return sorted(mailboxes)
    pending = services.store.pending
    found = await gather_bounded(
        (pending.for_address(m, a) for m in mailboxes for a in wanted), LOOKUPS
    )
    return sorted({p.mailbox for entries in found for p in entries})


async def hint_people(services: Services, mailbox: str, reason: str) -> bool:
    """Queue the mailbox's PEOPLE job through its stream marker, as for Graph notifications
    (``sync.webhook.queue_stream``): True when a job was queued, False when one was already
    pending."""
    return await queue_stream(services, mailbox, Stream.PEOPLE, reason)


async def _hint_all(services: Services, mailboxes: Iterable[str], reason: str, out: Hinted) -> None:
    for mailbox in mailboxes:
        out.mailboxes.append(mailbox)
        if await hint_people(services, mailbox, reason):
            out.queued += 1
        else:
            out.coalesced += 1


async def take(services: Services, token: HookToken, delivery: Delivery) -> Hinted:
    """Act on a verified delivery: a hint for the mailboxes waiting on its addresses."""
    out = Hinted(addresses=len(delivery.addresses))
    mailboxes = await affected(
        services, token.workbooks_url, delivery.addresses, everyone=delivery.unreadable > 0
    )
    await _hint_all(services, mailboxes, "workbooks webhook", out)
    return out


# ===================================================================== poll


@dataclass
class Polled:
    tenants: int = 0
    reads: int = 0  # created-since reads (one per polled source and tenant)
    skipped: list[str] = field(default_factory=list)  # mailboxes whose tenant is unknown
    hinted: Hinted = field(default_factory=Hinted)


async def poll(services: Services) -> Polled:
    """One created-since read per tenant and address source no webhook covers; the mailboxes
    with pending entries for the new addresses get a PEOPLE job.  Never a read per mailbox."""
    out = Polled()
    groups: dict[str, tuple[Mailbox, WorkbooksClient]] = {}
    for mailbox in await services.store.mailboxes.list(enabled_only=True):
        try:
            tenant, client = await tenant_of(services, mailbox)
        except Exception as exc:  # one mailbox's key must not stop the others' poll
            log.info("retro poll: %s skipped: %s", mailbox.id, type(exc).__name__)
            out.skipped.append(mailbox.id)
            continue
        groups.setdefault(tenant, (mailbox, client))
    for tenant, (mailbox, client) in groups.items():
        out.tenants += 1
        await _poll_tenant(services, tenant, mailbox, client, out)
    return out


async def _poll_tenant(
    services: Services, tenant: str, mailbox: Mailbox, client: WorkbooksClient, out: Polled
) -> None:
    from sync.workbooks.emails import address_sources
    from sync.workbooks.triggers import SOURCE_ENDPOINTS, created_since
    from sync.workbooks.wire import parse_datetime

    store = services.store.workbooks_hooks
    row = await store.tenant(tenant)
    sources = polled(row)
    if not sources:
        return
    columns = await address_sources(client)
    marks = dict(row.poll_marks) if row else {}
    now = utcnow()
    addresses: set[str] = set()
    for source in sources:
        wanted = columns.get(SOURCE_ENDPOINTS[source])
        if not wanted:
            continue  # the tenant's schema has no such records
        mark = marks.get(source)
        since = (mark - POLL_OVERLAP) if mark is not None else now - POLL_START
        out.reads += 1
        async for record in created_since(client, source, wanted, since):
            addresses |= {normalise_address(str(record[c])) for c in wanted if record.get(c)}
            stamp = parse_datetime(record.get("created_at"))
            if stamp is not None and (mark is None or stamp > mark):
                mark = stamp
        if mark is not None:
            marks[source] = mark
    mailboxes = await affected(services, mailbox.workbooks_url, addresses)
    out.hinted.addresses += len(addresses)
    await _hint_all(services, mailboxes, "workbooks poll", out.hinted)

    def save(current: HookTenant | None) -> HookTenant:
        base = current or HookTenant(tenant=tenant, workbooks_url=mailbox.workbooks_url)
        merged = {**base.poll_marks}
        for source, stamp in marks.items():
            if source not in merged or stamp > merged[source]:
                merged[source] = stamp
        return base.model_copy(update={"poll_marks": merged, "polled_at": utcnow()})

    await store.update_tenant(tenant, save)


def failure_note(mailbox: str, exc: BaseException) -> str:
    """How a failed upkeep shows in a subscription outcome (never a secret)."""
    what = exc if isinstance(exc, SyncError) else type(exc).__name__
    return f"WorkbooksWebhooks:{mailbox}:{what}"[:300]

"""The PEOPLE stream: Workbooks changes to People, Sales Leads and Contact Details, used here
for retroactive email linking (issue #5 rule 6).

A reconcile run reads every record changed since the stored watermarks (one per endpoint, kept
as JSON in the PEOPLE cursor's ``watermark``), collects the email addresses on them, looks those
up in the pending-address index (this mailbox's entries only), resolves the ones with pending
entries through the same address resolution as the SENT stream, and links the earlier shared
emails, once.  Pending entries are removed only after the link and the record are durable; the
watermark advances only after that.  A first run starts ``retro_lookback_days`` back: an address
that already existed before a message was processed would have matched then.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sync.core.email_linking import RetroAction, note_unlinked, plan_retro, retro_explanation
from sync.core.errors import ResyncRequired
from sync.core.graph_models import Message
from sync.core.jobs import JobKind, Stream
from sync.core.keys import normalise_address
from sync.core.mapping.scope import is_deleted
from sync.core.state_models import Cursor, EmailRecord, PendingAddress, utcnow
from sync.engine.clients import graph_client, workbooks_client
from sync.engine.emails import EmailWork, Intents, ensure_linked
from sync.engine.registry import RunContext, register
from sync.graph.messages import read_message
from sync.workbooks.emails import address_sources, resolve_matches, schema_notes
from sync.workbooks.reads import Watermark, changed_since
from sync.workbooks.wire import Cond, Filter, any_of, chunked, in_list

if TYPE_CHECKING:
    from sync.workbooks.client import WorkbooksClient

FLUSH_ADDRESSES = 200
WATERMARK_VERSION = 1
ADDRESSES_PER_LIST = 100  # addresses per IN-list of the changed-records filter
# More distinct pending addresses than this and the read is not filtered by them (one filter
# that large is no longer a sensible request); each change of the tenant is read instead.
MAX_FILTER_ADDRESSES = 2000


def _load_marks(
    text: str | None, endpoints: Iterable[str], start: Watermark
) -> dict[str, Watermark]:
    stored: dict[str, str] = {}
    if text:
        try:
            data = json.loads(text)
            if data.get("v") != WATERMARK_VERSION:
                raise ValueError("unknown version")
            stored = dict(data.get("marks", {}))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ResyncRequired(f"PEOPLE watermark unusable: {exc}") from None
    return {e: Watermark.from_json(stored[e]) if e in stored else start for e in endpoints}


def _dump_marks(marks: Mapping[str, Watermark]) -> str:
    return json.dumps({"v": WATERMARK_VERSION, "marks": {e: m.to_json() for e, m in marks.items()}})


async def _save(ctx: RunContext, marks: Mapping[str, Watermark]) -> None:
    text = _dump_marks(marks)

    def change(c: Cursor) -> Cursor:
        return c.model_copy(update={"watermark": text, "resync_requested": False})

    await ctx.save_cursor(Stream.PEOPLE, change)


@register(Stream.PEOPLE)
async def process_people(ctx: RunContext) -> None:
    """Read the Workbooks changes that concern this mailbox's pending addresses since the
    watermarks, and link earlier shared emails.

    Only records holding one of the mailbox's pending addresses are read (an IN-list filter on
    the address columns), so what a run reads follows what waits in this mailbox, not every
    change of the tenant; a mailbox with nothing pending reads nothing.  An address that
    becomes pending later belongs to a record that already had it (matched when the message
    was processed) or gets it later (a change after the watermark), so nothing is missed."""
    client = await workbooks_client(ctx.services, ctx.mailbox)
    cursor = await _cursor(ctx)
    sources = await address_sources(client)
    start = Watermark(
        utcnow().replace(microsecond=0) - timedelta(days=ctx.mailbox.policy.retro_lookback_days)
    )
    text = None if cursor.resync_requested else cursor.watermark
    marks = _load_marks(text, sources, start)
    waiting = _by_address(await ctx.services.store.pending.for_mailbox(ctx.mailbox.id))
    ctx.count("pending_addresses_read", len(waiting))
    if not waiting:
        if text is None:
            await _save(ctx, marks)  # where the first read will start
        ctx.messages.extend(await schema_notes(client))
        return
    scoped = len(waiting) <= MAX_FILTER_ADDRESSES
    if not scoped:
        ctx.count("people_reads_unscoped")
    for endpoint, columns in sources.items():
        if not waiting:
            # Everything pending is settled: the other endpoints keep their watermarks (an
            # empty address filter would read every change of the tenant instead).
            break
        scope = address_filter(columns, sorted(waiting)) if scoped else None
        addresses: set[str] = set()
        rows = changed_since(client, endpoint, marks[endpoint], list(columns), scope)
        async for row, mark in rows:
            ctx.count("workbooks_changes")
            if not is_deleted(row):
                found = {normalise_address(str(row[c])) for c in columns if row.get(c)}
                addresses |= found & waiting.keys()
            marks[endpoint] = mark
            if len(addresses) >= FLUSH_ADDRESSES:
                await _link_waiting(ctx, client, addresses, waiting)
                addresses = set()
                await _save(ctx, marks)
        await _link_waiting(ctx, client, addresses, waiting)
        await _save(ctx, marks)
    for note in await schema_notes(client):
        ctx.messages.append(note)


async def _cursor(ctx: RunContext) -> Cursor:
    store = ctx.services.store.cursors
    if ctx.lease is not None and ctx.lease.stream == Stream.PEOPLE:
        return await store.for_run(ctx.lease)
    return await store.get(ctx.mailbox.id, Stream.PEOPLE)


def _by_address(entries: Iterable[PendingAddress]) -> dict[str, list[PendingAddress]]:
    out: dict[str, list[PendingAddress]] = {}
    for entry in entries:
        out.setdefault(normalise_address(entry.address), []).append(entry)
    return out


def address_filter(columns: Iterable[str], addresses: Sequence[str]) -> Filter | None:
    """Rows holding one of ``addresses`` in one of ``columns``: IN-lists of 100."""
    chunks = chunked(list(addresses), ADDRESSES_PER_LIST)
    return any_of(*(Cond(c, "eq", in_list(chunk)) for c in columns for chunk in chunks))


async def link_addresses(
    ctx: RunContext, client: WorkbooksClient, addresses: Iterable[str]
) -> None:
    """Link earlier shared emails of this mailbox to whoever ``addresses`` now belong to:
    one resolution pass, then emails and links in batches (``ensure_linked``).  The pending
    entries of each address are one range read of the mailbox's partition."""
    store = ctx.services.store
    wanted = sorted({normalise_address(a) for a in addresses if a and normalise_address(a)})
    if not wanted:
        return
    found = await asyncio.gather(*(store.pending.for_address(ctx.mailbox.id, a) for a in wanted))
    waiting = _by_address(p for entries in found for p in entries)
    await _link_waiting(ctx, client, waiting.keys(), waiting)


async def _link_waiting(
    ctx: RunContext,
    client: WorkbooksClient,
    addresses: Iterable[str],
    waiting: dict[str, list[PendingAddress]],
) -> None:
    """``link_addresses`` over entries already read (``waiting``, by address); the entries it
    settles are taken out of ``waiting``."""
    store = ctx.services.store
    mailbox = ctx.mailbox
    pending = [p for a in sorted(set(addresses)) for p in waiting.get(a, [])]
    if not pending:
        return
    matches = await resolve_matches(client, {p.address for p in pending})
    keys = sorted({p.message_key for p in pending})
    loaded = await asyncio.gather(*(store.emails.get(mailbox.id, k) for k in keys))
    records: dict[str, EmailRecord | None] = dict(zip(keys, loaded, strict=True))
    now = utcnow()
    lookback = mailbox.policy.retro_lookback_days
    auto = mailbox.policy.email_policy == "auto"
    plan = plan_retro(matches, pending, records, now=now, lookback_days=lookback, auto=auto)
    ended = [*plan.expired, *plan.stale]
    await store.pending.remove_many(ended)
    ctx.count("pending_expired", len(plan.expired))
    settled = list(ended)
    if plan.actions:
        settled += await _apply(ctx, client, records, list(plan.actions))
    gone = {(p.address, p.message_key) for p in settled}
    for address in list(waiting):
        kept = [p for p in waiting[address] if (p.address, p.message_key) not in gone]
        if kept:
            waiting[address] = kept
        else:
            del waiting[address]


async def _apply(
    ctx: RunContext,
    client: WorkbooksClient,
    records: Mapping[str, EmailRecord | None],
    actions: list[RetroAction],
) -> list[PendingAddress]:
    """Create or extend the emails of ``actions``; returns the pending entries settled."""
    store = ctx.services.store
    mailbox = ctx.mailbox
    graph = graph_client(ctx.services)

    async def message_of(action: RetroAction) -> Message | None:
        if action.email_id is not None:
            return None
        # No recipient matched back then, so there is no Workbooks email yet: re-read the
        # message from Outlook to create it now.
        return await read_message(graph, mailbox.graph_id, action.message_key)

    fetched = await asyncio.gather(*(message_of(a) for a in actions))
    settled: list[PendingAddress] = []
    todo: list[tuple[RetroAction, EmailRecord, EmailWork]] = []
    for action, message in zip(actions, fetched, strict=True):
        record = records[action.message_key]
        assert record is not None
        if action.email_id is None and message is None:
            # the sent message is gone: nothing to link any more
            await store.pending.remove_many(list(action.resolved))
            settled += action.resolved
            ctx.count("retro_message_gone")
            continue
        work = EmailWork(message, action.links, action.email_id, set(record.linked))
        todo.append((action, record, work))
    intents = Intents(store.intents, mailbox.id)
    await ensure_linked(client, [w for _, _, w in todo], policy=mailbox.policy, intents=intents)
    now = utcnow()
    for action, record, work in todo:
        if work.error is not None or work.email_id is None:
            ctx.count("retro_failed")  # entries stay pending; the window ends them
            continue
        # Records this tenant cannot add to an existing email (render_with) are explained,
        # and their entries settled: retrying could never link them.
        expl = note_unlinked(retro_explanation(record, action, work.linked, now), work.unlinked)
        updated = record.model_copy(
            update={
                "state": "linked",
                "workbooks_email_id": work.email_id,
                "linked": sorted(work.linked),
                "explanation": expl,
                "processed_at": now,
            }
        )
        await store.emails.put(updated)
        await store.pending.remove_many(list(action.resolved))
        settled += action.resolved
        ctx.count("retro_linked", len(work.linked - set(record.linked)))
    return settled


# ===================================================================== at every push


@register(Stream.CONTACTS, JobKind.PUSH)
async def push_contacts_then_link(ctx: RunContext) -> None:
    """A contacts push (2-hour timer, ``--kind push``, ``{"kind": "push"}``) may have made
    People from shared contacts; the retroactive stream runs right after it (through the
    PEOPLE marker, so it coalesces with any webhook or poll hint) instead of at the next
    reconcile."""
    from sync.engine.contacts import sync_contacts
    from sync.engine.workbooks_webhooks import hint_people

    await sync_contacts(ctx)
    if await hint_people(ctx.services, ctx.mailbox.id, "push"):
        ctx.count("retro_queued")

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
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from sync.core.email_linking import RetroAction, plan_retro, retro_explanation
from sync.core.errors import ResyncRequired
from sync.core.graph_models import Message
from sync.core.jobs import Stream
from sync.core.keys import normalise_address
from sync.core.mapping.scope import is_deleted
from sync.core.state_models import Cursor, EmailRecord, utcnow
from sync.engine.clients import graph_client, workbooks_client
from sync.engine.emails import LinkRequest, _resolve, ensure_links, fetch_message
from sync.engine.registry import RunContext, register

if TYPE_CHECKING:
    from sync.workbooks.client import WorkbooksClient
    from sync.workbooks.reads import Watermark

FLUSH_ADDRESSES = 200
WATERMARK_VERSION = 1


def _sources(client: WorkbooksClient) -> dict[str, tuple[str, ...]]:
    """Endpoint -> the columns holding email addresses (lead fields are [INF], §4.4)."""
    return {
        "crm/people": ("main_location[email]", "main_location[alternate_email]"),
        "crm/sales_leads": tuple(client.config.lead_email_fields),
        "crm/party_locations": ("email", "alternate_email"),
    }


def _load_marks(
    text: str | None, endpoints: Iterable[str], start: Watermark
) -> dict[str, Watermark]:
    from sync.workbooks.reads import Watermark

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
    await retro_link(ctx)


async def retro_link(ctx: RunContext) -> None:
    """Read Workbooks changes since the watermarks and link earlier shared emails."""
    from sync.workbooks.reads import Watermark, changed_since

    client = await workbooks_client(ctx.services, ctx.mailbox)
    cursor = await ctx.services.store.cursors.get(ctx.mailbox.id, Stream.PEOPLE)
    sources = _sources(client)
    start = Watermark(
        utcnow().replace(microsecond=0) - timedelta(days=ctx.mailbox.policy.retro_lookback_days)
    )
    text = None if cursor.resync_requested else cursor.watermark
    marks = _load_marks(text, sources, start)
    for endpoint, columns in sources.items():
        addresses: set[str] = set()
        async for row, mark in changed_since(client, endpoint, marks[endpoint], list(columns)):
            ctx.count("workbooks_changes")
            if not is_deleted(row):
                addresses |= {normalise_address(str(row[c])) for c in columns if row.get(c)}
            if len(addresses) >= FLUSH_ADDRESSES:
                await link_addresses(ctx, client, addresses)
                addresses = set()
                marks[endpoint] = mark
                await _save(ctx, marks)
            else:
                marks[endpoint] = mark
        await link_addresses(ctx, client, addresses)
        await _save(ctx, marks)


async def link_addresses(
    ctx: RunContext, client: WorkbooksClient, addresses: Iterable[str]
) -> None:
    """Link earlier shared emails of this mailbox to whoever ``addresses`` now belong to:
    one resolution pass, then emails and links in batches (``ensure_links``)."""
    store = ctx.services.store
    mailbox = ctx.mailbox
    wanted = sorted({a for a in addresses if a})
    if not wanted:
        return
    found = await asyncio.gather(*(store.pending.for_address(a) for a in wanted))
    pending = [p for entries in found for p in entries if p.mailbox == mailbox.id]
    if not pending:
        return
    matches = await _resolve(client, {p.address for p in pending})
    keys = sorted({p.message_key for p in pending})
    loaded = await asyncio.gather(*(store.emails.get(mailbox.id, k) for k in keys))
    records: dict[str, EmailRecord | None] = dict(zip(keys, loaded, strict=True))
    now = utcnow()
    lookback = mailbox.policy.retro_lookback_days
    plan = plan_retro(matches, pending, records, now=now, lookback_days=lookback)
    await asyncio.gather(*(store.pending.remove(e) for e in (*plan.expired, *plan.stale)))
    ctx.count("pending_expired", len(plan.expired))
    if plan.actions:
        await _apply(ctx, client, records, list(plan.actions))


async def _apply(
    ctx: RunContext,
    client: WorkbooksClient,
    records: Mapping[str, EmailRecord | None],
    actions: list[RetroAction],
) -> None:
    store = ctx.services.store
    mailbox = ctx.mailbox
    graph = graph_client(ctx.services)

    async def message_of(record: EmailRecord | None) -> tuple[Message | None, str, str]:
        if record is None or record.workbooks_email_id is not None:
            return None, "", "text"
        # No recipient matched back then, so there is no Workbooks email yet: re-read the
        # message from Outlook to create it now.
        return await fetch_message(graph, mailbox.graph_id, record.message_key)

    chosen = [(a, records[a.message_key]) for a in actions]
    fetched = await asyncio.gather(*(message_of(r) for _, r in chosen))
    requests: list[tuple[RetroAction, EmailRecord, LinkRequest]] = []
    for (action, record), (message, body, ctype) in zip(chosen, fetched, strict=True):
        assert record is not None
        if record.workbooks_email_id is None and message is None:
            # the sent message is gone: nothing to link any more
            await asyncio.gather(*(store.pending.remove(e) for e in action.resolved))
            ctx.count("retro_message_gone")
            continue
        requests.append((action, record, LinkRequest(record, message, action.links, body, ctype)))
    await ensure_links(client, mailbox, [r for _, _, r in requests])
    now = utcnow()
    for action, record, request in requests:
        if request.error is not None or request.email_id is None:
            ctx.count("retro_failed")  # entries stay pending; the window ends them
            continue
        updated = record.model_copy(
            update={
                "state": "linked",
                "workbooks_email_id": request.email_id,
                "linked": sorted(request.linked),
                "explanation": retro_explanation(record, action, request.linked, now),
                "processed_at": now,
            }
        )
        await store.emails.put(updated)
        await asyncio.gather(*(store.pending.remove(e) for e in action.resolved))
        ctx.count("retro_linked", len(request.linked - set(record.linked)))

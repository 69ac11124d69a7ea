"""Processor: Workbooks People (My People + filters) <-> Outlook contacts."""

from __future__ import annotations

from sync.core.jobs import Stream
from sync.core.mapping import contacts
from sync.engine.clients import graph_client
from sync.engine.outlook_side import OutlookSide
from sync.engine.registry import RunContext, register
from sync.engine.twoway import Spec, TwoWayRun, full_round

PEOPLE = Spec(
    endpoint="crm/people",
    workbooks_type=contacts.PERSON_TYPE,
    queue_class="Private::Crm::PersonQueue",
    columns=contacts.READ_COLUMNS,
    from_workbooks=lambda row, _tz: contacts.from_workbooks(row),
    to_workbooks=lambda f, _tz, changed: contacts.to_workbooks(f, changed),
    from_graph=lambda item, _tz: contacts.from_graph(item),
    to_graph=lambda f, _tz, changed: contacts.to_graph(f, changed),
    title=lambda f: (
        contacts.default_display_name(f) if not f.get("display_name") else str(f["display_name"])
    ),
)


@register(Stream.CONTACTS)
async def sync_contacts(ctx: RunContext) -> None:
    """One contacts run (any job kind; the kind decides the direction)."""
    cursor = await ctx.services.store.cursors.get(ctx.mailbox.id, Stream.CONTACTS)
    full = full_round(cursor, ctx.job.kind)
    side = OutlookSide(
        graph_client(ctx.services), ctx.mailbox.graph_id, ctx.mailbox.policy.category
    )
    await TwoWayRun(ctx, PEOPLE, side, cursor, full).execute()

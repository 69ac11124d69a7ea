"""Processor: Workbooks People (My People + filters) <-> Outlook contacts."""

from __future__ import annotations

from sync.core.jobs import Stream
from sync.core.mapping import contacts
from sync.engine.clients import graph_client
from sync.engine.outlook_side import OutlookMapping
from sync.engine.registry import RunContext, register
from sync.engine.twoway import Spec, full_round, run_cursor, run_two_way
from sync.engine.workbooks_side import WorkbooksMapping
from sync.graph.items import Contacts
from sync.workbooks import records

PEOPLE = Spec(
    workbooks=WorkbooksMapping(
        record=records.PEOPLE,
        columns=contacts.READ_COLUMNS,
        read=lambda row, _tz: contacts.from_workbooks(row),
        write=lambda f, _tz, changed: contacts.to_workbooks(f, changed),
        # Match before create: a newly shared contact is linked to the Person holding its
        # addresses (main or Contact Details emails) instead of becoming a second Person.
        slots=contacts.EMAILS,
        name=lambda f: str(f.get("display_name") or contacts.default_display_name(f)),
    ),
    outlook=OutlookMapping(
        read=lambda item, _tz: contacts.from_graph(item),
        write=lambda f, _tz, changed: contacts.to_graph(f, changed),
        title=lambda f: (
            contacts.default_display_name(f)
            if not f.get("display_name")
            else str(f["display_name"])
        ),
    ),
)


@register(Stream.CONTACTS)
async def sync_contacts(ctx: RunContext) -> None:
    """One contacts run (any job kind; the kind decides the direction)."""
    cursor = await run_cursor(ctx)
    full = full_round(cursor, ctx.job.kind)
    items = Contacts(graph_client(ctx.services), ctx.mailbox.graph_id, ctx.mailbox.policy.category)
    await run_two_way(ctx, PEOPLE, items, cursor, full)

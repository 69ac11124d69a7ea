"""Processors: Workbooks tasks and phone calls <-> To Do tasks; meetings <-> calendar events.

Events are read through calendarView delta over the mailbox's window (``calendar_past_days``
back, ``calendar_future_days`` ahead, whole UTC days).  When the window moves (once a day),
the stream is re-baselined: a new calendarView round, and a full read of the in-scope
meetings, so meetings that entered the window are created and the ones that left it unlinked
(never deleted: the window is not a scope).  Event writes never carry attendees, so the
service never sends invitations.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sync.core.jobs import Stream
from sync.core.mapping import activities as act
from sync.engine.clients import graph_client
from sync.engine.outlook_side import EventSide, TodoSide, default_todo_list
from sync.engine.registry import RunContext, register
from sync.engine.twoway import Spec, TwoWayRun, calendar_window, full_round

ACTIVITY_QUEUE = "Private::Activity::ActivityQueue"


TASKS = Spec(
    endpoint="activity/tasks",
    workbooks_type=act.TASK_TYPE,
    queue_class=ACTIVITY_QUEUE,
    columns=act.TASK_COLUMNS,
    from_workbooks=act.task_from_workbooks,
    to_workbooks=act.task_to_workbooks,
    from_graph=act.task_from_graph,
    to_graph=act.task_to_graph,
    title=lambda f: str(f.get("title") or ""),
    activity=True,
    create_defaults={"activity_type": act.DEFAULT_TASK_ACTIVITY_TYPE},
)

MEETINGS = Spec(
    endpoint="activity/meetings",
    workbooks_type=act.MEETING_TYPE,
    queue_class=ACTIVITY_QUEUE,
    columns=act.MEETING_COLUMNS,
    from_workbooks=act.event_from_workbooks,
    to_workbooks=act.event_to_workbooks,
    from_graph=act.event_from_graph,
    to_graph=act.event_to_graph,
    title=lambda f: str(f.get("subject") or ""),
    activity=True,
)


@register(Stream.TODO)
async def sync_todo(ctx: RunContext) -> None:
    """To Do has no app-only notifications: the timers poll it (push and reconcile)."""
    cursor = await ctx.services.store.cursors.get(ctx.mailbox.id, Stream.TODO)
    client = graph_client(ctx.services)
    list_id = str(cursor.extra.get("list_id") or "")
    full = full_round(cursor, ctx.job.kind)
    if not list_id:
        list_id, full = await default_todo_list(client, ctx.mailbox.graph_id), True
    side = TodoSide(client, ctx.mailbox.graph_id, ctx.mailbox.policy.category, list_id)
    run = TwoWayRun(ctx, TASKS, side, cursor, full, extra_cursor={"list_id": list_id})
    await run.execute()


@register(Stream.EVENTS)
async def sync_events(ctx: RunContext) -> None:
    await run_events(ctx)


async def run_events(ctx: RunContext, *, now: datetime | None = None) -> None:
    """One calendar run; ``now`` (default: the clock) places the window."""
    policy = ctx.mailbox.policy
    cursor = await ctx.services.store.cursors.get(ctx.mailbox.id, Stream.EVENTS)
    window = calendar_window(
        now or datetime.now(UTC), policy.calendar_past_days, policy.calendar_future_days
    )
    moved = (cursor.window_start, cursor.window_end) != window
    full = full_round(cursor, ctx.job.kind) or moved
    lo, hi = window
    spec = replace(MEETINGS, in_window=lambda f: act.in_window(f, policy.time_zone, lo, hi))
    side = EventSide(graph_client(ctx.services), ctx.mailbox.graph_id, policy.category, window)
    extra: dict[str, Any] = {"window_start": lo, "window_end": hi}
    if moved and cursor.window_start is not None:
        ctx.count("window_rebaselined")
        extra["rebaseline_workbooks"] = True
    await TwoWayRun(ctx, spec, side, cursor, full, extra_cursor=extra).execute()

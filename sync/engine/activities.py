"""Processors: Workbooks tasks and phone calls <-> To Do tasks; meetings <-> calendar events.

Events are read through calendarView delta over the mailbox's window (``calendar_past_days``
back, ``calendar_future_days`` ahead, whole UTC days).  When the window moves (once a day),
the stream is re-baselined: a new calendarView round, and a full read of the in-scope
meetings, so meetings that entered the window are created and the ones that left it unlinked
(never deleted: the window is not a scope).  Event writes never carry attendees, so the
service never sends invitations.

A recurring series is one pair, keyed by its master, standing for its next occurrence
(``recurring_events = "next"``, the default) or not synced (``"skip"``): ``Events`` folds the
round's series rows, ``sync.engine.series.SeriesSide`` moves linked series on as time passes.
``now`` is kept in the cursor (``series_at``) so each passed occurrence is looked at once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sync.core.jobs import Stream
from sync.core.mapping import activities as act
from sync.engine.clients import graph_client, mailbox_time_zone
from sync.engine.outlook_side import OutlookMapping, OutlookSide
from sync.engine.registry import RunContext, register
from sync.engine.series import SeriesSide
from sync.engine.twoway import Spec, calendar_window, full_round, run_cursor, run_two_way
from sync.engine.workbooks_side import WorkbooksMapping
from sync.graph.items import Events, OutlookItems, TodoTasks, default_todo_list
from sync.workbooks import records

TASKS = Spec(
    workbooks=WorkbooksMapping(
        record=records.TASKS,
        columns=act.TASK_COLUMNS,
        read=act.task_from_workbooks,
        write=act.task_to_workbooks,
        create_defaults={"activity_type": act.DEFAULT_TASK_ACTIVITY_TYPE},
    ),
    outlook=OutlookMapping(
        read=act.task_from_graph,
        write=act.task_to_graph,
        title=lambda f: str(f.get("title") or ""),
    ),
)

MEETINGS = Spec(
    workbooks=WorkbooksMapping(
        record=records.MEETINGS,
        columns=act.MEETING_COLUMNS,
        read=act.event_from_workbooks,
        write=act.event_to_workbooks,
    ),
    outlook=OutlookMapping(
        read=act.event_from_graph,
        write=act.event_to_graph,
        title=lambda f: str(f.get("subject") or ""),
    ),
)


@register(Stream.TODO)
async def sync_todo(ctx: RunContext) -> None:
    """To Do has no app-only notifications: the timers poll it (push and reconcile)."""
    cursor = await run_cursor(ctx)
    client = graph_client(ctx.services)
    list_id = str(cursor.extra.get("list_id") or "")
    full = full_round(cursor, ctx.job.kind)
    if not list_id:
        list_id, full = await default_todo_list(client, ctx.mailbox.graph_id), True
    items = TodoTasks(client, ctx.mailbox.graph_id, ctx.mailbox.policy.category, list_id)
    await run_two_way(ctx, TASKS, items, cursor, full, extra_cursor={"list_id": list_id})


@register(Stream.EVENTS)
async def sync_events(ctx: RunContext) -> None:
    await run_events(ctx)


async def run_events(ctx: RunContext, *, now: datetime | None = None) -> None:
    """One calendar run; ``now`` (default: the clock) places the window and each recurring
    series on its next occurrence."""
    policy = ctx.mailbox.policy
    now = now or datetime.now(UTC)
    cursor = await run_cursor(ctx)
    window = calendar_window(now, policy.calendar_past_days, policy.calendar_future_days)
    moved = (cursor.window_start, cursor.window_end) != window
    full = full_round(cursor, ctx.job.kind) or moved
    lo, hi = window
    tz = await mailbox_time_zone(ctx.services, ctx.mailbox)
    items = Events(
        graph_client(ctx.services),
        ctx.mailbox.graph_id,
        policy.category,
        window,
        now=now,
        recurring=policy.recurring_events,
    )
    since = _moment(cursor.extra.get("series_at"))

    def side(_: OutlookItems, mapping: OutlookMapping, tz: str, c: RunContext) -> OutlookSide:
        return SeriesSide(items, mapping, tz, c, now=now, since=since)

    spec = replace(MEETINGS, in_window=lambda f: act.in_window(f, tz, lo, hi), side=side)
    extra: dict[str, Any] = {"window_start": lo, "window_end": hi, "series_at": now.isoformat()}
    if moved and cursor.window_start is not None:
        ctx.count("window_rebaselined")
        extra["rebaseline_workbooks"] = True
    await run_two_way(ctx, spec, items, cursor, full, extra_cursor=extra)


def _moment(value: Any) -> datetime | None:
    """A time kept in the cursor (ISO text); None when absent or unreadable."""
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None

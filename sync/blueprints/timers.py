"""Timers only fan out work to the queue; their schedules come from app settings.

The push, reconcile and To Do timers *tick* (every minute by default): each tick queues the jobs
of the mailboxes whose own interval (``MailboxPolicy``) has a due instant in the tick's window,
each arriving at its instant (``sync.core.schedule``), so a thousand mailboxes' work arrives
evenly instead of at the top of the hour.  The renewal sweep queues every mailbox, spread over
half an hour.

A timer that fires while storage is down fails, and the host logs the failed invocation; it is
raised as ``FanOutDeferred`` without the outage's own long stack (``sync.logs``), and the next
occurrence fans out again (the missed window's work waits for its next interval).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import azure.functions as func

from sync.core.schedule import Cadence, tick_window
from sync.core.state_models import utcnow
from sync.engine.health import observe
from sync.engine.runner import fan_out, fan_out_renewals
from sync.engine.sweeper import sweep_streams
from sync.logs import RateLimitedLog, describe, expected_failure
from sync.runtime import Services, get_services
from sync.telemetry import bind

bp = func.Blueprint()
log = logging.getLogger("sync.timers")
OUTCOMES = RateLimitedLog(log)
DEFERRED = "timers: storage unavailable; the next occurrence fans out again"


class FanOutDeferred(RuntimeError):
    """A timer met an outage."""


async def _guarded(reason: str, work: Callable[[Services], Awaitable[object]]) -> None:
    try:
        with bind(kind=reason.replace(" ", "_")):
            await work(await get_services())
    except Exception as exc:
        if not expected_failure(exc):
            raise
        OUTCOMES.warning(DEFERRED, f"{reason}: {describe(exc)}")
        raise FanOutDeferred(f"{reason}: {describe(exc)}") from None


def _schedule(services: Services, cadence: Cadence) -> str:
    app = services.settings.app
    return {
        Cadence.RECONCILE: app.reconcile_schedule,
        Cadence.PUSH: app.push_schedule,
        Cadence.TODO_POLL: app.todo_poll_schedule,
    }[cadence]


async def _tick(timer: func.TimerRequest, cadence: Cadence, reason: str) -> None:
    if timer.past_due:
        log.info("%s timer is past due; running now", reason)

    async def work(services: Services) -> int:
        now = utcnow()
        window = tick_window(_schedule(services, cadence), now)
        return await fan_out(services, cadence, reason, window, now=now)

    await _guarded(reason, work)


@bp.function_name("push_timer")
@bp.timer_trigger(schedule="%SYNC_PUSH_SCHEDULE%", arg_name="timer")
async def push_timer(timer: func.TimerRequest) -> None:
    """Outlook -> Workbooks for the mailboxes whose push is due (default every 2 hours each)."""
    await _tick(timer, Cadence.PUSH, "push timer")


@bp.function_name("reconcile_timer")
@bp.timer_trigger(schedule="%SYNC_RECONCILE_SCHEDULE%", arg_name="timer")
async def reconcile_timer(timer: func.TimerRequest) -> None:
    """Both directions plus retroactive email linking, for the mailboxes whose reconcile is due
    (default every 30 minutes each)."""
    await _tick(timer, Cadence.RECONCILE, "reconcile timer")


@bp.function_name("renew_timer")
@bp.timer_trigger(schedule="%SYNC_RENEW_SCHEDULE%", arg_name="timer")
async def renew_timer(timer: func.TimerRequest) -> None:
    """Renew Graph subscriptions well before they expire."""
    if timer.past_due:
        log.info("renew timer is past due; running now")
    await _guarded("renew timer", lambda services: fan_out_renewals(services, "renew timer"))


@bp.function_name("todo_poll_timer")
@bp.timer_trigger(schedule="%SYNC_TODO_POLL_SCHEDULE%", arg_name="timer")
async def todo_poll_timer(timer: func.TimerRequest) -> None:
    """To Do has no app-only webhooks, so it is polled with delta (default every 5 minutes
    for each mailbox)."""
    await _tick(timer, Cadence.TODO_POLL, "todo poll")


@bp.function_name("retro_poll_timer")
@bp.timer_trigger(schedule="%SYNC_RETRO_POLL_SCHEDULE%", arg_name="timer")
async def retro_poll_timer(timer: func.TimerRequest) -> None:
    """Earlier emails to new People and Sales Leads where no Workbooks webhook tells us: one
    created-since read per tenant, a PEOPLE job for each mailbox waiting on a new address."""
    from sync.engine.workbooks_webhooks import poll

    await _guarded("retro poll", poll)


@bp.function_name("sweep_timer")
@bp.timer_trigger(schedule="%SYNC_SWEEP_SCHEDULE%", arg_name="timer")
async def sweep_timer(timer: func.TimerRequest) -> None:
    """Streams whose run was cut (a worker died, or could not release its lease) or whose job
    was lost run again within minutes, not when their queue message reappears (default every
    30 seconds; ``sync.engine.sweeper``)."""
    await _guarded("sweeper", _sweep)


async def _sweep(services: Services) -> None:
    await sweep_streams(services)
    await observe(services)  # queue, poison and failing gauges, when metrics are exported

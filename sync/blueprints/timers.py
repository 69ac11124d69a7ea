"""Timers only fan out work to the queue; schedules come from app settings.

A timer that fires while storage is down fails, and the host logs the failed invocation; it is
raised as ``FanOutDeferred`` without the outage's own long stack (``sync.logs``), and the next
occurrence fans out again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import azure.functions as func

from sync.core.jobs import Job, JobKind, Stream
from sync.engine.runner import fan_out
from sync.engine.sweeper import sweep_streams
from sync.logs import RateLimitedLog, describe, expected_failure
from sync.runtime import Services, get_services

bp = func.Blueprint()
log = logging.getLogger("sync.timers")
OUTCOMES = RateLimitedLog(log)
DEFERRED = "timers: storage unavailable; the next occurrence fans out again"


class FanOutDeferred(RuntimeError):
    """A timer met an outage."""


async def _guarded(reason: str, work: Callable[[Services], Awaitable[object]]) -> None:
    try:
        await work(await get_services())
    except Exception as exc:
        if not expected_failure(exc):
            raise
        OUTCOMES.warning(DEFERRED, f"{reason}: {describe(exc)}")
        raise FanOutDeferred(f"{reason}: {describe(exc)}") from None


async def _fan_out(timer: func.TimerRequest, kind: JobKind, reason: str) -> None:
    if timer.past_due:
        log.info("%s timer is past due; running now", reason)
    await _guarded(reason, lambda services: fan_out(services, kind, reason))


@bp.function_name("push_timer")
@bp.timer_trigger(schedule="%SYNC_PUSH_SCHEDULE%", arg_name="timer")
async def push_timer(timer: func.TimerRequest) -> None:
    """Outlook -> Workbooks for every stream of every mailbox (default every 2 hours)."""
    await _fan_out(timer, JobKind.PUSH, "push timer")


@bp.function_name("reconcile_timer")
@bp.timer_trigger(schedule="%SYNC_RECONCILE_SCHEDULE%", arg_name="timer")
async def reconcile_timer(timer: func.TimerRequest) -> None:
    """Both directions plus retroactive email linking (default every 30 minutes)."""
    await _fan_out(timer, JobKind.RECONCILE, "reconcile timer")


@bp.function_name("renew_timer")
@bp.timer_trigger(schedule="%SYNC_RENEW_SCHEDULE%", arg_name="timer")
async def renew_timer(timer: func.TimerRequest) -> None:
    """Renew Graph subscriptions well before they expire."""
    await _fan_out(timer, JobKind.RENEW, "renew timer")


@bp.function_name("todo_poll_timer")
@bp.timer_trigger(schedule="%SYNC_TODO_POLL_SCHEDULE%", arg_name="timer")
async def todo_poll_timer(timer: func.TimerRequest) -> None:
    """To Do has no app-only webhooks, so it is polled with delta."""
    await _guarded("todo poll", _todo_poll)


async def _todo_poll(services: Services) -> None:
    for mailbox in await services.store.mailboxes.list(enabled_only=True):
        await services.queue.send(
            Job(mailbox=mailbox.id, stream=Stream.TODO, kind=JobKind.PUSH, reason="todo poll")
        )


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
    await _guarded("sweeper", sweep_streams)

"""Timers only fan out work to the queue; schedules come from app settings."""

from __future__ import annotations

import logging

import azure.functions as func

from sync.core.jobs import Job, JobKind, Stream
from sync.engine.runner import fan_out
from sync.runtime import get_services

bp = func.Blueprint()
log = logging.getLogger("sync.timers")


async def _fan_out(timer: func.TimerRequest, kind: JobKind, reason: str) -> None:
    if timer.past_due:
        log.info("%s timer is past due; running now", reason)
    await fan_out(await get_services(), kind, reason)


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
    services = await get_services()
    for mailbox in await services.store.mailboxes.list(enabled_only=True):
        await services.queue.send(
            Job(mailbox=mailbox.id, stream=Stream.TODO, kind=JobKind.PUSH, reason="todo poll")
        )

"""A mailbox's sync status in words a person who is not an administrator understands (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .data import MailboxRow
from .health import Health, StreamState, ordered
from .views import when

WHAT = {
    "sent": "Emails you share",
    "contacts": "Your contacts",
    "events": "Your calendar",
    "todo": "Your To Do tasks",
}


@dataclass
class Status:
    headline: str
    tone: str  # "ok" | "warn" | "bad" | "info"
    lines: list[str]


def explain_problem(stream: StreamState, now: datetime) -> str:
    """What went wrong with a stream, and who fixes it."""
    what = WHAT.get(stream.stream, stream.label)
    if stream.braked:
        return (
            f"{what}: a sync would have changed or deleted many items at once, so it stopped "
            "before changing anything. If you made those changes on purpose, ask your "
            "administrator to run the sync again; otherwise check the items in Outlook."
        )
    message = stream.message
    lowered = message.lower()
    if "credentials or permission" in lowered or "401" in lowered or "accessdenied" in lowered:
        return (
            f"{what}: the service cannot sign in for you (an API key or a permission). "
            "Your administrator needs to fix this; nothing is lost meanwhile."
        )
    if not message and stream.stale:
        return (
            f"{what}: nothing has synced since {when(stream.last_success_at, now)}. "
            "The service keeps trying; tell your administrator if this lasts."
        )
    detail = f" ({message})" if message else ""
    return f"{what}: the last sync failed{detail}. The service tries again by itself."


def status(row: MailboxRow, now: datetime) -> Status:
    mailbox = row.mailbox
    lines = []
    for stream in ordered(row.streams):
        if stream.stream not in WHAT:
            continue
        if stream.failing or stream.braked:
            lines.append(explain_problem(stream, now))
        elif stream.last_success_at is not None:
            lines.append(f"{WHAT[stream.stream]}: last synced {when(stream.last_success_at, now)}.")
    if row.job is not None:
        lines.insert(
            0,
            f"A sync you asked for is {row.job.state}: "
            f"{row.job.streams_done} of {row.job.streams_total or '?'} parts done.",
        )
    if row.health is Health.PAUSED:
        why = mailbox.disabled_reason or "paused by an administrator"
        return Status("Syncing is paused for your mailbox.", "info", [f"Reason: {why}.", *lines])
    if row.health is Health.FAILING:
        return Status("Your mailbox has a sync problem.", "bad", lines)
    if row.health is Health.BRAKE:
        return Status("A sync was held back to protect your data.", "warn", lines)
    if row.health is Health.NEVER:
        return Status(
            "Your mailbox has not finished its first sync yet.",
            "info",
            lines or ["The first sync starts soon after your mailbox is enabled."],
        )
    return Status("Your mailbox is syncing normally.", "ok", lines)

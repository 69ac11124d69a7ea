"""What the console changes, through the same engine functions the CLI and the HTTP API call,
so a mailbox enabled from the browser behaves exactly like one enabled with
``python -m sync mailboxes enable``.

``live_checks`` is the one place the console asks whether a mailbox can sync: it runs the
``doctor`` (sync.engine.doctor) and records its report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sync.core.doctor import DoctorReport
from sync.core.email_linking import RecordRef
from sync.core.errors import (
    InvalidRequest,
    NotFound,
    SyncError,
)
from sync.core.state_models import JobStatus, Mailbox, MailboxPolicy
from sync.runtime import Services

log = logging.getLogger("sync.console")
NEW_MAILBOX_REASON = "new: run the checks, then enable"


# ------------------------------------------------------------------------ live checks


async def live_checks(services: Services, mailbox: Mailbox) -> DoctorReport:
    """Can this mailbox sync?  The ``doctor`` (``python -m sync doctor``), recorded as the
    mailbox's last report so the mailbox page and ``status`` show it."""
    from sync.engine.doctor import run_doctor

    return await run_doctor(services, mailbox)


def may_enable(report: DoctorReport) -> bool:
    """As ``mailboxes add`` decides: an essential failure (no key, no login, no token, a
    permission or the mailbox out of reach) means the mailbox cannot sync at all; any other
    failure stops one feature and is shown, not refused."""
    return not report.essential_failures


# ------------------------------------------------------------------------ registry


@dataclass
class Outcome:
    """What an action did, in lines for the page."""

    ok: bool
    lines: list[str] = field(default_factory=list)
    mailbox: Mailbox | None = None
    job: JobStatus | None = None


async def add_mailbox(services: Services, mailbox: Mailbox) -> Outcome:
    """Register a mailbox, paused until its checks pass and an admin enables it (no Graph
    subscriptions yet, so no Graph credentials are needed for this step)."""
    new = mailbox.model_copy(update={"enabled": False, "disabled_reason": NEW_MAILBOX_REASON})
    if not await services.store.mailboxes.add(new):
        return Outcome(False, [f"{mailbox.id} is already registered"])
    log.info("console: registered %s (paused until enabled)", new.id)
    return Outcome(True, [f"registered {new.id}"], new)


async def _subscriptions(services: Services, mailbox: Mailbox) -> list[str]:
    """Bring the mailbox's Graph subscriptions in line (create, renew, or delete if disabled),
    as ``python -m sync mailboxes enable|disable`` does."""
    from sync.engine import subscriptions

    try:
        outcome = await subscriptions.ensure_for_mailbox(services, mailbox)
    except SyncError as exc:
        return [f"subscriptions not updated now ({exc}); the renewal timer retries"]
    lines = [
        f"subscriptions: created {len(outcome.created)}, renewed {len(outcome.renewed)}, "
        f"deleted {len(outcome.deleted)}"
    ]
    lines += [f"subscription step failed: {f}; the renewal timer retries" for f in outcome.failed]
    return lines


async def enable(services: Services, mailbox_id: str) -> Outcome:
    """Enable, subscribe and queue a full sync to catch up (the CLI's ``enable``)."""
    from sync.engine.runner import request_manual

    mailbox = await services.store.mailboxes.set_enabled(mailbox_id, True, "")
    if mailbox is None:
        return Outcome(False, [f"{mailbox_id} is not registered"])
    lines = [f"enabled {mailbox.id}", *await _subscriptions(services, mailbox)]
    job = await request_manual(services, mailbox.id, "full")
    lines.append(f"queued a full sync to catch up: job {job.job_id}")
    log.info("console: enabled %s", mailbox.id)
    return Outcome(True, lines, mailbox, job)


async def disable(services: Services, mailbox_id: str, reason: str) -> Outcome:
    mailbox = await services.store.mailboxes.set_enabled(mailbox_id, False, reason)
    if mailbox is None:
        return Outcome(False, [f"{mailbox_id} is not registered"])
    lines = [f"paused {mailbox.id}", *await _subscriptions(services, mailbox)]
    log.info("console: disabled %s", mailbox.id)
    return Outcome(True, lines, mailbox)


async def remove(services: Services, mailbox_id: str) -> Outcome:
    """Delete the subscriptions, then the registration (the sync state stays, as with the
    CLI's ``remove``: adding the mailbox again resumes from it)."""
    from sync.engine import subscriptions

    lines = []
    try:
        outcome = await subscriptions.remove_for_mailbox(services, mailbox_id)
        if outcome.deleted:
            lines.append(f"subscriptions deleted: {len(outcome.deleted)}")
    except SyncError as exc:
        lines.append(f"could not delete subscriptions ({exc}); they lapse within 7 days")
    if not await services.store.mailboxes.remove(mailbox_id):
        return Outcome(False, [*lines, f"{mailbox_id} is not registered"])
    log.info("console: removed %s", mailbox_id)
    return Outcome(True, [*lines, f"removed {mailbox_id}"])


class EditConflict(Exception):
    """The mailbox changed after the form was loaded."""


async def save_policy(
    services: Services, mailbox_id: str, policy: MailboxPolicy, loaded_at: datetime | None
) -> Mailbox:
    """Store a new policy.  ``loaded_at`` is the mailbox's ``updated_at`` when the form was
    shown; a mailbox changed since then (by another admin, or an enable) is not overwritten."""

    def change(current: Mailbox) -> Mailbox:
        if loaded_at is not None and abs((current.updated_at - loaded_at).total_seconds()) > 0.001:
            raise EditConflict(mailbox_id)
        return current.model_copy(update={"policy": policy})

    # ETag-guarded: a change made between the read and the write (an enable, a pause) is
    # neither overwritten nor lost.
    updated = await services.store.mailboxes.update(mailbox_id, change)
    if updated is None:
        raise NotFound(f"{mailbox_id} is not registered")
    log.info("console: policy of %s saved", mailbox_id)
    return updated


# ------------------------------------------------------------------------ syncs and emails

MODES = ("push", "full", "resync")


async def manual_sync(
    services: Services, mailbox: Mailbox, mode: str, *, restore_removed: bool = False
) -> JobStatus:
    """Queue a manual sync, as ``POST /api/sync/{mailbox}`` does."""
    from sync.engine.runner import request_manual

    if mode not in MODES:
        raise InvalidRequest(f"kind must be one of {', '.join(MODES)}")
    if restore_removed and mode != "resync":
        raise InvalidRequest("restoring removed items goes with a resync")
    if not mailbox.enabled:
        raise InvalidRequest(f"{mailbox.id} is paused: {mailbox.disabled_reason}")
    return await request_manual(
        services, mailbox.id, mode, {"restore_removed": "1"} if restore_removed else None
    )


@dataclass
class Attached:
    state: str  # "linked" | "queued" | "failed"
    message: str


async def attach(services: Services, mailbox: Mailbox, message_id: str, ref: RecordRef) -> Attached:
    """Link a sent message to a record, as ``POST /api/emails/{mailbox}/attach`` does: inline
    under the sent stream's lease, or queued when the stream is busy."""
    from sync.engine.emails import attach_job
    from sync.engine.runner import run_job

    job = attach_job(mailbox.id, message_id, ref, reason="console attach")
    run = await run_job(services, job)
    if run.status == "retry":
        return Attached("queued", run.message or "the stream is busy; the link is queued")
    if run.status != "ok" or run.counts.get("attach_failed"):
        return Attached("failed", run.message or run.status)
    return Attached("linked", run.message)

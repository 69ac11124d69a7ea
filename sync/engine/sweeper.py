"""The sweeper (a timer): streams whose run was cut or whose job was lost run again in minutes.

A worker that dies mid-run (an instance recycled, a kill) leaves its stream's lease in place
and its queue message invisible: the host keeps a running function's message invisible with a
10-minute visibility that it renews, so after a death nothing re-delivers that message for up
to 10 minutes.  A run that cannot release its lease (storage down) leaves it too, and a job
lost between its marker and the queue leaves a marker that makes notifications coalesce into
a job that does not exist.  Each sweep reads two short lists, whatever the tenant's size (one
query each, across mailboxes, returning only matching rows):

* cursor rows that name a lease owner: the streams running now, and the CUT ones (lease
  expired, owner still named);
* job markers older than ``SYNC_SWEEP_AFTER_SECONDS``,

and ``sync.core.streams.sweep`` decides which jobs to send again.  A cut stream is marked
(notifications coalesce into the new job), its job sent, and its dead lease cleared (only if
the row is as the sweep read it); a lost job is sent again and its marker dated anew, so a
stream is re-sent at most once per ``SYNC_SWEEP_AFTER_SECONDS``.  Duplicates are harmless: a
job is a reference, and the run re-reads everything from its cursor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sync.core.jobs import Job, JobKind, Stream
from sync.core.state_models import Mailbox, utcnow
from sync.core.streams import Resend, stream_marker, sweep
from sync.runtime import Services

log = logging.getLogger("sync.sweeper")


@dataclass
class SweepOutcome:
    cut: int = 0  # runs cut short, re-sent
    lost: int = 0  # jobs lost, re-sent
    dropped: list[str] = field(default_factory=list)  # left alone: mailbox gone or disabled

    @property
    def sent(self) -> int:
        return self.cut + self.lost


async def sweep_streams(services: Services) -> SweepOutcome:
    """One sweep: read the leased cursors and the late markers, re-send what needs it."""
    now = utcnow()
    after = services.settings.app.sweep_after_seconds
    leases = await services.store.cursors.leased()
    markers = await services.store.dirty.older_than(now - timedelta(seconds=after))
    outcome = SweepOutcome()
    mailboxes: dict[str, Mailbox | None] = {}
    for resend in sweep(leases, markers, now, stale_after_seconds=after):
        if resend.mailbox not in mailboxes:
            mailboxes[resend.mailbox] = await services.store.mailboxes.get(resend.mailbox)
        mailbox = mailboxes[resend.mailbox]
        if mailbox is None or not mailbox.enabled:
            await _forget(services, resend)
            outcome.dropped.append(f"{resend.mailbox}/{resend.stream or resend.why}")
            continue
        if await _resend(services, resend):
            if resend.lease is not None:
                outcome.cut += 1
            else:
                outcome.lost += 1
    if outcome.sent or outcome.dropped:
        log.info(
            "sweeper: re-sent %d job(s) of runs cut short and %d lost job(s); %d left alone "
            "(mailbox gone or disabled)",
            outcome.cut,
            outcome.lost,
            len(outcome.dropped),
        )
    return outcome


async def _resend(services: Services, resend: Resend) -> bool:
    job = await _job(services, resend)
    if job is None:
        return False
    store = services.store
    if resend.lease is not None:
        # Mark first: notifications until the job runs coalesce into it, and if the job is
        # lost too, the marker brings it back at a later sweep.
        ttl = services.settings.app.dirty_marker_ttl_seconds
        await store.dirty.mark(resend.mailbox, stream_marker(resend.stream), ttl_seconds=ttl)
        await services.queue.send(job)
        await store.cursors.clear_cut(resend.lease)
    else:
        await services.queue.send(job)
        if resend.marker is not None:
            await store.dirty.refresh(resend.marker)
    return True


async def _job(services: Services, resend: Resend) -> Job | None:
    reason = f"sweeper: {resend.why}"
    if resend.kind is JobKind.LIFECYCLE:
        record = await services.store.subscriptions.get(resend.subscription_id or "")
        if record is None:  # the subscription is gone: nothing to act on
            await _forget(services, resend)
            return None
        return Job(
            mailbox=resend.mailbox,
            stream=Stream(record.stream),
            kind=JobKind.LIFECYCLE,
            reason=reason,
            subscription_id=resend.subscription_id,
            lifecycle_event=resend.lifecycle_event,
        )
    return Job(
        mailbox=resend.mailbox, stream=Stream(resend.stream), kind=resend.kind, reason=reason
    )


async def _forget(services: Services, resend: Resend) -> None:
    """Nothing will run this: clear what would make every sweep find it again."""
    if resend.lease is not None:
        await services.store.cursors.clear_cut(resend.lease)
    if resend.marker is not None:
        await services.store.dirty.clear(resend.mailbox, resend.marker.name)

"""Status report: mailboxes, stream health, recent runs, queue and poison depth, intake counters.
Shared by ``GET /api/status`` and ``python -m sync status``."""

from __future__ import annotations

from typing import Any

from sync.runtime import Services
from sync.webhook import STATS


async def status_report(services: Services, *, runs_per_mailbox: int = 5) -> dict[str, Any]:
    mailboxes = await services.store.mailboxes.list()
    report: dict[str, Any] = {
        "queue": {
            "name": services.queue.name,
            "depth": await services.queue.depth(),
            "poison": services.queue.poison_name,
            "poison_depth": await services.queue.poison_depth(),
        },
        "webhook_intake_this_instance": STATS.as_dict(),
        "mailboxes": [],
    }
    for mb in mailboxes:
        cursors = await services.store.cursors.list_for_mailbox(mb.id)
        runs = await services.store.runs.recent(mb.id, runs_per_mailbox)
        subs = await services.store.subscriptions.list_for_mailbox(mb.id)
        report["mailboxes"].append(
            {
                "id": mb.id,
                "enabled": mb.enabled,
                "disabled_reason": mb.disabled_reason,
                "subscriptions": [
                    {"stream": s.stream, "expires_at": s.expires_at.isoformat()} for s in subs
                ],
                "streams": [
                    {
                        "stream": c.stream,
                        "last_success_at": c.last_success_at.isoformat()
                        if c.last_success_at
                        else None,
                        "last_error": c.last_error,
                        "consecutive_failures": c.consecutive_failures,
                        "resync_requested": c.resync_requested,
                        "leased": bool(c.lease_owner),
                    }
                    for c in cursors
                ],
                "recent_runs": [
                    {
                        "stream": r.stream,
                        "kind": r.kind,
                        "status": r.status,
                        "started_at": r.started_at.isoformat(),
                        "counts": r.counts,
                        "message": r.message,
                    }
                    for r in runs
                ],
            }
        )
    return report

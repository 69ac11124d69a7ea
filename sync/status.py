"""Status report: mailboxes, their last ``doctor`` report, stream health, recent runs, queue and
poison depth, intake counters.
Shared by ``GET /api/status`` and ``python -m sync status``; and a mailbox's two-way items that
need a person (ambiguous, duplicate, removed by the user), for ``GET /api/items/{mailbox}`` and
``python -m sync items``."""

from __future__ import annotations

from typing import Any

from sync.core.errors import NotFound
from sync.core.jobs import Stream
from sync.core.state_models import IdentityIssue, Removal
from sync.runtime import Services
from sync.webhook import STATS


async def status_report(services: Services, *, runs_per_mailbox: int = 5) -> dict[str, Any]:
    mailboxes = await services.store.mailboxes.list()
    doctors = await services.store.doctor.all()  # every mailbox's last report, one query
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
        identity = await identity_counts(services, mb.id)
        report["mailboxes"].append(
            {
                "id": mb.id,
                "enabled": mb.enabled,
                "disabled_reason": mb.disabled_reason,
                # The last ``doctor`` report (None: never run): what fails and how to fix it.
                "doctor": doctors[mb.id].as_dict() if mb.id in doctors else None,
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
                # Per two-way stream: items left ambiguous or duplicate, removals remembered.
                "two_way_items": identity,
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


# ----------------------------------------------------------------- two-way items (identity)

TWO_WAY_STREAMS: tuple[str, ...] = (Stream.CONTACTS, Stream.EVENTS, Stream.TODO)
MATCHED_BY = {
    "stamp": "our stamp on it",
    "reference": "the record created from it",
    "email": "its email address",
}


def _kind(workbooks_type: str) -> str:
    """``Private::Crm::Person`` -> ``Person``."""
    return workbooks_type.rsplit("::", 1)[-1] or "record"


def _name(title: str, outlook_id: str) -> str:
    return f"'{title}'" if title else f"item {outlook_id}"


def explain_issue(issue: IdentityIssue, mailbox: str) -> str:
    """An ambiguous or duplicate item, in words an administrator can act on."""
    name = _name(issue.title, issue.outlook_id)
    if issue.kind == "ambiguous":
        found = "; ".join(
            f"{_kind(c.workbooks_type)} {c.workbooks_id}"
            + (f" '{c.name}'" if c.name else "")
            + f" ({c.address} in {c.via or 'an email field'}, "
            + ("in your scope" if c.in_scope else "not in your scope")
            + ")"
            for c in issue.candidates
        )
        return (
            f"{name} is shared but was not linked and nothing was created: "
            f"{len(issue.candidates)} Workbooks records hold its addresses: {found}. "
            "Merge or correct them in Workbooks, then edit the item in Outlook or run a resync "
            f"('python -m sync sync {mailbox} --kind resync')."
        )
    what = f"{_kind(issue.workbooks_type)} {issue.workbooks_id}" if issue.workbooks_id else ""
    held = (
        f"{what} is already synced with Outlook item {issue.linked_outlook_id}"
        if what
        else f"another new item with the same address ({issue.linked_outlook_id}) was used"
    )
    return (
        f"{name} is shared but was not linked and nothing was created: {held} (found by "
        f"{MATCHED_BY.get(issue.matched_by, issue.matched_by)}).  A record has one item per "
        "mailbox: remove the sharing category from one of the two, or delete the copy; the "
        "service never deletes your items."
    )


def explain_removal(removal: Removal, mailbox: str) -> str:
    what = f"{_kind(removal.workbooks_type)} {removal.workbooks_id}"
    name = f"'{removal.title}' ({what})" if removal.title else what
    how = "deleted" if removal.how == "deleted" else "unshared (its category removed)"
    return (
        f"{name} was {how} in Outlook on {removal.removed_at:%Y-%m-%d %H:%M} UTC: the record "
        "stays in Workbooks and the service does not put it back into this mailbox.  It "
        "comes back when an item for it is shared again, or with "
        f"'python -m sync sync {mailbox} --kind resync --restore-removed'."
    )


async def identity_counts(services: Services, mailbox: str) -> dict[str, dict[str, int]]:
    return {s: await services.store.identity.counts(mailbox, s) for s in TWO_WAY_STREAMS}


async def two_way_items(
    services: Services, mailbox: str, stream: str | None = None
) -> dict[str, Any]:
    """A mailbox's two-way items that need a person: ambiguous items with their candidates,
    duplicates with the item that holds their record, and the removals remembered; with the
    number of linked items.  Raises NotFound (unknown mailbox) or ValueError (bad stream)."""
    record = await services.store.mailboxes.get(mailbox)
    if record is None:
        raise NotFound(f"mailbox {mailbox!r} is not registered")
    if stream is not None and stream not in TWO_WAY_STREAMS:
        raise ValueError(f"stream must be one of {', '.join(TWO_WAY_STREAMS)}")
    store = services.store
    out: dict[str, Any] = {"mailbox": record.id, "streams": {}}
    for name in [stream] if stream else TWO_WAY_STREAMS:
        issues = await store.identity.issues(record.id, name)
        removals = await store.identity.removals(record.id, name)
        out["streams"][name] = {
            "linked": await store.links.count(record.id, name),
            "ambiguous": [_issue(i, record.id) for i in issues if i.kind == "ambiguous"],
            "duplicate": [_issue(i, record.id) for i in issues if i.kind == "duplicate"],
            "removed": [
                {**r.model_dump(mode="json"), "explanation": explain_removal(r, record.id)}
                for r in removals
            ],
        }
    return out


def _issue(issue: IdentityIssue, mailbox: str) -> dict[str, Any]:
    return {**issue.model_dump(mode="json"), "explanation": explain_issue(issue, mailbox)}


def render_items(report: dict[str, Any]) -> list[str]:
    """``two_way_items`` as text."""
    lines = [f"two-way items of {report['mailbox']}"]
    for stream, items in report["streams"].items():
        lines.append(
            f"\n{stream}: {items['linked']} linked, {len(items['ambiguous'])} ambiguous, "
            f"{len(items['duplicate'])} duplicate, {len(items['removed'])} removed by the user"
        )
        for kind in ("ambiguous", "duplicate", "removed"):
            for entry in items[kind]:
                ident = entry.get("outlook_id") or ""
                lines.append(f"  {kind:9} {ident}")
                lines.append(f"            {entry['explanation']}")
    return lines

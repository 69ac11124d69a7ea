"""Status report: mailboxes, their last ``doctor`` report, stream health, recent runs, queue and
poison depth, intake counters.
Shared by ``GET /api/status`` and ``python -m sync status``; and a mailbox's two-way items that
need a person (ambiguous, duplicate, removed by the user), for ``GET /api/items/{mailbox}`` and
``python -m sync items``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.core.doctor import DoctorReport
from sync.core.errors import NotFound
from sync.core.health import MIN_STALE, StreamHealth, is_stale, stale_after, stale_for
from sync.core.jobs import Stream
from sync.core.state_models import IdentityIssue, Mailbox, Removal, SubscriptionRecord, utcnow
from sync.runtime import Services
from sync.state.health import CursorFlags
from sync.telemetry import record_depths, record_failing
from sync.webhook import STATS


async def status_report(services: Services, *, runs_per_mailbox: int = 5) -> dict[str, Any]:
    """The fleet's status in a fixed number of storage reads, whatever the number of
    mailboxes: the registry, the doctor reports, the stream health rows, the cursors' status
    columns and the subscriptions are one query each, and the two queues' depths one call
    each.  ``recent_runs`` of a mailbox is the last run of each of its streams, newest first,
    at most ``runs_per_mailbox``."""
    store = services.store
    mailboxes, doctors, health, cursors, subs = await asyncio.gather(
        store.mailboxes.list(),
        store.doctor.all(),
        store.health.all(),
        store.health.cursor_flags(),
        store.subscriptions.list_all(),
    )
    depth, poison = await asyncio.gather(services.queue.depth(), services.queue.poison_depth())
    record_depths(services.queue.name, depth, poison)
    record_failing(sum(1 for h in health if h.failing))
    by_mailbox: dict[str, dict[str, Any]] = {}
    for h in health:
        by_mailbox.setdefault(h.mailbox, {})[h.stream] = h
    flags: dict[str, dict[str, CursorFlags]] = {}
    for c in cursors:
        flags.setdefault(c.mailbox, {})[c.stream] = c
    subscriptions: dict[str, list[SubscriptionRecord]] = {}
    for sub in subs:
        subscriptions.setdefault(sub.mailbox, []).append(sub)
    report: dict[str, Any] = {
        "queue": {
            "name": services.queue.name,
            "depth": depth,
            "poison": services.queue.poison_name,
            "poison_depth": poison,
        },
        "webhook_intake_this_instance": STATS.as_dict(),
        "failing_mailboxes": [],
        "mailboxes": [],
    }
    now, stale = utcnow(), stale_after(services.settings.app.reconcile_schedule)
    for mb in mailboxes:
        entry = mailbox_status(
            mb,
            doctors.get(mb.id),
            by_mailbox.get(mb.id, {}),
            flags.get(mb.id, {}),
            subscriptions.get(mb.id, []),
            runs_per_mailbox=runs_per_mailbox,
            now=now,
            stale=stale,
        )
        if entry["failing"]:
            report["failing_mailboxes"].append(mb.id)
        report["mailboxes"].append(entry)
    return report


def mailbox_status(
    mb: Mailbox,
    doctor: DoctorReport | None,
    health: Mapping[str, StreamHealth],
    cursors: Mapping[str, CursorFlags],
    subs: list[SubscriptionRecord],
    *,
    runs_per_mailbox: int = 5,
    now: datetime | None = None,
    stale: timedelta = MIN_STALE,
) -> dict[str, Any]:
    """One mailbox's part of the report, from rows already read.  ``stale``: the reconcile
    timer's part of how old a last success may get (``sync.core.health.stale_after``); the
    mailbox's own interval may lengthen it.  The console decides failing the same way."""
    now = now or utcnow()
    own = stale_for(stale, mb.policy.reconcile_interval_minutes)
    streams = []
    for name in sorted(set(health) | set(cursors), key=_stream_order):
        h, c = health.get(name), cursors.get(name)
        last_ok = _latest(h.last_success_at if h else None, c.last_success_at if c else None)
        # Overdue: no failure recorded, but no success for two reconciliations either (the
        # timer stopped, jobs lost): failing too, as the console shows it.  A paused mailbox
        # is not synced on purpose.
        overdue = mb.enabled and not (h and h.failing) and is_stale(name, last_ok, now, own)
        streams.append(
            {
                "stream": name,
                "failing": bool(h and h.failing) or overdue,
                "overdue": overdue,
                "failing_since": _iso(h.failing_since if h else None),
                "last_success_at": _iso(last_ok),
                "last_error": (h.last_error if h else "") or (c.last_error if c else ""),
                "last_error_at": _iso(h.last_error_at if h else None),
                "consecutive_failures": max(
                    h.consecutive_failures if h else 0, c.consecutive_failures if c else 0
                ),
                "resync_requested": bool(c and c.resync_requested),
                "leased": bool(c and c.leased),
                "last_run": _last_run(h) if h and h.last_run_at else None,
            }
        )
    runs = sorted(
        (h for h in health.values() if h.last_run_at),
        key=lambda h: h.last_run_at or datetime.min.replace(tzinfo=UTC),
        reverse=True,
    )
    return {
        "id": mb.id,
        "enabled": mb.enabled,
        "disabled_reason": mb.disabled_reason,
        # Failing: a stream's last runs failed (``sync.core.health``) and none succeeded since.
        "failing": mb.enabled and any(s["failing"] for s in streams),
        # The last ``doctor`` report (None: never run): what fails and how to fix it.
        "doctor": doctor.as_dict() if doctor else None,
        "subscriptions": [
            {"stream": s.stream, "expires_at": s.expires_at.isoformat()} for s in subs
        ],
        "streams": streams,
        # Per two-way stream, as of its last run: items left ambiguous or duplicate, removals
        # remembered.
        "two_way_items": {
            s: dict(health[s].identity or {}) for s in TWO_WAY_STREAMS if s in health
        },
        "recent_runs": [_last_run(h) for h in runs[:runs_per_mailbox]],
    }


def _last_run(h: StreamHealth) -> dict[str, Any]:
    return {
        "stream": h.stream,
        "kind": h.last_kind,
        "status": h.last_status,
        "started_at": _iso(h.last_run_at) or "",
        "run_id": h.last_run_id,
        "job_id": h.last_job_id,
        "counts": h.last_counts,
        "message": h.last_message,
    }


def _stream_order(name: str) -> tuple[int, str]:
    order = [s.value for s in Stream]
    return (order.index(name) if name in order else len(order), name)


def _latest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# ------------------------------------------------------------------------------- as text


def render_status(report: dict[str, Any]) -> list[str]:
    """The status report as text: failing mailboxes first, then each mailbox's streams."""
    q = report["queue"]
    lines = [f"queue {q['name']}: {q['depth']} waiting; poison {q['poison']}: {q['poison_depth']}"]
    if q["poison_depth"]:
        lines.append("  ! poison messages present: 'python -m sync poison list' to inspect")
    failing = report.get("failing_mailboxes") or []
    if failing:
        lines.append(f"! {len(failing)} mailbox(es) failing: {', '.join(failing)}")
    for mb in report["mailboxes"]:
        lines += ["", *render_mailbox(mb)]
    return lines


def render_mailbox(mb: dict[str, Any]) -> list[str]:
    state = "enabled" if mb["enabled"] else f"disabled: {mb.get('disabled_reason') or '-'}"
    flag = "  ! FAILING" if mb.get("failing") else ""
    lines = [f"{mb['id']} ({state}){flag}", f"  {_doctor_line(mb['id'], mb.get('doctor'))}"]
    for s in mb["streams"]:
        marks = " RESYNC" if s["resync_requested"] else ""
        if s.get("overdue"):
            marks += " FAILING: no success in two reconciliations"
        elif s.get("failing"):
            marks += f" FAILING since {(s['failing_since'] or '-')[:19]}"
        lines.append(f"  {s['stream']:14} last ok {(s['last_success_at'] or '-')[:19]}{marks}")
        if s["last_error"]:
            when = f" at {s['last_error_at'][:19]}" if s.get("last_error_at") else ""
            lines.append(f"  {'':14} last error{when}: {s['last_error'][:200]}")
    for stream, n in mb["two_way_items"].items():
        if any(n.values()):
            lines.append(
                f"  {stream:14} {n.get('ambiguous', 0)} ambiguous, {n.get('duplicate', 0)} "
                f"duplicate (not linked, nothing created), {n.get('removed', 0)} removed by "
                f"the user; see 'python -m sync items {mb['id']}'"
            )
    for r in mb["recent_runs"]:
        lines.append(
            f"  run {r['started_at'][:19]} {r['stream']:10} {r['kind']:9} {r['status']:8} "
            f"{r['counts']} {r['message'][:80]}"
        )
    return lines


def _doctor_line(mailbox: str, doctor: dict[str, Any] | None) -> str:
    if not doctor:
        return f"doctor: never run ('python -m sync doctor {mailbox}')"
    line = f"doctor {doctor['checked_at'][:19]}: {doctor['summary']}"
    failing = [c["name"] for c in doctor["checks"] if c["status"] == "fail"]
    if failing:
        line += f"; failing: {', '.join(failing)} ('python -m sync doctor {mailbox}')"
    return line


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
        removals, issues = await store.identity.load(record.id, name)
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

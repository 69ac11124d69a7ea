"""Registering many mailboxes at once (``python -m sync mailboxes import``): each row is checked
with the live ``doctor`` checks and registered, refused with its reason, or found unchanged;
rows run concurrently up to a bound, and one bad row never stops the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sync.core.errors import SyncError
from sync.core.onboarding import Row, RowProblem, same_registration
from sync.engine import subscriptions
from sync.engine.doctor import diagnose
from sync.logs import describe
from sync.runtime import Services
from sync.telemetry import bind

log = logging.getLogger("sync.onboarding")
Outcome = Literal["added", "refused", "unchanged"]


@dataclass
class RowResult:
    line: int
    mailbox: str
    outcome: Outcome
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "line": self.line,
            "mailbox": self.mailbox,
            "outcome": self.outcome,
            "reason": self.reason,
            "notes": self.notes,
        }


async def import_rows(
    services: Services,
    rows: Sequence[Row | RowProblem],
    *,
    force: bool = False,
    subscribe: bool = True,
    concurrency: int = 4,
) -> list[RowResult]:
    """One result per row, in the rows' order."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(row: Row | RowProblem) -> RowResult:
        if isinstance(row, RowProblem):
            return RowResult(row.line, row.mailbox, "refused", row.reason)
        async with gate:
            with bind(mailbox=row.mailbox.id, kind="import"):
                try:
                    return await _register(services, row, force=force, subscribe=subscribe)
                except Exception as exc:  # one row's failure is that row's result
                    log.warning("import line %d: %s", row.line, describe(exc))
                    return RowResult(row.line, row.mailbox.id, "refused", describe(exc))

    return list(await asyncio.gather(*(one(r) for r in rows)))


async def _register(services: Services, row: Row, *, force: bool, subscribe: bool) -> RowResult:
    mailbox, store = row.mailbox, services.store
    existing = await store.mailboxes.get(mailbox.id)
    if existing is not None:
        if same_registration(existing, mailbox):
            return RowResult(row.line, mailbox.id, "unchanged", "already registered as listed")
        return RowResult(
            row.line,
            mailbox.id,
            "refused",
            "already registered with other settings; change it with 'python -m sync "
            f"mailboxes update {mailbox.id}'",
        )
    report = await diagnose(services, mailbox)
    failed = [c for c in report.essential_failures]
    if failed and not force:
        reasons = "; ".join(f"{c.name}: {c.message}" for c in failed)
        return RowResult(row.line, mailbox.id, "refused", f"essential checks failed: {reasons}")
    if not await store.mailboxes.add(mailbox):
        return RowResult(row.line, mailbox.id, "refused", "registered meanwhile by someone else")
    await store.doctor.put(report)
    result = RowResult(row.line, mailbox.id, "added", report.summary())
    if failed:
        result.notes.append(f"registered despite {', '.join(c.name for c in failed)} (--force)")
    if subscribe:
        try:
            outcome = await subscriptions.ensure_for_mailbox(services, mailbox)
        except SyncError as exc:
            result.notes.append(f"subscriptions not created now ({exc}); the renewal timer does")
        else:
            result.notes.append(f"subscriptions created: {len(outcome.created)}")
            result.notes += [f"subscription step failed: {f}" for f in outcome.failed]
    return result

"""The last doctor report of each mailbox, kept beside the registry without joining it."""

from __future__ import annotations

from datetime import UTC, datetime

from sync.core.checks import Check
from sync.core.doctor import DoctorReport
from sync.core.state_models import Mailbox
from sync.state.store import StateStore

WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _report(mailbox: str, *checks: Check) -> DoctorReport:
    return DoctorReport(mailbox, WHEN, checks)


async def test_reports_are_kept_per_mailbox_and_read_in_one_query(store: StateStore) -> None:
    await store.mailboxes.add(
        Mailbox(id="ann@example.com", workbooks_url="https://wb.example", api_key_ref="env:K")
    )
    first = _report("ann@example.com", Check("graph.roles", "fail", "missing X", "grant X"))
    await store.doctor.put(first)
    await store.doctor.put(_report("bob@example.com", Check("graph.token", "ok", "fine")))
    assert await store.doctor.get("ANN@example.com") == first
    later = _report("ann@example.com", Check("graph.roles", "ok", "all granted"))
    await store.doctor.put(later)  # the last report replaces the one before
    reports = await store.doctor.all()
    assert reports["ann@example.com"] == later and set(reports) == {
        "ann@example.com",
        "bob@example.com",
    }
    assert [m.id for m in await store.mailboxes.list()] == ["ann@example.com"]  # not a mailbox
    assert await store.doctor.get("nobody@example.com") is None
    assert await store.doctor.get("") is None


async def test_a_long_report_fits(store: StateStore) -> None:
    checks = tuple(Check(f"c{i}", "warn", "x" * 900, "y" * 300) for i in range(60))
    report = _report("ann@example.com", *checks)  # ~72,000 characters of JSON
    await store.doctor.put(report)
    assert await store.doctor.get("ann@example.com") == report

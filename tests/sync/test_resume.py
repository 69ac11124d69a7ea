"""A job killed at each step, then re-run, converges: no duplicates on either side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sync.core.jobs import JobKind, Stream
from sync.engine.outlook_side import OutlookSide
from tests.sync.conftest import CATEGORY, UPN, Sides

PEOPLE = "crm/people"


class Killed(RuntimeError):
    pass


def kill_once(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Make ``target.name`` raise the first time it is called (a process dying there)."""
    original = getattr(target, name)
    calls = {"n": 0}

    async def dying(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Killed(name)
        return await original(*args, **kwargs)

    monkeypatch.setattr(target, name, dying)
    return lambda: calls["n"]


async def converged(sides: Sides, people: int, contacts: int) -> None:
    for _ in range(2):
        run = await sides.run(Stream.CONTACTS)
    assert {
        k
        for k in run.counts
        if k.startswith(("outlook_c", "outlook_u", "workbooks_"))
        and k not in ("outlook_changes", "workbooks_changes")
    } == set(), run.counts
    assert len(sides.wb_rows(PEOPLE)) == people
    assert len(sides.outlook_items("contact")) == contacts
    assert len(await sides.links(Stream.CONTACTS)) == contacts


async def test_killed_after_workbooks_create_before_stamp(
    sides: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    sides.outlook_create(
        "contact",
        {
            "displayName": "New One",
            "categories": [CATEGORY],
            "emailAddresses": [{"address": "new@cust.test"}],
        },
    )
    kill_once(OutlookSide, "stamp", monkeypatch)
    with pytest.raises(Killed):
        await sides.world.run(UPN, Stream.CONTACTS, JobKind.PUSH)
    assert len(sides.wb_rows(PEOPLE)) == 1  # the record exists, the link does not
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert "workbooks_create" not in run.counts  # found by created_through_reference
    await converged(sides, people=1, contacts=1)


async def test_killed_after_outlook_create_before_links(
    sides: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    sides.wb_create(PEOPLE, {"name": "Wb Person", "main_location[email]": "wb@cust.test"})
    kill_once(sides.world.services.store.links, "put_many", monkeypatch)
    with pytest.raises(Killed):
        await sides.world.run(UPN, Stream.CONTACTS, JobKind.RECONCILE)
    assert len(sides.outlook_items("contact")) == 1 and await sides.links(Stream.CONTACTS) == []
    run = await sides.run(Stream.CONTACTS)
    assert "outlook_create" not in run.counts and run.counts.get("link") == 1, run.counts
    await converged(sides, people=1, contacts=1)


async def test_killed_before_cursor_advance(sides: Sides, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's position is written with the lease's release: killed there, the run's
    writes are done, its position is not, and its lease is left to expire."""
    sides.wb_create(PEOPLE, {"name": "Cur Sor", "main_location[email]": "cur@cust.test"})
    sides.outlook_create("contact", {"displayName": "Own", "categories": [CATEGORY]})
    cursors = sides.world.services.store.cursors
    before = await cursors.get(UPN, Stream.CONTACTS)
    kill_once(cursors, "release", monkeypatch)
    with pytest.raises(Killed):
        await sides.world.run(UPN, Stream.CONTACTS, JobKind.RECONCILE)
    cut = await cursors.get(UPN, Stream.CONTACTS)
    assert cut.delta_link == before.delta_link and cut.lease_owner  # nothing advanced
    # the lease expires (as after a crash)
    await cursors.update(UPN, Stream.CONTACTS, lambda c: c.model_copy(update={"lease_owner": None}))
    await converged(sides, people=2, contacts=2)


async def test_killed_during_graph_writes(sides: Sides, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(5):
        sides.wb_create(PEOPLE, {"name": f"Many {n}", "main_location[email]": f"m{n}@c.test"})
    original = OutlookSide.create
    made = {"n": 0}

    async def flaky(self: OutlookSide, *args: Any, **kwargs: Any) -> Any:
        made["n"] += 1
        if made["n"] == 3:
            raise Killed("create")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(OutlookSide, "create", flaky)
    with pytest.raises(Killed):
        await sides.world.run(UPN, Stream.CONTACTS, JobKind.RECONCILE)
    monkeypatch.setattr(OutlookSide, "create", original)
    await converged(sides, people=5, contacts=5)


async def test_stale_lock_version_is_reread_merged_and_retried(sides: Sides) -> None:
    pid = sides.wb_create(PEOPLE, {"name": "Lo Ck", "main_location[email]": "lock@c.test"})
    await sides.run(Stream.CONTACTS)
    oid = next(iter(sides.outlook_items("contact")))
    sides.outlook_update("contact", oid, {"jobTitle": "Edited in Outlook"})
    sides.wb.faults.force_conflicts += 1
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_stale") == 1 and run.counts.get("stale_retried") == 1
    assert run.counts.get("workbooks_update") == 1, run.counts
    assert (await sides.wb_get(PEOPLE, pid))["person_job_title"] == "Edited in Outlook"
    await converged(sides, people=1, contacts=1)


async def test_still_stale_after_retry_keeps_cursor(sides: Sides) -> None:
    sides.wb_create(PEOPLE, {"name": "Lo Ck", "main_location[email]": "lock@c.test"})
    await sides.run(Stream.CONTACTS)
    oid = next(iter(sides.outlook_items("contact")))
    before = await sides.world.services.store.cursors.get(UPN, Stream.CONTACTS)
    sides.outlook_update("contact", oid, {"jobTitle": "Edited in Outlook"})
    sides.wb.faults.force_conflicts += 2
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_stale") == 2 and "stale" in run.message
    after = await sides.world.services.store.cursors.get(UPN, Stream.CONTACTS)
    assert after.delta_link == before.delta_link  # the change is read again next time
    run = await sides.run(Stream.CONTACTS, JobKind.PUSH)
    assert run.counts.get("workbooks_update") == 1
    await converged(sides, people=1, contacts=1)

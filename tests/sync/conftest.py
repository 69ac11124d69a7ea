"""Scenario-test harness for the two-way streams: the shared ``tests.support.world`` (Azurite +
both sandboxes in-process) plus helpers to act as the user on either side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import sync.engine.activities
import sync.engine.contacts  # noqa: F401  (registers the processors)
from sync.core.jobs import JobKind, Stream
from sync.core.state_models import Link, RunRecord
from tests.support.world import World, world_running

UPN = "ann@example.com"
CATEGORY = "Workbooks"


def writes(counts: dict[str, int]) -> dict[str, int]:
    """The write counts of a run (what it changed on either side); ``{}`` when it wrote nothing."""
    return {
        k: v
        for k, v in counts.items()
        if k.startswith(("outlook_", "workbooks_"))
        and k not in ("outlook_changes", "workbooks_changes", "outlook_unseen", "workbooks_unseen")
    }


class Sides:
    """Act as the user in Outlook (Graph sandbox) and Workbooks (sandbox), and run jobs."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.sb = world.graph.sandbox
        self.wb = world.workbooks.state

    # ---- jobs
    async def run(
        self, stream: Stream, kind: JobKind = JobKind.RECONCILE, **extra: Any
    ) -> RunRecord:
        run = await self.world.run(UPN, stream, kind, **extra)
        assert run.status in ("ok", "stopped"), (run.status, run.message)
        if run.identity_counts is not None:
            # A two-way run counts the identity rows it leaves instead of reading them again
            # for its health row: in every scenario, the count must be what is stored.
            store = self.world.services.store
            stored = await store.identity.counts(UPN, stream)
            assert run.identity_counts == stored, (run.identity_counts, stored, run.counts)
            (health,) = [h for h in await store.health.all() if h.stream == stream]
            assert health.identity == stored
        return run

    async def links(self, stream: Stream) -> list[Link]:
        return [link async for link in self.world.services.store.links.list(UPN, stream)]

    # ---- Outlook
    def box(self) -> Any:
        return self.sb.state.mailbox(UPN)

    def container(self, kind: str, cid: str | None = None) -> Any:
        box = self.box()
        if cid is None:
            return next(c for c in box.containers.values() if c.kind == kind)
        return self.sb.state.container(box, kind, cid)

    def outlook_items(self, kind: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for cont in self.box().containers.values():
            if cont.kind == kind:
                for imm, item in cont.items.items():
                    out[imm] = {**item.data, "_ext": dict(item.ext), "_linked": list(item.linked)}
        return out

    def outlook_create(self, kind: str, data: dict[str, Any]) -> str:
        item = self.sb.create_item(self.box(), self.container(kind), data)
        return str(item.immutable_id)

    def outlook_update(self, kind: str, item_id: str, data: dict[str, Any]) -> None:
        cont, item = self.sb.state.find(self.box(), kind, item_id)
        self.sb.update_item(self.box(), cont, item, data)

    def outlook_delete(self, kind: str, item_id: str) -> None:
        cont, item = self.sb.state.find(self.box(), kind, item_id)
        self.sb.delete_item(self.box(), cont, item)

    # ---- Workbooks
    def wb_create(self, endpoint: str, values: dict[str, Any]) -> int:
        return int(self.world.seed(endpoint, [values])[0]["id"])

    def wb_edit(self, endpoint: str, record_id: int, changes: dict[str, Any]) -> None:
        from devkit.sandbox.workbooks.control import edit_as

        edit_as(self.wb, endpoint, record_id, changes)

    def wb_record(self, endpoint: str, record_id: int) -> dict[str, Any]:
        record = self.wb.find(endpoint, record_id)
        assert record is not None
        return dict(record)

    async def wb_get(
        self, endpoint: str, record_id: int, columns: list[str] | None = None
    ) -> dict[str, Any]:
        """A record as the API returns it (the field map's columns by default)."""
        from sync.core.mapping import activities, contacts
        from sync.workbooks import Cond, iter_records

        if columns is None:
            columns = list(
                contacts.READ_COLUMNS
                if endpoint == "crm/people"
                else {*activities.TASK_COLUMNS, *activities.MEETING_COLUMNS}
            )
        client = await self.client()
        where = Cond("id", "eq", str(record_id))
        rows = [r async for r in iter_records(client, endpoint, [*columns, "is_deleted"], where)]
        assert len(rows) == 1, rows
        return rows[0]

    async def client(self) -> Any:
        from sync.engine.clients import workbooks_client

        mailbox = await self.world.services.store.mailboxes.get(UPN)
        assert mailbox is not None
        return await workbooks_client(self.world.services, mailbox)

    def wb_rows(self, endpoint: str) -> list[dict[str, Any]]:
        return [r for r in self.wb.tables[endpoint].values() if not r.get("is_deleted")]

    async def wb_delete(self, endpoint: str, record_id: int) -> None:
        from sync.workbooks import WriteOp, write_batch

        client = await self.client()
        lock = int(self.wb_record(endpoint, record_id)["lock_version"])
        (res,) = await write_batch(client, endpoint, [WriteOp.delete(record_id, lock)])
        assert res.ok, res

    def advance_clock(self, seconds: float = 1.5) -> None:
        """Workbooks updated_at has one-second resolution; move it on between edits."""
        from devkit.sandbox.workbooks.control import set_clock

        set_clock(self.wb, advance_seconds=seconds)


@pytest.fixture
async def sides(azurite_connection: str) -> AsyncIterator[Sides]:
    async with world_running(azurite_connection) as world:
        await world.add_mailbox(UPN)
        yield Sides(world)

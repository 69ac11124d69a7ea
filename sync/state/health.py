"""Stream health rows and the fleet-wide reads ``status`` makes, each one query whatever the
number of mailboxes.

The health rows (``sync.core.health``) live in the runs table under their own partition
``health`` (a mailbox key always holds an ``@``, so it cannot collide), RowKey
``key(mailbox)|stream``; the run history stays in the mailboxes' partitions.  Reading the cursors
of every mailbox selects only the few columns status shows, never the delta links.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sync.core.health import StreamHealth, after_run
from sync.core.keys import encode_key
from sync.core.state_models import RunRecord

PARTITION = "health"
CURSOR_COLUMNS = [
    "PartitionKey",
    "RowKey",
    "mailbox",
    "resync_requested",
    "lease_owner",
    "lease_until",
    "last_success_at",
    "last_error",
    "consecutive_failures",
]


class Table(Protocol):
    """What this module needs of ``sync.state.store._Table``."""

    client: Any

    def partition(self, pk: str) -> AsyncIterator[dict[str, Any]]: ...

    def query(
        self, flt: str, parameters: dict[str, Any] | None = None, *, page: int = 1000
    ) -> AsyncIterator[dict[str, Any]]: ...

    async def cas(
        self,
        pk: str,
        rk: str,
        change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        *,
        from_known: bool = False,
    ) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class CursorFlags:
    """What status shows of a cursor."""

    mailbox: str
    stream: str
    resync_requested: bool
    leased: bool
    last_success_at: datetime | None
    last_error: str
    consecutive_failures: int


def _dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value))


class StreamHealthStore:
    def __init__(self, runs: Table, cursors: Table) -> None:
        self._runs = runs
        self._cursors = cursors

    @staticmethod
    def _key(mailbox: str, stream: str) -> str:
        return f"{encode_key(mailbox)}|{stream}"

    async def record(self, run: RunRecord, identity: dict[str, int] | None = None) -> StreamHealth:
        """Fold a finished run into its stream's row (ETag-guarded)."""

        def change(row: dict[str, Any] | None) -> dict[str, Any]:
            previous = StreamHealth.model_validate_json(row["data"]) if row else None
            health = after_run(previous, run, identity)
            # ``failing`` as a column of its own: the metric counts those rows without
            # reading the others.
            return {
                "mailbox": run.mailbox,
                "failing": health.failing,
                "data": health.model_dump_json(),
            }

        # Usually this process wrote the row last (its previous run): write from that version.
        key = self._key(run.mailbox, run.stream)
        row = await self._runs.cas(PARTITION, key, change, from_known=True)
        assert row is not None  # ``change`` always writes
        return StreamHealth.model_validate_json(row["data"])

    async def all(self) -> list[StreamHealth]:
        """Every (mailbox, stream)'s row: one query."""
        return [
            StreamHealth.model_validate_json(row["data"])
            async for row in self._runs.partition(PARTITION)
        ]

    async def failing_count(self) -> int:
        """How many (mailbox, stream) pairs are failing: one query, keys only."""
        flt = "PartitionKey eq @pk and failing eq true"
        rows = self._runs.client.query_entities(
            flt, parameters={"pk": PARTITION}, select=["RowKey"]
        )
        return sum([1 async for _ in rows])

    async def for_mailbox(self, mailbox: str) -> list[StreamHealth]:
        """One mailbox's rows: one range query."""
        prefix = f"{encode_key(mailbox)}|"
        flt = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": PARTITION, "lo": prefix, "hi": prefix[:-1] + "}"}  # '}' follows '|'
        return [
            StreamHealth.model_validate_json(row["data"])
            async for row in self._runs.query(flt, params)
        ]

    async def forget(self, mailbox: str) -> int:
        """Delete a mailbox's rows (it was removed); returns how many."""
        rows = await self.for_mailbox(mailbox)
        for h in rows:
            await self._runs.client.delete_entity(PARTITION, self._key(mailbox, h.stream))
        return len(rows)

    async def cursor_flags(self, mailbox: str | None = None) -> list[CursorFlags]:
        """Every cursor's status columns (or one mailbox's): one query, without the delta
        links and watermarks."""
        now = datetime.now(UTC)
        out: list[CursorFlags] = []
        if mailbox is None:
            rows = self._cursors.client.list_entities(select=CURSOR_COLUMNS, results_per_page=1000)
        else:
            rows = self._cursors.client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": encode_key(mailbox)}, select=CURSOR_COLUMNS
            )
        async for row in rows:
            until = _dt(row.get("lease_until"))
            out.append(
                CursorFlags(
                    mailbox=str(row.get("mailbox") or ""),
                    stream=str(row["RowKey"]),
                    resync_requested=bool(row.get("resync_requested") or False),
                    leased=bool(row.get("lease_owner")) and until is not None and until > now,
                    last_success_at=_dt(row.get("last_success_at")),
                    last_error=str(row.get("last_error") or ""),
                    consecutive_failures=int(row.get("consecutive_failures") or 0),
                )
            )
        return out

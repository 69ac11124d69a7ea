"""The Graph edge for recurring events (``sync.graph.items.Events``) against the Graph
sandbox: the delta round folded per series, a master the round lacks read once, a linked
series read again on its next occurrence, and writes that never touch a series' times or
delete it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sync.core import series
from sync.core.errors import InvalidRequest
from sync.engine.clients import graph_client
from sync.graph.items import Events
from tests.sync.conftest import CATEGORY, Sides
from tests.sync.test_series_sync import MONDAY, wall, weekly

WINDOW = (datetime(2029, 12, 8, tzinfo=UTC), datetime(2031, 1, 8, tzinfo=UTC))


def events(sides: Sides, **kw: Any) -> Events:
    return Events(graph_client(sides.world.services), "ann@example.com", CATEGORY, WINDOW, **kw)


def gets_of(sides: Sides, fragment: str) -> int:
    return sum(1 for m, p, _h in sides.sb.requests if m == "GET" and fragment in p)


async def read_round(items: Events) -> list[dict[str, Any]]:
    reader = items.delta(None)
    return [row async for page in reader for row in page["value"]]


async def test_a_round_hands_out_one_row_per_series_and_singles_as_they_are(sides: Sides) -> None:
    master_id = sides.outlook_create("event", weekly())
    single = sides.outlook_create(
        "event",
        {
            "subject": "Lunch",
            "start": wall("2030-01-08T12:00:00"),
            "end": wall("2030-01-08T13:00:00"),
        },
    )
    rows = await read_round(events(sides, now=MONDAY))
    assert sorted(r["id"] for r in rows) == sorted([master_id, single])
    (folded,) = [r for r in rows if r["id"] == master_id]
    assert folded["start"] == wall("2030-01-07T09:00:00")
    assert folded["categories"] == [CATEGORY]
    # under "skip" the series is still one row, shared with nothing
    rows = await read_round(events(sides, now=MONDAY, recurring="skip"))
    (skipped,) = [r for r in rows if r["id"] == master_id]
    assert skipped["categories"] == []


async def test_a_master_the_round_lacks_is_read_once(sides: Sides) -> None:
    master_id = sides.outlook_create("event", weekly())
    items = events(sides, now=MONDAY)
    # a round that carried only the occurrences (as a split or trimmed round would)
    fold = series.SeriesFold()
    for day in ("2030-01-07", "2030-01-14"):
        fold.add(
            {
                "id": f"occ-{day}",
                "type": "occurrence",
                "seriesMasterId": master_id,
                "start": wall(f"{day}T09:00:00"),
                "end": wall(f"{day}T09:30:00"),
            }
        )
    before = gets_of(sides, "/events/")
    (row,) = await items.fold(fold)
    assert row["subject"] == "Weekly sync" and row["start"] == wall("2030-01-07T09:00:00")
    assert gets_of(sides, "/events/") == before + 1
    await items.fold(fold)  # kept for the run
    assert gets_of(sides, "/events/") == before + 1
    assert items.kinds[master_id] == series.MASTER


async def test_current_reads_a_series_again_on_its_next_occurrence(sides: Sides) -> None:
    monthly = weekly("Board meeting")
    monthly["start"], monthly["end"] = wall("2029-12-15T09:00:00"), wall("2029-12-15T11:00:00")
    monthly["recurrence"] = {
        "pattern": {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 15},
        "range": {"type": "numbered", "startDate": "2029-12-15", "numberOfOccurrences": 3},
    }
    master_id = sides.outlook_create("event", monthly)
    items = events(sides)
    row = await items.current(master_id, datetime(2030, 1, 15, 12, tzinfo=UTC))
    assert row is not None and row["start"] == wall("2030-02-15T09:00:00")  # beyond a week
    assert row["subject"] == "Board meeting" and row["recurrence"]["pattern"]["dayOfMonth"] == 15
    row = await items.current(master_id, datetime(2030, 3, 1, tzinfo=UTC))
    assert row is not None and row["start"] == wall("2030-02-15T09:00:00")  # the last one
    sides.outlook_delete("event", master_id)
    assert await events(sides).current(master_id, MONDAY) is None


async def test_updates_never_move_a_series_and_deletes_are_refused(sides: Sides) -> None:
    master_id = sides.outlook_create("event", weekly())
    items = events(sides)
    moved = {"start": wall("2030-01-07T15:00:00"), "end": wall("2030-01-07T16:00:00")}
    assert await items.update(master_id, {**moved, "isAllDay": False}) == {}
    await items.update(master_id, {**moved, "subject": "Renamed"})
    _cont, master = sides.sb.state.find(sides.box(), "event", master_id) or (None, None)
    assert master is not None
    assert master.data["subject"] == "Renamed"
    assert master.data["start"]["dateTime"].startswith("2029-12-24T09:00")
    # an occurrence's id is recognised too (one GET of its type)
    (row,) = [r for r in await read_round(events(sides, now=MONDAY)) if r["id"] == master_id]
    occ_id = row[series.OCCURRENCE_KEY]["id"]
    assert await events(sides).update(occ_id, moved) == {}
    with pytest.raises(InvalidRequest):
        await items.delete(master_id)
    assert sides.sb.state.find(sides.box(), "event", master_id) is not None
    single = sides.outlook_create(
        "event",
        {"subject": "x", "start": wall("2030-01-08T12:00:00"), "end": wall("2030-01-08T13:00:00")},
    )
    await events(sides).update(single, {"start": wall("2030-01-08T14:00:00")})
    _c, item = sides.sb.state.find(sides.box(), "event", single) or (None, None)
    assert item is not None and item.data["start"]["dateTime"].startswith("2030-01-08T14:00")
    await events(sides).delete(single)
    assert sides.sb.state.find(sides.box(), "event", single) is None
    await events(sides).delete(single)  # already gone is fine

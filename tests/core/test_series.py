"""Recurring series folded into one item each, the occurrence it stands for, the recurrence in
words, and the description line that carries it in Workbooks (``sync.core.series``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.core import series
from sync.core.mapping import activities as act

MASTER_ID = "AAMkMaster="
NOW = datetime(2030, 1, 14, 8, 0, tzinfo=UTC)
WEEKLY = {
    "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "index": "first"},
    "range": {"type": "numbered", "startDate": "2030-01-07", "numberOfOccurrences": 4},
}


def wall(text: str, zone: str = "UTC") -> dict[str, str]:
    return {"dateTime": f"{text}.0000000", "timeZone": zone}


def master(**extra: Any) -> dict[str, Any]:
    """A master row as calendarView delta sends it: the first occurrence's start/end."""
    return {
        "id": MASTER_ID,
        "type": "seriesMaster",
        "seriesMasterId": None,
        "subject": "Weekly sync",
        "body": {"contentType": "html", "content": "<p>Agenda</p>"},
        "location": {"displayName": "Room 4"},
        "categories": ["Workbooks"],
        "changeKey": "ck-1",
        "lastModifiedDateTime": "2030-01-01T10:00:00Z",
        "isAllDay": False,
        "start": wall("2030-01-07T09:00:00"),
        "end": wall("2030-01-07T09:30:00"),
        "recurrence": WEEKLY,
        **extra,
    }


def stub(day: str, hour: str = "09") -> dict[str, Any]:
    """A delta occurrence stub: exactly the seven properties Graph sends."""
    return {
        "@odata.type": "#microsoft.graph.event",
        "@odata.etag": 'W/"ck-1"',
        "id": f"occ-{day}",
        "seriesMasterId": MASTER_ID,
        "type": "occurrence",
        "start": wall(f"{day}T{hour}:00:00"),
        "end": wall(f"{day}T{hour}:30:00"),
    }


def exception(day: str, **extra: Any) -> dict[str, Any]:
    row = {**master(), **stub(day), "type": "exception", "subject": "Moved sync"}
    row.pop("recurrence")
    return {**row, **extra}


def round_of(*rows: dict[str, Any]) -> series.SeriesFold:
    fold = series.SeriesFold()
    passed = [row for row in rows if not fold.add(row)]
    assert all(not series.is_series_row(r) for r in passed if "@removed" not in r)
    return fold


DAYS = ("2030-01-07", "2030-01-14", "2030-01-21", "2030-01-28")


def test_a_round_folds_a_series_into_one_row_on_its_next_occurrence() -> None:
    fold = round_of(master(), *(stub(d) for d in DAYS))
    (row,) = fold.rows(NOW, {})
    assert row["id"] == MASTER_ID and row["type"] == "seriesMaster"
    assert row["categories"] == ["Workbooks"] and row["subject"] == "Weekly sync"
    assert row["start"] == wall("2030-01-14T09:00:00")  # not the master's first occurrence
    assert row["end"] == wall("2030-01-14T09:30:00")
    assert row[series.OCCURRENCE_KEY] == {"id": "occ-2030-01-14", "type": "occurrence"}
    fields = act.event_from_graph(row, "UTC")
    assert fields["start"] == "2030-01-14T09:00:00Z" and fields["body"] == "Agenda"
    assert fields["recurrence"] == "Every week on Monday, from 2030-01-07, 4 times."


def test_single_events_and_removals_pass_through() -> None:
    fold = series.SeriesFold()
    single = {"id": "one", "type": "singleInstance", "subject": "Lunch"}
    removed = {"id": "gone", "@removed": {"reason": "deleted"}}
    assert not fold.add(single) and not fold.add(removed)
    assert fold.rows(NOW, {}) == []


def test_an_occurrence_in_progress_is_still_the_next_one() -> None:
    fold = round_of(master(), *(stub(d) for d in DAYS))
    (row,) = fold.rows(datetime(2030, 1, 14, 9, 15, tzinfo=UTC), {})
    assert row["start"] == wall("2030-01-14T09:00:00")
    (row,) = fold.rows(datetime(2030, 1, 14, 9, 30, tzinfo=UTC), {})  # it ended
    assert row["start"] == wall("2030-01-21T09:00:00")


def test_an_exception_stands_for_itself_when_it_is_next() -> None:
    moved = exception(
        "2030-01-14", start=wall("2030-01-14T11:00:00"), end=wall("2030-01-14T12:00:00")
    )
    fold = round_of(master(), stub("2030-01-07"), moved, stub("2030-01-21"))
    (row,) = fold.rows(NOW, {})
    assert row["subject"] == "Moved sync" and row["start"] == wall("2030-01-14T11:00:00")
    assert row["id"] == MASTER_ID and row["recurrence"] == WEEKLY  # still the series
    assert row["categories"] == ["Workbooks"]  # sharing is the master's
    # a later exception does not change what the meeting shows
    fold = round_of(master(), *(stub(d) for d in DAYS[:2]), exception("2030-01-21"))
    (row,) = fold.rows(NOW, {})
    assert row["subject"] == "Weekly sync" and row["start"] == wall("2030-01-14T09:00:00")


def test_a_cancelled_next_occurrence_gives_the_following_one() -> None:
    fold = round_of(master(), stub("2030-01-07"), stub("2030-01-21"), stub("2030-01-28"))
    (row,) = fold.rows(NOW, {})
    assert row["start"] == wall("2030-01-21T09:00:00")


def test_after_the_last_occurrence_the_series_stays_on_it() -> None:
    fold = round_of(master(), *(stub(d) for d in DAYS))
    (row,) = fold.rows(datetime(2030, 3, 1, tzinfo=UTC), {})
    assert row["start"] == wall("2030-01-28T09:00:00")


def test_a_master_missing_from_the_round_is_asked_for() -> None:
    fold = round_of(*(stub(d) for d in DAYS))  # stubs only
    assert fold.missing_masters() == [MASTER_ID]
    assert fold.rows(NOW, {MASTER_ID: None}) == []  # gone: left out
    (row,) = fold.rows(NOW, {MASTER_ID: master()})
    assert row["subject"] == "Weekly sync" and row["start"] == wall("2030-01-14T09:00:00")


def test_a_series_removed_later_in_the_round_is_dropped() -> None:
    fold = round_of(master(), stub("2030-01-14"))
    assert not fold.add({"id": MASTER_ID, "@removed": {"reason": "deleted"}})
    assert fold.rows(NOW, {}) == []


def test_repeated_rows_count_once_and_series_rows_without_master_are_dropped() -> None:
    fold = round_of(master(), stub("2030-01-14"), stub("2030-01-14"), master())
    assert len(fold.rows(NOW, {})) == 1
    orphan = {**stub("2030-01-14"), "seriesMasterId": None}
    assert fold.add(orphan) and fold.dropped == 1


def test_skip_reports_every_series_unshared() -> None:
    fold = round_of(master(), *(stub(d) for d in DAYS))
    (row,) = fold.rows(NOW, {}, "skip")
    assert row["id"] == MASTER_ID and row["categories"] == []


def test_kinds_name_the_masters_of_the_round() -> None:
    assert round_of(stub("2030-01-14")).kinds() == {MASTER_ID: "seriesMaster"}


def test_instances_read_from_other_zones_and_all_day() -> None:
    london = {**stub("2030-07-01"), "start": wall("2030-07-01T09:00:00", "Europe/London")}
    inst = series.instance_of(london)
    assert inst is not None and inst.start == datetime(2030, 7, 1, 8, 0, tzinfo=UTC)
    assert inst.end == datetime(2030, 7, 1, 9, 30, tzinfo=UTC)
    inst = series.instance_of({**london, "end": wall("2030-07-01T07:00:00")})
    assert inst is not None and inst.end == inst.start  # an end before the start: the start
    assert series.instance_of({"id": "x", "type": "occurrence"}) is None
    day = series.instance_of(
        {
            "id": "d",
            "type": "occurrence",
            "seriesMasterId": MASTER_ID,
            "start": wall("2030-01-14T00:00:00"),
            "end": wall("2030-01-15T00:00:00"),
        }
    )
    assert day is not None and day.end - day.start == timedelta(days=1)


@pytest.mark.parametrize(
    ("recurrence", "words"),
    [
        (WEEKLY, "Every week on Monday, from 2030-01-07, 4 times."),
        (
            {
                "pattern": {"type": "weekly", "interval": 2, "daysOfWeek": ["thursday", "monday"]},
                "range": {"type": "endDate", "startDate": "2030-01-07", "endDate": "2030-06-30"},
            },
            "Every 2 weeks on Monday and Thursday, from 2030-01-07 until 2030-06-30.",
        ),
        (
            {
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "noEnd", "startDate": "2030-01-07"},
            },
            "Every day, from 2030-01-07, no end date.",
        ),
        (
            {
                "pattern": {"type": "daily", "interval": 3},
                "range": {"type": "numbered", "startDate": "2030-01-07", "numberOfOccurrences": 1},
            },
            "Every 3 days, from 2030-01-07, 1 time.",
        ),
        (
            {"pattern": {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 15}},
            "Every month on day 15.",
        ),
        (
            {
                "pattern": {
                    "type": "relativeMonthly",
                    "interval": 2,
                    "daysOfWeek": ["thursday"],
                    "index": "first",
                }
            },
            "Every 2 months on the first Thursday.",
        ),
        (
            {"pattern": {"type": "absoluteYearly", "interval": 1, "dayOfMonth": 3, "month": 3}},
            "Every year on 3 March.",
        ),
        (
            {
                "pattern": {
                    "type": "relativeYearly",
                    "interval": 1,
                    "daysOfWeek": ["friday"],
                    "index": "last",
                    "month": 11,
                }
            },
            "Every year on the last Friday of November.",
        ),
        ({"pattern": {"type": "hourly"}}, "Repeats."),
        ({"pattern": "weekly"}, "Repeats."),
        ("weekly", "Repeats."),
        (None, ""),
    ],
)
def test_describe(recurrence: Any, words: str) -> None:
    assert series.describe(recurrence) == words


def test_a_master_without_a_readable_recurrence_is_still_a_series() -> None:
    fields = act.event_from_graph({**master(), "recurrence": None}, "UTC")
    assert fields["recurrence"] == "Repeats." and series.is_series(fields)
    assert act.event_from_graph({"id": "x", "type": "singleInstance"}, "UTC")["recurrence"] == ""


@pytest.mark.parametrize(
    ("body", "recurrence"),
    [("Agenda\n\n1. numbers", "Every day."), ("", "Every day."), ("Just text", "")],
)
def test_the_recurrence_line_round_trips_through_workbooks(body: str, recurrence: str) -> None:
    fields = {
        "subject": "Weekly sync",
        "body": body,
        "location": "",
        "all_day": False,
        "start": "2030-01-14T09:00:00Z",
        "end": "2030-01-14T09:30:00Z",
        "recurrence": recurrence,
    }
    row = act.event_to_workbooks(fields, "UTC")
    assert act.event_from_workbooks(row, "UTC") == fields
    # only the recurrence changed: the description is rewritten with the body kept
    again = act.event_to_workbooks({**fields, "recurrence": "Every week."}, "UTC", ["recurrence"])
    assert act.event_from_workbooks({**row, **again}, "UTC")["body"] == body


def test_the_line_is_found_wherever_a_user_left_it() -> None:
    text = f"Agenda\n{series.NOTE_PREFIX}Every day.\nNotes added later"
    assert series.split_note(text) == ("Agenda\nNotes added later", "Every day.")
    assert series.split_note("No line here") == ("No line here", "")
    assert series.with_note("", "") == ""


def test_a_series_pair_is_never_updated_in_graph() -> None:
    fields = {
        "subject": "Renamed",
        "body": "x",
        "start": "2030-01-14T10:00:00Z",
        "end": "2030-01-14T11:00:00Z",
        "recurrence": "Every week.",
    }
    assert act.event_to_graph(fields, "UTC", ["subject", "start", "end", "recurrence"]) == {}
    # a create (a Workbooks meeting becoming a single event) never carries the recurrence
    created = act.event_to_graph(fields, "UTC")
    assert "recurrence" not in created and created["body"]["content"] == "x"


def test_due_once_per_passed_occurrence() -> None:
    snap = {"start": "2030-01-14T09:00:00Z", "end": "2030-01-14T09:30:00Z", "recurrence": "x"}
    before, after = datetime(2030, 1, 14, 9, 0, tzinfo=UTC), datetime(2030, 1, 14, 10, tzinfo=UTC)
    assert not series.due(snap, None, before, "UTC")  # not over yet
    assert series.due(snap, None, after, "UTC")
    assert series.due(snap, before, after, "UTC")  # ended since the last check
    assert not series.due(snap, after, after + timedelta(hours=1), "UTC")  # already looked at
    assert not series.due({**snap, "recurrence": ""}, None, after, "UTC")  # a single event
    day = {"start": "2030-01-14", "end": "2030-01-15", "recurrence": "x", "all_day": True}
    ny_midnight = datetime(2030, 1, 15, 5, 0, tzinfo=UTC)
    assert series.tracked_end(day, "America/New_York") == ny_midnight
    assert series.tracked_end({}, "UTC") is None


def test_a_deleted_series_takes_only_an_upcoming_meeting_the_service_created() -> None:
    later, earlier = NOW + timedelta(hours=1), NOW - timedelta(hours=1)
    assert series.deletes_record(False, later, NOW)
    assert not series.deletes_record(False, earlier, NOW)  # it took place: history
    assert not series.deletes_record(True, later, NOW)  # the meeting came from Workbooks
    assert not series.deletes_record(False, None, NOW)

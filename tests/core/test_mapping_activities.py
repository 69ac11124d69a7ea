"""Activities <-> To Do tasks and events: statuses, bodies, time zones, DST and all-day."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync.core.mapping import activities as a
from sync.core.mapping import times as t
from sync.core.mapping.text import html_to_text, text_to_html

LON, NY = "Europe/London", "America/New_York"


# ------------------------------------------------------------------ var_date_time


@pytest.mark.parametrize(
    ("raw", "tz", "value", "has_time"),
    [
        ("2023-06-28T09:30:00.000Z,1,Europe/London", LON, "2023-06-28T09:30:00Z", True),
        ("2023-06-29,0,Europe/London", LON, "2023-06-29", False),
        ("2023-06-28 10:30", LON, "2023-06-28T09:30:00Z", True),  # naive: user's zone (BST)
        ("2023-01-28 10:30", LON, "2023-01-28T10:30:00Z", True),  # GMT in winter
        ("2023-06-28 10:30", NY, "2023-06-28T14:30:00Z", True),  # EDT
        ("2023-12-28 10:30", NY, "2023-12-28T15:30:00Z", True),  # EST
        ("2024-03-10 02:30", NY, "2024-03-10T07:30:00Z", True),  # DST gap: read as EST
        ("2023-06-28", NY, "2023-06-28", False),
        ("2023-06-28T09:30:00+02:00", NY, "2023-06-28T07:30:00Z", True),
    ],
)
def test_parse_var_date_time(raw: str, tz: str, value: str, has_time: bool) -> None:
    parsed = t.parse_var_date_time(raw, tz)
    assert parsed is not None
    assert (parsed.value, parsed.has_time) == (value, has_time)


def test_var_date_time_blank_and_format() -> None:
    assert t.parse_var_date_time(None) is None
    assert t.parse_var_date_time("") is None
    assert t.parse_var_date_time(",0,Europe/London") is None
    assert t.format_var_date_time("2023-06-28T09:30:00Z", LON) == (
        "2023-06-28T09:30:00.000Z,1,Europe/London"
    )
    assert t.format_var_date_time("2023-06-29", NY) == "2023-06-29,0,America/New_York"


# ------------------------------------------------------------------ Graph dateTimeTimeZone


@pytest.mark.parametrize(
    ("wall", "zone", "utc"),
    [
        ("2024-03-30T09:00:00.0000000", "Europe/London", "2024-03-30T09:00:00Z"),  # GMT
        ("2024-03-31T09:00:00.0000000", "Europe/London", "2024-03-31T08:00:00Z"),  # BST
        ("2024-03-31T09:00:00.0000000", "GMT Standard Time", "2024-03-31T08:00:00Z"),
        ("2024-03-09T09:00:00.0000000", "Eastern Standard Time", "2024-03-09T14:00:00Z"),
        ("2024-03-10T09:00:00.0000000", "America/New_York", "2024-03-10T13:00:00Z"),
        ("2024-11-03T09:00:00.1234567", "America/New_York", "2024-11-03T14:00:00Z"),
        ("2024-11-03T14:00:00", "UTC", "2024-11-03T14:00:00Z"),
        ("2024-11-03T14:00:00", "Nowhere/Unknown", "2024-11-03T14:00:00Z"),
    ],
)
def test_graph_wall_times_resolve_with_zone_rules(wall: str, zone: str, utc: str) -> None:
    assert t.graph_to_instant({"dateTime": wall, "timeZone": zone}) == utc


@pytest.mark.parametrize("tz", [LON, NY])
@pytest.mark.parametrize(
    "moment",
    [
        "2024-03-31T00:30:00Z",  # London: the hour before clocks go forward
        "2024-03-31T01:30:00Z",  # London: just after
        "2024-10-27T00:30:00Z",  # London: first 01:30 BST (ambiguous wall time)
        "2024-10-27T01:30:00Z",  # London: second 01:30 GMT
        "2024-03-10T06:30:00Z",
        "2024-03-10T07:30:00Z",  # New York: DST starts
        "2024-11-03T05:30:00Z",  # New York: first 01:30 EDT (ambiguous)
        "2024-11-03T06:30:00Z",  # New York: second 01:30 EST
    ],
)
def test_instants_round_trip_through_graph_across_dst(tz: str, moment: str) -> None:
    wire = t.instant_to_graph(moment, tz)
    assert t.graph_to_instant(wire) == moment


def test_instant_written_as_local_wall_time() -> None:
    assert t.instant_to_graph("2024-07-01T08:00:00Z", LON) == {
        "dateTime": "2024-07-01T09:00:00.0000000",
        "timeZone": "Europe/London",
    }
    # ambiguous wall time -> UTC rather than a guess
    assert t.instant_to_graph("2024-11-03T06:30:00Z", NY)["timeZone"] == "UTC"


def test_graph_dates_read_in_user_zone() -> None:
    midnight = {"dateTime": "2024-03-31T00:00:00.0000000", "timeZone": "UTC"}
    assert t.graph_to_date(midnight, LON) == "2024-03-31"  # floating all-day midnight
    as_utc = {"dateTime": "2024-06-30T23:00:00.0000000", "timeZone": "UTC"}
    assert t.graph_to_date(as_utc, LON) == "2024-07-01"  # London midnight (BST) sent as UTC
    ny = {"dateTime": "2024-11-03T04:00:00.0000000", "timeZone": "UTC"}
    assert t.graph_to_date(ny, NY) == "2024-11-03"  # New York midnight (EDT) sent as UTC
    assert t.graph_to_date(None, LON) == ""


# ------------------------------------------------------------------ tasks


TASK_ROW = {
    "id": 7,
    "name": "Call Ann",
    "activity_type": "Phone call",
    "activity_status": "In progress",
    "activity_priority": "High",
    "description": "<p>Ask about <b>renewal</b> &amp; pricing</p><p>Line 2</p>",
    "due": "2024-03-10T04:30:00.000Z,1,America/New_York",
    "completed": None,
}


def test_task_from_workbooks_due_day_in_user_zone() -> None:
    f = a.task_from_workbooks(TASK_ROW, NY)
    assert f == {
        "title": "Call Ann",
        "notes": "Ask about renewal & pricing\nLine 2",
        "status": "in_progress",
        "importance": "high",
        "due": "2024-03-09",  # 23:30 EST on the 9th
        "completed": "",
    }
    assert a.task_from_workbooks(TASK_ROW, LON)["due"] == "2024-03-10"
    assert a.is_phone_call(TASK_ROW)


@pytest.mark.parametrize("tz", [LON, NY])
def test_task_round_trips_both_ways(tz: str) -> None:
    f = a.task_from_workbooks(TASK_ROW, tz)
    graph = a.task_to_graph(f, tz)
    assert graph["dueDateTime"]["dateTime"].startswith(f["due"])
    assert graph["status"] == "inProgress" and graph["importance"] == "high"
    assert a.task_from_graph(graph, tz) == f
    row = a.task_to_workbooks(f, tz)
    assert row["due"] == f"{f['due']},0,{tz}"
    assert a.task_from_workbooks(row, tz) == f


def test_task_status_and_priority_maps() -> None:
    for wb, canon in [
        ("New", "not_started"),
        ("Complete", "completed"),
        ("Completed", "completed"),
        ("Weird", "not_started"),
    ]:
        assert a.status_from_workbooks(wb) == canon
    for wb2, canon in [("High", "high"), ("Medium", "normal"), ("Low", "low"), (None, "normal")]:
        assert a.importance_from_workbooks(wb2) == canon
    assert a.task_from_graph({"status": "waitingOnOthers"}, LON)["status"] == "in_progress"
    assert a.task_from_graph({"status": "deferred"}, LON)["status"] == "not_started"
    row = a.task_to_workbooks({"status": "completed", "importance": "low"}, LON)
    assert row["activity_status"] == "Complete" and row["activity_priority"] == "Low"


def test_completed_task_carries_completion_time() -> None:
    graph = {
        "title": "Done",
        "status": "completed",
        "completedDateTime": {"dateTime": "2024-07-01T10:00:00.0000000", "timeZone": "UTC"},
    }
    f = a.task_from_graph(graph, LON)
    assert f["completed"] == "2024-07-01T10:00:00Z"
    row = a.task_to_workbooks(f, LON, changed={"status"})
    assert row == {
        "activity_status": "Complete",
        "completed": "2024-07-01T10:00:00.000Z,1,Europe/London",
    }
    assert a.task_from_workbooks({**row, "name": "Done"}, LON)["completed"] == f["completed"]
    # not completed -> completion time ignored
    assert a.task_from_graph({**graph, "status": "notStarted"}, LON)["completed"] == ""


def test_linked_resource_stamp() -> None:
    res = a.task_linked_resource(7, "Call Ann", "https://wb.test/activity/7")
    assert a.task_stamped_id({"linkedResources": [res]}) == 7
    assert (
        a.task_stamped_id({"linkedResources": [{"applicationName": "X", "externalId": "1"}]})
        is None
    )
    assert a.task_stamped_id({}) is None


# ------------------------------------------------------------------ meetings / events


MEETING = {
    "id": 9,
    "name": "Quarterly review",
    "description": "Agenda:<br/>1. numbers",
    "location": "Room 4",
    "all_day": False,
    "start": "2024-10-27T00:30:00.000Z,1,Europe/London",
    "finish": "2024-10-27T01:30:00.000Z,1,Europe/London",
}


@pytest.mark.parametrize("tz", [LON, NY])
def test_timed_meeting_round_trips_across_dst(tz: str) -> None:
    f = a.event_from_workbooks(MEETING, tz)
    assert f["start"] == "2024-10-27T00:30:00Z" and f["end"] == "2024-10-27T01:30:00Z"
    assert f["body"] == "Agenda:\n1. numbers"
    g = a.event_to_graph(f, tz)
    assert g["isAllDay"] is False and "attendees" not in g
    assert a.event_from_graph(g, tz) == f
    assert a.event_from_workbooks(a.event_to_workbooks(f, tz), tz) == f


def test_meeting_without_finish_lasts_duration_or_an_hour() -> None:
    row = {**MEETING, "finish": None}
    assert a.event_from_workbooks(row, LON)["end"] == "2024-10-27T01:30:00Z"
    assert a.event_from_workbooks({**row, "duration": 1800}, LON)["end"] == "2024-10-27T01:00:00Z"
    assert a.event_from_workbooks({**row, "start": None}, LON)["start"] == ""


@pytest.mark.parametrize("tz", [LON, NY])
def test_all_day_meeting_end_is_exclusive_in_graph(tz: str) -> None:
    row = {
        "name": "Offsite",
        "all_day": True,
        "start": f"2024-03-30,0,{tz}",
        "finish": f"2024-03-31,0,{tz}",
    }  # two days over the DST change (London)
    f = a.event_from_workbooks(row, tz)
    assert (f["all_day"], f["start"], f["end"]) == (True, "2024-03-30", "2024-04-01")
    g = a.event_to_graph(f, tz)
    assert g["start"] == {"dateTime": "2024-03-30T00:00:00.0000000", "timeZone": tz}
    assert g["end"] == {"dateTime": "2024-04-01T00:00:00.0000000", "timeZone": tz}
    assert a.event_from_graph(g, tz) == f
    back = a.event_to_workbooks(f, tz)
    assert back["finish"] == f"2024-03-31,0,{tz}" and back["all_day"] is True
    assert a.event_from_workbooks(back, tz) == f


def test_all_day_graph_event_reported_in_utc() -> None:
    g = {
        "subject": "Holiday",
        "isAllDay": True,
        "start": {"dateTime": "2024-06-30T23:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2024-07-01T23:00:00.0000000", "timeZone": "UTC"},
    }
    f = a.event_from_graph(g, LON)
    assert (f["start"], f["end"]) == ("2024-07-01", "2024-07-02")


def test_all_day_workbooks_times_are_dropped_to_dates() -> None:
    row = {"name": "x", "all_day": "true", "start": "2024-07-01T23:30:00.000Z,1,America/New_York"}
    f = a.event_from_workbooks(row, LON)
    assert (f["start"], f["end"]) == ("2024-07-01", "2024-07-02")


def test_window_overlap() -> None:
    lo, hi = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    inside = {"start": "2024-01-05T10:00:00Z", "end": "2024-01-05T11:00:00Z"}
    before = {"start": "2023-12-05T10:00:00Z", "end": "2023-12-05T11:00:00Z"}
    spanning = {"start": "2023-12-31", "end": "2024-01-02"}
    assert a.in_window(inside, LON, lo, hi)
    assert not a.in_window(before, LON, lo, hi)
    assert a.in_window(spanning, NY, lo, hi)
    assert not a.in_window({"start": ""}, LON, lo, hi)


def test_html_text_round_trip() -> None:
    for text in ["", "one", "a\nb", "x & <y>", "para\n\npara"]:
        assert html_to_text(text_to_html(text)) == text
    assert (
        html_to_text("<html><head><style>p {}</style></head><body>Hi&nbsp;there</body></html>")
        == "Hi there"
    )

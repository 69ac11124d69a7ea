"""The sandbox's recurrence rules against the examples in Graph's own docs
(`concepts/outlook-schedule-recurring-events.md`, `resources/recurrencepattern.md`)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from devkit.sandbox.graph.recurrence import RecurrenceError, dates, normalise


def series(pattern: dict[str, Any], rng: dict[str, Any]) -> dict[str, Any]:
    return normalise({"pattern": pattern, "range": rng}, "Pacific Standard Time")


def days(rec: dict[str, Any], horizon: str = "2100-01-01") -> list[str]:
    return [d.isoformat() for d in dates(rec, date.fromisoformat(horizon))]


def test_normalise_returns_graphs_full_shape_and_casing() -> None:
    rec = series(
        {"type": "Weekly", "interval": 1, "daysOfWeek": ["Monday"]},
        {"type": "EndDate", "startDate": "2017-09-04", "endDate": "2017-12-31"},
    )
    # As in the create-event example response of user-post-events.md.
    assert rec == {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "month": 0,
            "dayOfMonth": 0,
            "daysOfWeek": ["monday"],
            "firstDayOfWeek": "sunday",
            "index": "first",
        },
        "range": {
            "type": "endDate",
            "startDate": "2017-09-04",
            "endDate": "2017-12-31",
            "recurrenceTimeZone": "Pacific Standard Time",
            "numberOfOccurrences": 0,
        },
    }


def test_weekly_until_end_of_year_ends_on_the_last_monday() -> None:
    # Docs: "Because December 31, 2017, is on a Sunday, the last occurrence ... December 25."
    rec = series(
        {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
        {"type": "endDate", "startDate": "2017-09-04", "endDate": "2017-12-31"},
    )
    found = days(rec)
    assert found[0] == "2017-09-04" and found[-1] == "2017-12-25" and len(found) == 17


def test_relative_monthly_anchors_on_the_first_month_with_an_occurrence() -> None:
    # Docs: first Thursday of every other month from August 29 -> first occurrence in September.
    rec = series(
        {"type": "relativeMonthly", "interval": 2, "daysOfWeek": ["Thursday"], "index": "first"},
        {"type": "numbered", "startDate": "2017-08-29", "numberOfOccurrences": 3},
    )
    assert days(rec) == ["2017-09-07", "2017-11-02", "2018-01-04"]


def test_daily_every_three_days_numbered() -> None:
    rec = series(
        {"type": "daily", "interval": 3},
        {"type": "numbered", "startDate": "2030-01-30", "numberOfOccurrences": 4},
    )
    assert days(rec) == ["2030-01-30", "2030-02-02", "2030-02-05", "2030-02-08"]


def test_weekly_every_other_week_counts_weeks_from_the_start_week() -> None:
    # Start on a Wednesday: that week's Monday and Tuesday are before the range starts.
    rec = series(
        {"type": "weekly", "interval": 2, "daysOfWeek": ["tuesday", "monday"]},
        {"type": "noEnd", "startDate": "2030-01-02"},
    )
    assert days(rec, "2030-02-01") == ["2030-01-14", "2030-01-15", "2030-01-28", "2030-01-29"]


def test_absolute_monthly_day_31_falls_on_the_last_day_of_shorter_months() -> None:
    rec = series(
        {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 31},
        {"type": "numbered", "startDate": "2030-01-01", "numberOfOccurrences": 4},
    )
    assert days(rec) == ["2030-01-31", "2030-02-28", "2030-03-31", "2030-04-30"]


def test_yearly_patterns() -> None:
    absolute = series(
        {"type": "absoluteYearly", "interval": 1, "dayOfMonth": 15, "month": 4},
        {"type": "numbered", "startDate": "2030-05-01", "numberOfOccurrences": 2},
    )
    assert days(absolute) == ["2031-04-15", "2032-04-15"]
    last_wednesday = series(
        {
            "type": "relativeYearly",
            "interval": 1,
            "daysOfWeek": ["Wednesday"],
            "index": "last",
            "month": 11,
        },
        {"type": "endDate", "startDate": "2030-01-01", "endDate": "2031-12-31"},
    )
    assert days(last_wednesday) == ["2030-11-27", "2031-11-26"]


def test_relative_monthly_with_several_days_takes_the_first_match() -> None:
    # Docs: "the event falls on the first day that satisfies the pattern".
    rec = series(
        {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["Thursday", "Friday"]},
        {"type": "numbered", "startDate": "2030-03-01", "numberOfOccurrences": 2},
    )
    assert days(rec) == ["2030-03-01", "2030-04-04"]


def test_no_end_stops_at_the_horizon() -> None:
    rec = series({"type": "daily", "interval": 1}, {"type": "noEnd", "startDate": "2030-01-01"})
    assert days(rec, "2030-01-03") == ["2030-01-01", "2030-01-02", "2030-01-03"]


@pytest.mark.parametrize(
    ("pattern", "rng", "problem"),
    [
        (
            {"type": "weekly", "interval": 1},
            {"type": "noEnd", "startDate": "2030-01-01"},
            "daysOfWeek",
        ),
        (
            {"type": "daily", "interval": 0},
            {"type": "noEnd", "startDate": "2030-01-01"},
            "interval",
        ),
        (
            {"type": "hourly", "interval": 1},
            {"type": "noEnd", "startDate": "2030-01-01"},
            "pattern.type",
        ),
        (
            {"type": "absoluteMonthly", "interval": 1},
            {"type": "noEnd", "startDate": "2030-01-01"},
            "dayOfMonth",
        ),
        (
            {"type": "daily", "interval": 1},
            {"type": "numbered", "startDate": "2030-01-01", "numberOfOccurrences": 0},
            "numberOfOccurrences",
        ),
        (
            {"type": "daily", "interval": 1},
            {"type": "endDate", "startDate": "2030-01-02", "endDate": "2030-01-01"},
            "before",
        ),
        ({"type": "daily", "interval": 1}, {"type": "noEnd"}, "startDate"),
    ],
)
def test_invalid_recurrences_are_refused(
    pattern: dict[str, Any], rng: dict[str, Any], problem: str
) -> None:
    with pytest.raises(RecurrenceError, match=problem):
        series(pattern, rng)

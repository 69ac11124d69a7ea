"""Graph's `patternedRecurrence`: validation into the shape Graph returns, and expansion into
occurrence dates.  Pure functions, no sandbox state.

Rules (docs: `resources/recurrencepattern.md`, `recurrencerange.md`,
`concepts/outlook-schedule-recurring-events.md`; see docs/graph.md):

* pattern types daily / weekly / absoluteMonthly / relativeMonthly / absoluteYearly /
  relativeYearly, each with its required properties; enum values are read case-insensitively
  and returned in Graph's casing (`"Monday"` -> `"monday"`);
* the range starts at `startDate`; `endDate` is inclusive, `numbered` counts occurrences,
  `noEnd` runs until the caller's horizon;
* weekly intervals count weeks from the week (by `firstDayOfWeek`) that holds `startDate`;
  monthly and yearly intervals count from the first month/year that has an occurrence on or
  after `startDate` (the documented example: "first Thursday of every other month starting
  August 29" first occurs in September);
* `dayOfMonth` beyond the month's length falls on the month's last day (Outlook's behaviour for
  "day 31"; not stated in the Graph docs).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PATTERNS = (
    "daily",
    "weekly",
    "absoluteMonthly",
    "relativeMonthly",
    "absoluteYearly",
    "relativeYearly",
)
RANGES = ("endDate", "noEnd", "numbered")
INDEXES = ("first", "second", "third", "fourth", "last")
NO_DATE = "0001-01-01"  # how Graph writes an unused range date
_MAX_STEPS = 200_000  # a horizon guard: no pattern needs more candidate periods than this


class RecurrenceError(ValueError):
    """The recurrence is not one Graph accepts."""


def _enum(value: Any, allowed: tuple[str, ...], what: str) -> str:
    for name in allowed:
        if isinstance(value, str) and value.lower() == name.lower():
            return name
    raise RecurrenceError(f"{what} {value!r} is not one of {', '.join(allowed)}.")


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RecurrenceError(f"{what} must be an integer from {lo} to {hi}.")
    return value


def _date(value: Any, what: str) -> str:
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError as exc:
        raise RecurrenceError(f"{what} must be a date (YYYY-MM-DD).") from exc


def normalise(raw: Any, event_zone: str) -> dict[str, Any]:
    """Validate a `patternedRecurrence` and return it in the full shape Graph returns."""
    if not isinstance(raw, dict):
        raise RecurrenceError("recurrence must be an object with pattern and range.")
    pattern, rng = raw.get("pattern"), raw.get("range")
    if not isinstance(pattern, dict) or not isinstance(rng, dict):
        raise RecurrenceError("recurrence needs both pattern and range.")
    kind = _enum(pattern.get("type"), PATTERNS, "pattern.type")
    out_pattern: dict[str, Any] = {
        "type": kind,
        "interval": _int(pattern.get("interval"), "pattern.interval", 1, 999),
        "month": 0,
        "dayOfMonth": 0,
        "daysOfWeek": [],
        "firstDayOfWeek": _enum(pattern.get("firstDayOfWeek") or "sunday", DAYS, "firstDayOfWeek"),
        "index": _enum(pattern.get("index") or "first", INDEXES, "pattern.index"),
    }
    days = pattern.get("daysOfWeek") or []
    if not isinstance(days, list):
        raise RecurrenceError("pattern.daysOfWeek must be a list.")
    out_pattern["daysOfWeek"] = [_enum(d, DAYS, "daysOfWeek") for d in days]
    if kind in ("weekly", "relativeMonthly", "relativeYearly") and not days:
        raise RecurrenceError(f"pattern.daysOfWeek is required for {kind}.")
    if kind in ("absoluteMonthly", "absoluteYearly"):
        out_pattern["dayOfMonth"] = _int(pattern.get("dayOfMonth"), "pattern.dayOfMonth", 1, 31)
    if kind in ("absoluteYearly", "relativeYearly"):
        out_pattern["month"] = _int(pattern.get("month"), "pattern.month", 1, 12)
    range_kind = _enum(rng.get("type"), RANGES, "range.type")
    out_range: dict[str, Any] = {
        "type": range_kind,
        "startDate": _date(rng.get("startDate"), "range.startDate"),
        "endDate": NO_DATE,
        "recurrenceTimeZone": str(rng.get("recurrenceTimeZone") or event_zone),
        "numberOfOccurrences": 0,
    }
    if range_kind == "endDate":
        out_range["endDate"] = _date(rng.get("endDate"), "range.endDate")
        if out_range["endDate"] < out_range["startDate"]:
            raise RecurrenceError("range.endDate is before range.startDate.")
    if range_kind == "numbered":
        count = rng.get("numberOfOccurrences")
        out_range["numberOfOccurrences"] = _int(count, "range.numberOfOccurrences", 1, 999)
    return {"pattern": out_pattern, "range": out_range}


def dates(recurrence: dict[str, Any], horizon: date) -> Iterator[date]:
    """Occurrence dates of a normalised recurrence, in order, up to `horizon` (inclusive) or
    the range's own end, whichever comes first."""
    rng = recurrence["range"]
    start = date.fromisoformat(rng["startDate"])
    last = horizon
    if rng["type"] == "endDate":
        last = min(last, date.fromisoformat(rng["endDate"]))
    remaining = rng["numberOfOccurrences"] if rng["type"] == "numbered" else -1
    for day in _candidates(recurrence["pattern"], start):
        if day > last or remaining == 0:
            return
        yield day
        remaining -= 1


def _candidates(pattern: dict[str, Any], start: date) -> Iterator[date]:
    kind, step = pattern["type"], pattern["interval"]
    if kind == "daily":
        for n in range(_MAX_STEPS):
            yield start + timedelta(days=n * step)
    elif kind == "weekly":
        yield from _weekly(pattern, start, step)
    elif kind in ("absoluteMonthly", "relativeMonthly"):
        yield from _periodic(pattern, start, step, months=1)
    else:
        yield from _periodic(pattern, start, step, months=12)


def _weekly(pattern: dict[str, Any], start: date, step: int) -> Iterator[date]:
    first = DAYS.index(pattern["firstDayOfWeek"])
    week0 = start - timedelta(days=(start.weekday() - first) % 7)
    wanted = {DAYS.index(d) for d in pattern["daysOfWeek"]}
    for n in range(0, _MAX_STEPS, step):
        base = week0 + timedelta(weeks=n)
        for offset in range(7):
            day = base + timedelta(days=offset)
            if day.weekday() in wanted and day >= start:
                yield day


def _periodic(pattern: dict[str, Any], start: date, step: int, *, months: int) -> Iterator[date]:
    """Monthly (months=1) or yearly (months=12): anchor on the first period with an occurrence
    on or after `start`, then every `step` periods."""
    index = start.year * 12 + start.month - 1
    if months == 12:  # yearly patterns name their month
        index = start.year * 12 + pattern["month"] - 1
    first = _in_period(pattern, index)
    if first < start:
        index += months
    for n in range(_MAX_STEPS):
        yield _in_period(pattern, index + n * step * months)


def _in_period(pattern: dict[str, Any], index: int) -> date:
    year, month = divmod(index, 12)
    month += 1
    length = calendar.monthrange(year, month)[1]
    if pattern["type"] in ("absoluteMonthly", "absoluteYearly"):
        return date(year, month, min(pattern["dayOfMonth"], length))
    wanted = {DAYS.index(d) for d in pattern["daysOfWeek"]}
    matches = [
        date(year, month, d)
        for d in range(1, length + 1)
        if date(year, month, d).weekday() in wanted
    ]
    position = INDEXES.index(pattern["index"])
    return matches[-1] if pattern["index"] == "last" else matches[min(position, len(matches) - 1)]

"""Recurring events: the rows of one calendarView delta round folded into one item per series,
the occurrence a series' Workbooks meeting stands for, and the recurrence in words.  Pure.

What Graph does with a series (shared graph.md §2.4 "Series" and §4.3; the sources are listed
in docs/graph.md, "Recurring events"):

* calendarView delta returns a series as its **master** (the full event, with the start/end of
  its *first* occurrence and its ``recurrence``), its **occurrences** as bare stubs (``id``,
  ``seriesMasterId``, ``type``, ``start``, ``end``: no subject, body or categories) and its
  **exceptions** (occurrences edited on their own) in full; a series is not split across pages;
* every occurrence has its own id, derived from its original date: rescheduling the series
  gives new ids and the old ones are never reported ``@removed``; a cancelled occurrence is
  simply absent from the next round;
* editing or cancelling one occurrence changes the master, so the whole series comes again.

So the service pairs a **series**, never its occurrences: one item per series, keyed by the
master's id, carrying the master's properties (its categories decide whether it is shared)
with the start and end of the occurrence it stands for (policy ``recurring_events = "next"``):
the first occurrence that has not ended, or, when none is left in the window, the last one.
An exception stands for itself (its own subject, time, location).  Occurrence ids are never
kept, so a reschedule cannot leave stale pairs behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sync.core.mapping import times

Raw = Mapping[str, Any]
Policy = Literal["next", "skip"]

MASTER, OCCURRENCE, EXCEPTION = "seriesMaster", "occurrence", "exception"
SERIES_TYPES = frozenset({MASTER, OCCURRENCE, EXCEPTION})
# The tracked occurrence's own id and type, kept on a folded row for logs and tests.
OCCURRENCE_KEY = "_occurrence"
# The line that carries the recurrence in a Workbooks meeting's description (Workbooks has no
# recurrence field).  Distinctive, so a user's own text is not mistaken for it.
NOTE_PREFIX = "[Outlook series] "

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_UNITS = {"daily": "day", "weekly": "week", "absoluteMonthly": "month", "relativeMonthly": "month"}
_UNITS |= {"absoluteYearly": "year", "relativeYearly": "year"}


# ------------------------------------------------------------------------------ rows


def series_id(row: Raw) -> str | None:
    """The master id a row belongs to: its own id for a master, ``seriesMasterId`` for an
    occurrence or exception; None for a single event (or a series row without one)."""
    kind = row.get("type")
    if kind == MASTER:
        return str(row["id"]) if row.get("id") else None
    master = row.get("seriesMasterId")
    return str(master) if master else None


def is_series_row(row: Raw) -> bool:
    return row.get("type") in SERIES_TYPES or bool(row.get("seriesMasterId"))


@dataclass(frozen=True)
class Instance:
    """One occurrence or exception of a series: its id, type and span (UTC), the span as
    Graph wrote it, and for an exception its full row (its own subject, body, location)."""

    outlook_id: str
    kind: str
    start: datetime
    end: datetime
    start_raw: Mapping[str, Any]
    end_raw: Mapping[str, Any]
    row: Raw | None = None


def instance_of(row: Raw) -> Instance | None:
    """An occurrence or exception row (a delta stub, or a full ``instances`` row) as an
    Instance; None when it has no id or no readable start."""
    start_raw, end_raw = row.get("start"), row.get("end") or row.get("start")
    if not row.get("id") or not isinstance(start_raw, Mapping) or not isinstance(end_raw, Mapping):
        return None
    start = times.graph_to_instant(dict(start_raw))
    end = times.graph_to_instant(dict(end_raw)) or start
    if not start:
        return None
    kind = EXCEPTION if row.get("type") == EXCEPTION else OCCURRENCE
    return Instance(
        str(row["id"]),
        kind,
        times.parse_instant(start),
        max(times.parse_instant(start), times.parse_instant(end)),
        start_raw,
        end_raw,
        dict(row) if kind == EXCEPTION else None,
    )


def pick(instances: Iterable[Instance], now: datetime) -> Instance | None:
    """The occurrence a series' meeting stands for at ``now``: the first (by start) that has
    not ended (one in progress counts), else the last one; None when there is none."""
    ordered = sorted(instances, key=lambda i: (i.start, i.outlook_id))
    for inst in ordered:
        if inst.end > now:
            return inst
    return ordered[-1] if ordered else None


def fold_series(master: Raw, instances: Iterable[Instance], now: datetime) -> dict[str, Any] | None:
    """One Graph-shaped row for the series: the master's properties (id, categories,
    changeKey, recurrence) with the picked occurrence's start and end, or an exception's own
    properties when the picked one is an exception.  None when no occurrence is known."""
    chosen = pick(instances, now)
    if chosen is None or not master.get("id"):
        return None
    base = dict(chosen.row) if chosen.row is not None else dict(master)
    modified = [str(r.get("lastModifiedDateTime") or "") for r in (master, base)]
    return {
        **base,
        "id": str(master["id"]),
        "type": MASTER,
        "seriesMasterId": None,
        "recurrence": master.get("recurrence"),
        "categories": list(master.get("categories") or []),
        "changeKey": master.get("changeKey") or base.get("changeKey"),
        "lastModifiedDateTime": max(modified) or None,
        "start": dict(chosen.start_raw),
        "end": dict(chosen.end_raw),
        OCCURRENCE_KEY: {"id": chosen.outlook_id, "type": chosen.kind},
    }


def unshared_row(master_id: str) -> dict[str, Any]:
    """A series under ``recurring_events = "skip"``: seen, but shared with nothing (a linked
    one is unlinked, an unlinked one only counted)."""
    return {"id": master_id, "type": MASTER, "categories": []}


@dataclass
class _Series:
    master: Raw | None = None
    instances: dict[str, Instance] = field(default_factory=dict)


@dataclass
class SeriesFold:
    """The series rows of one delta round, collected page by page and folded at its end.

    A master's row is kept whole; occurrences and exceptions as ``Instance`` (a stub keeps only
    its id and span).  An ``@removed`` entry for a master that came earlier in the round drops
    the series (it was deleted while the round was read)."""

    series: dict[str, _Series] = field(default_factory=dict)
    dropped: int = 0  # series rows that named no master or had no readable time

    def add(self, row: Raw) -> bool:
        """Take ``row`` if it is part of a series (True); single events and removals are not
        taken (False), so the caller passes them on."""
        if "@removed" in row:
            self.series.pop(str(row.get("id")), None)
            return False
        if not is_series_row(row):
            return False
        key = series_id(row)
        if key is None:
            self.dropped += 1
            return True
        entry = self.series.setdefault(key, _Series())
        if row.get("type") == MASTER:
            entry.master = dict(row)
            return True
        inst = instance_of(row)
        if inst is None:
            self.dropped += 1
        else:
            entry.instances[inst.outlook_id] = inst
        return True

    def missing_masters(self) -> list[str]:
        """Series whose master row the round did not carry (its properties must be read)."""
        return [key for key, s in self.series.items() if s.master is None]

    def kinds(self) -> dict[str, str]:
        """Which ids of the round are series masters (their pairs are series)."""
        return dict.fromkeys(self.series, MASTER)

    def rows(
        self, now: datetime, masters: Mapping[str, Raw | None], policy: Policy = "next"
    ) -> list[dict[str, Any]]:
        """One row per series of the round: folded under ``next``, unshared under ``skip``.
        ``masters``: the master rows read separately for ``missing_masters``; a series whose
        master is gone is left out (its ``@removed`` comes in a later round)."""
        out: list[dict[str, Any]] = []
        for key, entry in self.series.items():
            if policy == "skip":
                out.append(unshared_row(key))
                continue
            master = entry.master or masters.get(key)
            if master is None:
                continue
            row = fold_series(master, entry.instances.values(), now)
            if row is not None:
                out.append(row)
        return out


# ------------------------------------------------------------------------------ pairs


def is_series(fields: Mapping[str, Any]) -> bool:
    """Canonical event fields (or a link snapshot) of a series-backed pair."""
    return bool(str(fields.get("recurrence") or "").strip())


def tracked_text(fields: Mapping[str, Any]) -> str:
    """The time a pair's fields say its tracked occurrence ends, as stored ("" for none): what
    a stream's link summary keeps of each linked series (``sync.state.store.LinkSummary``), so
    a run can tell which series are due without reading every link."""
    return str(fields.get("end") or "") or str(fields.get("start") or "")


def series_time(fields: Mapping[str, Any]) -> str | None:
    """``tracked_text`` of a series-backed pair; None for a pair that is not a series."""
    return tracked_text(fields) if is_series(fields) else None


def end_of(text: str, tz: str) -> datetime | None:
    """``tracked_text`` as an instant (UTC; an all-day date read in ``tz``); None for none."""
    if not text:
        return None
    if times.is_date(text):
        return times.parse_instant(times.date_start_instant(text, tz))
    return times.parse_instant(text)


def tracked_end(fields: Mapping[str, Any], tz: str) -> datetime | None:
    """When the occurrence a pair's fields describe ends (UTC; all-day dates read in ``tz``)."""
    return end_of(tracked_text(fields), tz)


def due_at(end: datetime | None, since: datetime | None, now: datetime) -> bool:
    """``due`` on a known end: it passed after the previous check (``since``) and by ``now``."""
    return end is not None and end <= now and (since is None or end > since)


def due(fields: Mapping[str, Any], since: datetime | None, now: datetime, tz: str) -> bool:
    """Should a linked series be read again to move on to its next occurrence?  Yes when the
    occurrence it stands for ended after the previous check (``since``) and by ``now``: once,
    so a series that has no later occurrence is not read again on every run."""
    return is_series(fields) and due_at(tracked_end(fields, tz), since, now)


def deletes_record(created_by_service: bool, end: datetime | None, now: datetime) -> bool:
    """A deleted series takes its Workbooks meeting with it when the service created that
    meeting from the series (the Outlook side was the user's: ``created_by_service`` False)
    and the occurrence it stands for has not ended: a future meeting that will not happen.
    A meeting that already took place is history, and a pair whose Workbooks meeting came
    first follows ``outlook_delete``."""
    return not created_by_service and end is not None and end > now


# ------------------------------------------------------------------------------ words


def describe(recurrence: Any) -> str:
    """A Graph ``patternedRecurrence`` in words, one line: "Every 2 weeks on Monday and
    Thursday, from 2030-01-07 until 2030-06-30."  Total: "" for no recurrence, "Repeats."
    for one it cannot read."""
    if not recurrence:
        return ""
    if not isinstance(recurrence, Mapping):
        return "Repeats."
    pattern = recurrence.get("pattern")
    rng = recurrence.get("range")
    what = _pattern_words(pattern) if isinstance(pattern, Mapping) else ""
    if not what:
        return "Repeats."
    span = _range_words(rng) if isinstance(rng, Mapping) else ""
    text = f"{what}{span}."
    return text[0].upper() + text[1:]


def _interval(pattern: Mapping[str, Any]) -> int:
    try:
        return max(int(pattern.get("interval") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _every(unit: str, n: int) -> str:
    return f"every {unit}" if n == 1 else f"every {n} {unit}s"


def _days(pattern: Mapping[str, Any], joiner: str) -> str:
    raw = pattern.get("daysOfWeek") or []
    days = {str(d).strip().lower() for d in raw if isinstance(d, str)}
    named = [d.capitalize() for d in _DAYS if d in days]
    if len(named) <= 1:
        return "".join(named)
    return f"{', '.join(named[:-1])} {joiner} {named[-1]}"


def _month(pattern: Mapping[str, Any]) -> str:
    try:
        month = int(pattern.get("month") or 0)
    except (TypeError, ValueError):
        return ""
    return _MONTHS[month - 1] if 1 <= month <= 12 else ""


def _pattern_words(pattern: Mapping[str, Any]) -> str:
    kind = str(pattern.get("type") or "")
    unit = _UNITS.get(kind)
    if unit is None:
        return ""
    every = _every(unit, _interval(pattern))
    index = str(pattern.get("index") or "first").lower()
    day_of_month = pattern.get("dayOfMonth")
    if kind == "daily":
        return every
    if kind == "weekly":
        days = _days(pattern, "and")
        return f"{every} on {days}" if days else every
    if kind == "absoluteMonthly":
        return f"{every} on day {day_of_month}" if day_of_month else every
    if kind == "relativeMonthly":
        days = _days(pattern, "or")
        return f"{every} on the {index} {days}" if days else every
    month = _month(pattern)
    if kind == "absoluteYearly":
        return f"{every} on {day_of_month} {month}" if day_of_month and month else every
    days = _days(pattern, "or")
    return f"{every} on the {index} {days} of {month}" if days and month else every


def _range_words(rng: Mapping[str, Any]) -> str:
    kind = str(rng.get("type") or "")
    start = str(rng.get("startDate") or "")
    begin = f", from {start}" if start else ""
    if kind == "endDate" and rng.get("endDate"):
        return f"{begin} until {rng['endDate']}"
    if kind == "numbered" and rng.get("numberOfOccurrences"):
        n = rng["numberOfOccurrences"]
        return f"{begin}, {n} time{'s' if str(n) != '1' else ''}"
    if kind == "noEnd":
        return f"{begin}, no end date"
    return begin


def with_note(body: str, recurrence: str) -> str:
    """A series-backed meeting's description text: its body, then the recurrence line."""
    if not recurrence:
        return body
    note = NOTE_PREFIX + recurrence
    return f"{body}\n\n{note}" if body else note


def split_note(text: str) -> tuple[str, str]:
    """The inverse of ``with_note``: (body, recurrence).  The last line that starts with the
    note's prefix is the recurrence, wherever the user's edits left it."""
    lines = text.split("\n")
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(NOTE_PREFIX):
            rest = [*lines[:i], *lines[i + 1 :]]
            body = "\n".join(rest).strip()
            while "\n\n\n" in body:
                body = body.replace("\n\n\n", "\n\n")
            return body, lines[i][len(NOTE_PREFIX) :].strip()
    return text, ""

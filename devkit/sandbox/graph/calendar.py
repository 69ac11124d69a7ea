"""Events as Graph serves them: single instances, series masters, and the occurrences and
exceptions a master expands into inside a calendarView window.  No HTTP here: routes and the
service call these functions; failures are `EventError` (a Graph status, code and message).

How Exchange models a series, as seen through Graph (sources in docs/graph.md):

* the master is the only stored item; occurrences are computed from its `recurrence`;
  exceptions (edited occurrences) and cancellations are kept inside the master, so editing or
  cancelling one occurrence changes the master: its changeKey, one `updated` notification for
  the master, and the whole series again in the next delta round;
* an occurrence's id is derived from the master's id and the occurrence's original date (public
  occurrence ids carry the master id and the date's ticks), so moving the series to other days
  gives new ids, while the old ones are never reported `@removed`;
* an exception keeps its occurrence's id and stores only the fields the user changed;
* in calendarView delta an occurrence is a stub (`@odata.type`, `@odata.etag`, `id`,
  `seriesMasterId`, `type`, `start`, `end`); the master's row carries the first occurrence's
  start/end and every property; exceptions come in full.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from devkit.sandbox.graph import recurrence
from devkit.sandbox.graph.state import ODATA_TYPES, Item, Series
from devkit.sandbox.graph.timezones import (
    format_dtz,
    iso_utc,
    parse_dtz,
    parse_wall,
    resolve_zone,
    zone_or_utc,
)
from devkit.sandbox.graph.wire import base_fields, finish

# Properties Graph computes; a write that names them does not change them.
READ_ONLY = frozenset(
    {
        "id",
        "@odata.type",
        "@odata.etag",
        "@odata.context",
        "changeKey",
        "type",
        "seriesMasterId",
        "originalStart",
        "originalStartTimeZone",
        "originalEndTimeZone",
        "iCalUId",
        "createdDateTime",
        "lastModifiedDateTime",
        "occurrenceId",
    }
)
VALIDATION_FAILED = "At least one property failed validation."
WINDOW_REQUIRED = (
    "This request requires a time window specified by the query string parameters "
    "StartDateTime and EndDateTime."
)
_OCC_SEP = "\x1f"
_ICAL_PREFIX = "040000008200E00074C5B7101A82E008"  # Outlook's GlobalObjectId class id
_EXTRA_DATES = 2  # pattern dates walked past a window: an exception may move up to one back


class EventError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Instance:
    """One occurrence of a series as Graph lists it (a plain occurrence or an exception)."""

    master: Item
    key: str  # original date in the series' time zone, YYYY-MM-DD
    original_start: datetime
    start: datetime
    end: datetime
    overrides: dict[str, Any] | None  # the exception's own fields; None for an occurrence

    @property
    def kind(self) -> str:
        return "occurrence" if self.overrides is None else "exception"


# --- windows ------------------------------------------------------------------------------------
def query_value(query: Mapping[str, str], name: str) -> str | None:
    """Graph's query parameter names are case-insensitive (`startdatetime` works too)."""
    for key, value in query.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_window(query: Mapping[str, str]) -> tuple[datetime, datetime]:
    """startDateTime/endDateTime of a calendarView as aware instants (no offset means UTC)."""
    raw = {n: query_value(query, n) for n in ("startDateTime", "endDateTime")}
    if not raw["startDateTime"] or not raw["endDateTime"]:
        raise EventError(400, "ErrorInvalidParameter", WINDOW_REQUIRED)
    bounds: list[datetime] = []
    for name, value in raw.items():
        try:
            moment = parse_wall(str(value))
        except ValueError as exc:
            message = f"The value '{value}' of parameter '{name}' is invalid."
            raise EventError(400, "ErrorInvalidParameter", message) from exc
        bounds.append(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    lo, hi = bounds
    if hi <= lo:
        raise EventError(
            400,
            "ErrorInvalidParameter",
            "The parameter 'EndDateTime' must be later than the parameter 'StartDateTime'.",
        )
    return lo, hi


def overlaps(start: datetime, end: datetime, lo: datetime, hi: datetime) -> bool:
    """calendarView semantics: an event touching the window's start is in it (graph.md)."""
    return start < hi and end >= lo


def single_span(item: Item) -> tuple[datetime, datetime] | None:
    start = parse_dtz(item.data.get("start"))
    if start is None:
        return None
    return start, parse_dtz(item.data.get("end")) or start


def in_view(item: Item, lo: datetime, hi: datetime) -> bool:
    """Does the event show in the window (a series: does any of its instances)?"""
    if item.series is not None:
        return bool(instances(item, lo, hi))
    span = single_span(item)
    return span is not None and overlaps(span[0], span[1], lo, hi)


# --- series expansion -----------------------------------------------------------------------------
def series_zone(item: Item) -> str:
    return str(item.data["recurrence"]["range"]["recurrenceTimeZone"])


def _pattern(item: Item, horizon: date) -> Iterator[tuple[str, datetime, datetime]]:
    """(key, start, end) of every date of the pattern up to `horizon`, cancelled ones too."""
    span = single_span(item)
    if span is None:
        return
    tz = zone_or_utc(series_zone(item))
    wall = span[0].astimezone(tz)
    length = span[1] - span[0]
    for day in recurrence.dates(item.data["recurrence"], horizon):
        start = datetime.combine(day, wall.time(), tzinfo=tz)
        yield day.isoformat(), start, start + length


def _instance(item: Item, key: str, start: datetime, end: datetime) -> Instance:
    assert item.series is not None
    overrides = item.series.exceptions.get(key)
    if overrides is None:
        return Instance(item, key, start, start, end, None)
    own_start = parse_dtz(overrides.get("start")) or start
    own_end = parse_dtz(overrides.get("end")) or own_start + (end - start)
    return Instance(item, key, start, own_start, own_end, overrides)


def instances(item: Item, lo: datetime, hi: datetime) -> list[Instance]:
    """Occurrences and exceptions of a series that show in [lo, hi), by original date."""
    if item.series is None:
        return []
    last = hi.astimezone(zone_or_utc(series_zone(item))).date()
    found: list[Instance] = []
    past = 0
    for key, start, end in _pattern(item, last + timedelta(days=3700)):
        if date.fromisoformat(key) > last:
            past += 1
            if past > _EXTRA_DATES:
                break
        if key in item.series.cancelled:
            continue
        inst = _instance(item, key, start, end)
        if overlaps(inst.start, inst.end, lo, hi):
            found.append(inst)
    return found


def find_instance(item: Item, key: str) -> Instance | None:
    """The instance with this original date, unless the pattern has no such date or the
    occurrence was cancelled."""
    if item.series is None or key in item.series.cancelled:
        return None
    try:
        horizon = date.fromisoformat(key)
    except ValueError:
        return None
    for day, start, end in _pattern(item, horizon):
        if day == key:
            return _instance(item, key, start, end)
    return None


def first_span(item: Item) -> tuple[datetime, datetime]:
    """Start and end of the pattern's first occurrence (what the master reports)."""
    for _key, start, end in _pattern(item, date.max):
        return start, end
    raise EventError(
        400,
        "ErrorRecurrenceHasNoOccurrence",
        "The recurrence pattern has no occurrence in its range.",
    )


def _neighbours(item: Item, key: str) -> tuple[str | None, str | None]:
    """Original dates of the occurrences before and after `key` (cancelled ones skipped)."""
    assert item.series is not None
    before: str | None = None
    horizon = date.fromisoformat(key) + timedelta(days=3700)
    seen = False
    for day, _start, _end in _pattern(item, horizon):
        if day in item.series.cancelled:
            continue
        if seen:
            return before, day
        if day == key:
            seen = True
            continue
        before = day
    return before, None


# --- ids ---------------------------------------------------------------------------------------
def occurrence_id(master_id: str, key: str) -> str:
    """Opaque, like Graph's; it encodes the master id and the original date."""
    raw = f"{master_id}{_OCC_SEP}{key.replace('-', '')}".encode()
    return "O" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def split_occurrence_id(value: str) -> tuple[str, str] | None:
    """(master id, original date) of an occurrence id; None for any other id."""
    if not value.startswith("O"):
        return None
    body = value[1:]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    master, sep, day = raw.rpartition(_OCC_SEP)
    if not sep or len(day) != 8 or not day.isdigit():
        return None
    return master, f"{day[:4]}-{day[4:6]}-{day[6:]}"


def ical_uid(immutable_id: str, key: str | None) -> str:
    """Outlook's GlobalObjectId shape: the instance date is zero for a master or single event
    and set for an occurrence, which is why each occurrence has its own iCalUId."""
    stamp = "00000000"
    if key:
        day = date.fromisoformat(key)
        stamp = f"{day.year:04X}{day.month:02X}{day.day:02X}"
    uid = hashlib.sha256(immutable_id.encode()).hexdigest()[:32].upper()
    return f"{_ICAL_PREFIX}{stamp}{'0' * 32}10000000{uid}"


# --- rendering -----------------------------------------------------------------------------------
def _zone_of(value: Any) -> str:
    return str(value.get("timeZone") or "UTC") if isinstance(value, dict) else "UTC"


def render_event(
    item: Item, *, immutable: bool, zone: str, select: str = "", expand: str = ""
) -> dict[str, Any]:
    """A single instance or series master; start/end in `zone`."""
    out = base_fields(item, immutable)
    data = item.data
    out["type"] = "seriesMaster" if item.series is not None else "singleInstance"
    out["seriesMasterId"] = None
    out["recurrence"] = data.get("recurrence")
    out["originalStartTimeZone"] = _zone_of(data.get("start"))
    out["originalEndTimeZone"] = _zone_of(data.get("end"))
    out["iCalUId"] = ical_uid(item.immutable_id, None)
    for name in ("start", "end"):
        moment = parse_dtz(data.get(name))
        if moment is not None:
            out[name] = format_dtz(moment, zone)
    return finish(out, item, select=select, expand=expand)


def render_instance(
    inst: Instance,
    *,
    immutable: bool,
    zone: str,
    select: str = "",
    expand: str = "",
    stub: bool = False,
) -> dict[str, Any]:
    """An occurrence or exception.  `stub`: the bare form calendarView delta uses for plain
    occurrences."""
    master = inst.master
    master_id = master.immutable_id if immutable else master.rest_id
    times = {"start": format_dtz(inst.start, zone), "end": format_dtz(inst.end, zone)}
    own_id = occurrence_id(master_id, inst.key)
    if stub:
        return {
            "@odata.type": ODATA_TYPES["event"],
            "@odata.etag": f'W/"{master.change_key}"',
            "id": own_id,
            "seriesMasterId": master_id,
            "type": inst.kind,
            **times,
        }
    out = base_fields(master, immutable)
    own = inst.overrides or {}
    out.update({k: v for k, v in own.items() if k not in ("start", "end", "_ext")})
    out.update(
        {
            "id": own_id,
            "type": inst.kind,
            "seriesMasterId": master_id,
            "recurrence": None,
            "originalStart": iso_utc(inst.original_start),
            "originalStartTimeZone": _zone_of(master.data.get("start")),
            "originalEndTimeZone": _zone_of(master.data.get("end")),
            "iCalUId": ical_uid(master.immutable_id, inst.key),
            **times,
        }
    )
    ext = {**master.ext, **own.get("_ext", {})}
    return finish(out, master, select=select, expand=expand, ext=ext)


def delta_rows(
    item: Item, lo: datetime, hi: datetime, *, immutable: bool, zone: str
) -> list[dict[str, Any]]:
    """One delta unit: the event, or a master followed by its instances in the window (a series
    is never split across pages)."""
    rows = [render_event(item, immutable=immutable, zone=zone)]
    for inst in instances(item, lo, hi):
        stub = inst.kind == "occurrence"
        rows.append(render_instance(inst, immutable=immutable, zone=zone, stub=stub))
    return rows


# --- writes --------------------------------------------------------------------------------------
def _check_times(data: Mapping[str, Any], strict: bool) -> None:
    moments: dict[str, datetime] = {}
    for name in ("start", "end"):
        if name not in data:
            continue
        value = data[name]
        if not strict:
            continue
        if not isinstance(value, dict) or not value.get("dateTime"):
            raise EventError(400, "ErrorPropertyValidationFailure", VALIDATION_FAILED)
        zone_name = str(value.get("timeZone") or "")
        if resolve_zone(zone_name) is None:
            raise EventError(
                400,
                "TimeZoneNotSupportedException",
                "A valid TimeZone value must be specified. The following TimeZone value is "
                f"not supported: '{zone_name}'.",
            )
        moment = parse_dtz(value)
        if moment is None:
            raise EventError(400, "ErrorPropertyValidationFailure", VALIDATION_FAILED)
        moments[name] = moment
    if strict and len(moments) == 2 and moments["end"] < moments["start"]:
        raise EventError(400, "ErrorPropertyValidationFailure", VALIDATION_FAILED)


def prepare_write(data: Mapping[str, Any], current: Item | None, *, strict: bool) -> dict[str, Any]:
    """An event body as it is stored: computed properties dropped, times checked (`strict`: as
    the API does; controls are lenient), `recurrence` validated into Graph's shape."""
    out = {k: v for k, v in data.items() if k not in READ_ONLY}
    _check_times(out, strict)
    if out.get("recurrence") is not None:
        start = out.get("start") or (current.data.get("start") if current else None)
        try:
            out["recurrence"] = recurrence.normalise(out["recurrence"], _zone_of(start))
        except recurrence.RecurrenceError as exc:
            raise EventError(
                400, "ErrorPropertyValidationFailure", f"{VALIDATION_FAILED} ({exc})"
            ) from exc
    return out


def check_result(current: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    """Refuse, before anything is stored, a write that would leave a series without any
    occurrence (so a refused write changes nothing)."""
    merged = {**current, **changes}
    if merged.get("recurrence"):
        first_span(Item("event", "", "", "", merged, series=Series()))


def signature(item: Item) -> tuple[Any, ...]:
    """What defines a series' occurrences: changing it discards exceptions, as Outlook does."""
    span = single_span(item)
    return (item.data.get("recurrence"), span)


def settle(item: Item, before: tuple[Any, ...] | None) -> None:
    """After a write: make the item a master (or not) and put the master's start/end on its
    first occurrence; a changed pattern or time drops exceptions and cancellations."""
    if not item.data.get("recurrence"):
        item.series = None
        return
    if item.series is None:
        item.series = Series()
    start, end = first_span(item)
    for name, moment in (("start", start), ("end", end)):
        zone_name = _zone_of(item.data.get(name) or item.data.get("start"))
        item.data[name] = format_dtz(moment, zone_name)
    if before is not None and before != signature(item):
        item.series = Series()


def edit_occurrence(master: Item, key: str, data: Mapping[str, Any], *, strict: bool) -> Instance:
    """PATCH of one occurrence: it becomes (or stays) an exception holding its own fields."""
    assert master.series is not None
    fields = {k: v for k, v in data.items() if k not in READ_ONLY}
    if "recurrence" in fields:
        raise EventError(400, "ErrorPropertyValidationFailure", VALIDATION_FAILED)
    _check_times(fields, strict)
    overrides = dict(master.series.exceptions.get(key, {}))
    ext = dict(overrides.get("_ext", {}))
    for prop in fields.pop("singleValueExtendedProperties", None) or []:
        if isinstance(prop, dict) and prop.get("id"):
            ext[str(prop["id"]).lower()] = str(prop.get("value", ""))
    overrides.update(fields)
    if ext:
        overrides["_ext"] = ext
    moved = parse_dtz(overrides.get("start"))
    if moved is not None:
        _check_boundary(master, key, moved)
    master.series.exceptions[key] = overrides
    found = find_instance(master, key)
    assert found is not None
    return found


def _check_boundary(master: Item, key: str, start: datetime) -> None:
    """Outlook: an occurrence cannot move to or before the previous occurrence's day, nor to or
    after the next one's (ErrorOccurrenceCrossingBoundary)."""
    day = start.astimezone(zone_or_utc(series_zone(master))).date().isoformat()
    before, after = _neighbours(master, key)
    if (before is not None and day <= before) or (after is not None and day >= after):
        raise EventError(
            400,
            "ErrorOccurrenceCrossingBoundary",
            "Modified occurrence is crossing or overlapping adjacent occurrence.",
        )


def cancel_occurrence(master: Item, key: str) -> None:
    """DELETE of one occurrence: it leaves the series (and any exception data with it)."""
    assert master.series is not None
    master.series.exceptions.pop(key, None)
    master.series.cancelled.add(key)

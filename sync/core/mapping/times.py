"""Time values on both sides, converted exactly (workbooks-api.md §2.5, graph.md §4.3-4.4).

Canonical forms, chosen so equal moments always compare equal as strings:

* an instant: ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds);
* a calendar date: ``YYYY-MM-DD`` (no zone: a date means the same day wherever it is read).

Workbooks ``var_date_time``: ``2023-06-28T09:30:00.000Z,1,Europe/London`` (flag 1: has a time,
the value is UTC) or ``2023-06-29,0,Europe/London`` (flag 0: a date).  We always *write* the full
explicit form, never a naive local time, because a naive time is read in the user's zone (§2.5).

Graph ``dateTimeTimeZone``: ``{"dateTime": "2023-06-28T10:30:00.0000000", "timeZone": "..."}``,
a wall-clock time in a zone that is UTC unless ``Prefer: outlook.timezone`` was sent; the zone
can be an IANA or a Windows name.  Local wall times are resolved with ``zoneinfo`` (tzdata), so
DST gaps and folds follow the zone rules (fold 0: the first of two repeated hours).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Windows zone names Graph may return, mapped to IANA (CLDR windowsZones, the common ones).
WINDOWS_ZONES: dict[str, str] = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "E. Europe Standard Time": "Europe/Chisinau",
    "GTB Standard Time": "Europe/Bucharest",
    "FLE Standard Time": "Europe/Kiev",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Atlantic Standard Time": "America/Halifax",
    "India Standard Time": "Asia/Kolkata",
    "China Standard Time": "Asia/Shanghai",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Singapore Standard Time": "Asia/Singapore",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "New Zealand Standard Time": "Pacific/Auckland",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Arabian Standard Time": "Asia/Dubai",
}

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FRACTION = re.compile(r"(\.\d+)")


def zone(name: str | None) -> ZoneInfo:
    """An IANA zone for an IANA or Windows name; unknown or empty names fall back to UTC."""
    key = WINDOWS_ZONES.get((name or "UTC").strip(), (name or "UTC").strip())
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def instant(value: datetime) -> str:
    """Canonical instant text for an aware datetime (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> datetime:
    """Canonical instant text -> aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def is_date(text: str) -> bool:
    return bool(_DATE.match(text))


def local_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive wall-clock time in ``tz`` -> aware UTC (nonexistent DST-gap times move forward
    by the gap, ambiguous fold times take the first occurrence, as zoneinfo does)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


# ----------------------------------------------------------------- Workbooks var_date_time


@dataclass(frozen=True)
class VarDateTime:
    """A parsed ``var_date_time``: ``value`` is a canonical instant or a canonical date."""

    value: str
    has_time: bool
    tz: str


def parse_var_date_time(text: Any, default_tz: str = "UTC") -> VarDateTime | None:
    """Workbooks ``var_date_time`` (or a plain ISO date / datetime) -> VarDateTime; blank -> None.

    A time without an explicit offset is read in ``default_tz`` (the user's zone), as the
    service itself does for naive input (§2.5)."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    raw = parts[0]
    if not raw:
        return None
    tz = parts[2] if len(parts) >= 3 and parts[2] else default_tz
    flag = parts[1] if len(parts) >= 2 else ""
    if is_date(raw) or flag == "0":
        return VarDateTime(raw[:10], False, tz)
    parsed = _parse_iso(raw, zone(tz))
    return VarDateTime(instant(parsed), True, tz)


def _parse_iso(raw: str, naive_zone: ZoneInfo) -> datetime:
    text = raw.replace(" ", "T", 1).replace("Z", "+00:00")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return local_to_utc(value, naive_zone)
    return value.astimezone(UTC)


def format_var_date_time(value: str, tz: str) -> str:
    """Canonical instant or date -> explicit ``var_date_time`` text (never a naive time)."""
    if is_date(value):
        return f"{value},0,{tz}"
    return f"{parse_instant(value).strftime('%Y-%m-%dT%H:%M:%S')}.000Z,1,{tz}"


# ----------------------------------------------------------------- Graph dateTimeTimeZone


def parse_graph_wall(value: dict[str, Any] | None) -> tuple[datetime, ZoneInfo] | None:
    """``{dateTime, timeZone}`` -> (naive wall-clock datetime, its zone); None when absent."""
    if not value or not value.get("dateTime"):
        return None
    text = _FRACTION.sub(lambda m: m.group(1)[:7], str(value["dateTime"]))
    wall = datetime.fromisoformat(text.replace("Z", ""))
    return wall.replace(tzinfo=None, microsecond=0), zone(value.get("timeZone"))


def graph_to_instant(value: dict[str, Any] | None) -> str:
    """``dateTimeTimeZone`` -> canonical instant ('' when absent)."""
    parsed = parse_graph_wall(value)
    if parsed is None:
        return ""
    return instant(local_to_utc(*parsed))


def graph_to_date(value: dict[str, Any] | None, tz: str) -> str:
    """``dateTimeTimeZone`` -> canonical date as seen in ``tz`` ('' when absent).

    To Do stores a due date as midnight in the zone it was set in; reading it in the mailbox's
    zone keeps the day the user sees, whatever zone Graph reports it in."""
    parsed = parse_graph_wall(value)
    if parsed is None:
        return ""
    wall, wall_zone = parsed
    if wall_zone.key == zone(tz).key or (wall.hour, wall.minute, wall.second) == (0, 0, 0):
        return wall.date().isoformat()
    return local_to_utc(wall, wall_zone).astimezone(zone(tz)).date().isoformat()


def instant_to_graph(value: str, tz: str) -> dict[str, str]:
    """Canonical instant -> ``dateTimeTimeZone`` as wall time in ``tz`` (so Outlook shows the
    user's local time and Graph resolves DST from the zone rules)."""
    moment, where = parse_instant(value), zone(tz)
    local = moment.astimezone(where)
    if local_to_utc(local.replace(tzinfo=None), where) != moment:
        # The repeated hour when clocks go back: a wall time there is ambiguous, so say UTC.
        local, where = moment, ZoneInfo("UTC")
    return {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": where.key}


def date_to_graph(value: str, tz: str) -> dict[str, str]:
    """Canonical date -> midnight of that day in ``tz`` (all-day events, To Do due dates)."""
    return {"dateTime": f"{value}T00:00:00.0000000", "timeZone": zone(tz).key}


def add_days(value: str, days: int) -> str:
    return (date.fromisoformat(value) + timedelta(days=days)).isoformat()


def instant_to_date(value: str, tz: str) -> str:
    """The calendar day a canonical instant falls on in ``tz``."""
    return parse_instant(value).astimezone(zone(tz)).date().isoformat()


def date_start_instant(value: str, tz: str) -> str:
    """Midnight at the start of a canonical date in ``tz``, as a canonical instant."""
    return instant(local_to_utc(datetime.fromisoformat(value), zone(tz)))

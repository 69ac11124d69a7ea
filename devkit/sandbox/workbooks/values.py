"""Wire formats of Workbooks values: datetimes, dates, var_date_time (workbooks-api.md §2.5)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

DATETIME_FORMAT = "%a %b %d %H:%M:%S UTC %Y"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class VarDateTime:
    """An activity time: a UTC instant with ``has_time`` or a bare date, plus an IANA zone."""

    when: datetime  # UTC; midnight when date-only
    has_time: bool
    tz: str = "Europe/London"

    def wire(self) -> str:
        if self.has_time:
            return f"{self.when.strftime('%Y-%m-%dT%H:%M:%S')}.000Z,1,{self.tz}"
        return f"{self.when.strftime('%Y-%m-%d')},0,{self.tz}"


@lru_cache(maxsize=1024)
def format_datetime(value: datetime, pattern: str | None = None) -> str:
    """Default ``Sun Sep 07 13:21:15 UTC 2025``; ``%s`` gives epoch seconds."""
    if pattern == "%s":
        return str(int(value.timestamp()))
    return value.astimezone(UTC).strftime(pattern or DATETIME_FORMAT)


def format_date(value: date) -> str:
    """``%e %b %Y``: the day is space-padded (`` 2 May 2010``)."""
    return f"{value.day:2d} {value.strftime('%b %Y')}"


def parse_when(text: str) -> tuple[datetime, datetime] | None:
    """A filter criterion as an inclusive (first, last) second range; a date means the whole day.

    Accepted: epoch seconds, ``YYYY-MM-DD``, ISO datetimes, and the default output format.
    """
    text = text.strip()
    if not text:
        return None
    if re.fullmatch(r"-?\d{9,11}", text):
        instant = datetime.fromtimestamp(int(text), UTC)
        return instant, instant
    if _ISO_DATE.match(text):
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day, day + timedelta(days=1, seconds=-1)
    parsed = parse_instant(text)
    return None if parsed is None else (parsed, parsed)


def parse_instant(text: str) -> datetime | None:
    """An instant in any accepted input format, truncated to whole seconds."""
    text = text.strip()
    for candidate in (text, text.replace("Z", "+00:00")):
        try:
            value = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # [INF] the sandbox's users all live in UTC
        return value.astimezone(UTC).replace(microsecond=0)
    try:
        return datetime.strptime(text, DATETIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        pass
    if re.fullmatch(r"-?\d{9,11}", text):
        return datetime.fromtimestamp(int(text), UTC)
    return None


def parse_var_date_time(text: str, *, date_only: bool = False) -> VarDateTime | None:
    """``2023-06-28T09:30:00.000Z,1,Europe/London``, a date, or any accepted datetime."""
    parts = text.split(",")
    tz = parts[2] if len(parts) == 3 else "Europe/London"
    value = parts[0].strip()
    if len(parts) == 3 and parts[1].strip() == "0":
        date_only = True
    if _ISO_DATE.match(value) or date_only:
        span = parse_when(value)
        return None if span is None else VarDateTime(span[0], has_time=False, tz=tz)
    instant = parse_instant(value)
    return None if instant is None else VarDateTime(instant, has_time=True, tz=tz)

"""Timer schedules: six-field NCRONTAB (seconds first, UTC) or a TimeSpan interval."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from devkit.host.config import parse_timespan

_TIMESPAN = re.compile(r"^(?:\d+\.)?\d{1,2}:\d{1,2}:\d{1,2}$")


class ScheduleError(ValueError):
    """Not a schedule the host understands."""


@dataclass(frozen=True)
class Schedule:
    expression: str
    interval: timedelta | None = None  # TimeSpan schedules ("00:05:00")

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        text = expression.strip()
        if _TIMESPAN.match(text):
            seconds = parse_timespan(text)
            if seconds <= 0:
                raise ScheduleError(f"timer interval must be positive: {expression!r}")
            return cls(text, timedelta(seconds=seconds))
        if len(text.split()) != 6:
            raise ScheduleError(
                f"expected a six-field NCRONTAB expression (seconds first), got {expression!r}"
            )
        try:
            # croniter's default reads a 6th field as *seconds at the end*; NCRONTAB has them
            # first. Without this flag '0 */5 * * * *' means "every second of minute 0".
            croniter(text, datetime.now(UTC), second_at_beginning=True)
        except (ValueError, KeyError) as exc:
            raise ScheduleError(f"invalid NCRONTAB expression {expression!r}: {exc}") from None
        return cls(text)

    def next_after(self, moment: datetime) -> datetime:
        """First occurrence strictly after ``moment`` (UTC)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if self.interval is not None:
            return moment + self.interval
        nxt = croniter(self.expression, moment, second_at_beginning=True).get_next(datetime)
        assert isinstance(nxt, datetime)
        return nxt.astimezone(UTC)

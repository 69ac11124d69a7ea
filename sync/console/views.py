"""Rendering: one Jinja2 environment with autoescaping on for every template, so every value
from Outlook or Workbooks (subjects, names, addresses, error texts) is shown as text; and the
small filters the templates share (times, record names, words for statuses).

``StrictUndefined``: a template that names a missing value fails its test instead of showing an
empty cell in production.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sync.core.email_linking import RecordRef

from .health import STREAM_LABELS, Health

if TYPE_CHECKING:  # imported on first render, not on the webhook's import path
    import jinja2

KINDS = {
    "Private::Crm::Person": "Person",
    "Private::Crm::SalesLead": "Sales Lead",
    "Private::Crm::Organisation": "Organisation",
    "Private::Crm::Case": "Case",
    "Private::Crm::Opportunity": "Opportunity",
}
HEALTH_WORDS = {
    Health.OK: "Syncing normally",
    Health.FAILING: "Needs attention",
    Health.PAUSED: "Paused",
    Health.NEVER: "Not synced yet",
    Health.BRAKE: "Held back by the safety brake",
}
EMAIL_STATES = {
    "linked": "Filed in Workbooks",
    "not_shared": "Not shared (no Workbooks category)",
    "no_match": "No matching Person or Sales Lead",
    "excluded": "Only internal or blocked recipients",
    "pending": "Waiting to be processed",
    "failed": "Could not be filed",
}


def when(value: datetime | None, now: datetime | None = None) -> str:
    """'5 minutes ago', 'in 3 hours', 'never'."""
    if value is None:
        return "never"
    now = now or datetime.now(UTC)
    seconds = int((now - value).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"


def utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else ""


def record_name(key: str) -> str:
    """``Private::Crm::Case:12`` -> ``Case 12``."""
    try:
        ref = RecordRef.from_key(key)
    except ValueError:
        return key
    return f"{KINDS.get(ref.record_type, ref.record_type.rsplit('::', 1)[-1])} {ref.record_id}"


def kind(record_type: str) -> str:
    return KINDS.get(record_type, record_type.rsplit("::", 1)[-1])


def url_part(value: str) -> str:
    return quote(value, safe="@")


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items()) if v) or "-"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sync.console", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        utc=utc,
        iso=iso,
        record_name=record_name,
        kind=kind,
        url_part=url_part,
        counts_text=counts_text,
    )
    env.globals.update(
        HEALTH_WORDS={h.value: w for h, w in HEALTH_WORDS.items()},
        EMAIL_STATES=EMAIL_STATES,
        STREAM_LABELS=STREAM_LABELS,
        BASE="/api/console",
    )
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)

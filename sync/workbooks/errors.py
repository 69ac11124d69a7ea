"""The one place where Workbooks failures become the shared error types (sync/core/errors.py).

The engine acts on the type alone; status codes, ``failure_reason`` values and the stale-lock
sentence never leave this module.  Server text is kept in ``detail`` for diagnostics; it never
contains credentials because the API does not echo them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sync.core.backoff import retry_after_seconds
from sync.core.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ReauthRequired,
    RetryLater,
    SyncError,
)

SOURCE = "workbooks"
STALE_MARKER = "updated elsewhere"  # §3.7: classify conflicts by text, case-insensitively
# §8 q3: the text for a missing or hidden record is not documented.  Workbooks is a Rails
# service, and Rails' ``find`` raises "Couldn't find <Class> with id=<n>" (and, since Rails 5,
# "with 'id'=<n>"); the other phrasings are the generic ones.
NOT_FOUND_MARKERS = (
    "not found",
    "could not be found",
    "couldn't find",
    "could not find",
    "does not exist",
)
# 403 login reasons that clear up by themselves (§1.6)
TRANSIENT_REASONS = frozenset({"database_archived", "database_being_migrated"})


def failure_texts(body: dict[str, Any]) -> list[str]:
    """Every human-readable failure in a response: ``failures``, ``errors`` and per-object."""
    texts = [str(f) for f in body.get("failures") or []]
    texts += _error_texts(body.get("errors"))
    for info in body.get("affected_object_information") or []:
        if isinstance(info, dict):
            texts += _error_texts(info.get("errors"))
    return texts


def _error_texts(errors: object) -> list[str]:
    if isinstance(errors, dict):
        out: list[str] = []
        for value in errors.values():
            out += _error_texts(value) if isinstance(value, dict | list) else [str(value)]
        return out
    if isinstance(errors, list):
        return [str(e) for e in errors]
    return []


def classify_texts(texts: list[str], message: str) -> SyncError:
    """An application failure (HTTP 200, ``success:false``) by its text."""
    joined = "; ".join(texts) or message
    lowered = joined.lower().replace("\u2019", "'")  # a typographic apostrophe reads the same
    if STALE_MARKER in lowered:
        return Conflict(message, source=SOURCE, detail=joined)
    if any(marker in lowered for marker in NOT_FOUND_MARKERS):
        return NotFound(message, source=SOURCE, detail=joined)
    if "database error" in lowered:  # server-side exception with a support reference
        return RetryLater(message, source=SOURCE, detail=joined)
    return InvalidRequest(message, source=SOURCE, detail=joined)


def from_status(
    status: int, body: dict[str, Any] | None, text: str, what: str, retry_after: str | None = None
) -> SyncError:
    """A non-200 answer.  Bodies may not be JSON, so ``text`` is kept as the detail."""
    reason = str((body or {}).get("failure_reason") or "")
    detail = f"HTTP {status} {reason} {text[:500]}".strip()
    message = f"{what}: HTTP {status}" + (f" ({reason})" if reason else "")
    if status == 429 or status >= 500:
        return RetryLater(message, retry_at=_retry_at(retry_after), source=SOURCE, detail=detail)
    if status == 403 and reason in TRANSIENT_REASONS:
        return RetryLater(message, source=SOURCE, detail=detail)
    if status in (401, 403):
        return ReauthRequired(message, source=SOURCE, detail=detail)
    if status == 404:
        return NotFound(message, source=SOURCE, detail=detail)
    return InvalidRequest(message, source=SOURCE, detail=detail)


def no_session() -> ReauthRequired:
    """A 200 login answer that names no session."""
    return ReauthRequired("login returned no session", source=SOURCE)


def session_rejected(what: str) -> ReauthRequired:
    """Still sent to the login page after fresh logins: the key no longer opens a session."""
    return ReauthRequired(f"{what}: session rejected after re-login", source=SOURCE)


def not_json(what: str, text: str) -> InvalidRequest:
    """A 200 answer whose body is not a JSON object."""
    return InvalidRequest(f"{what}: answer is not JSON", source=SOURCE, detail=text[:500])


def throttled(what: str, attempts: int) -> RetryLater:
    return RetryLater(
        f"{what}: still throttled after {attempts} attempts",
        source=SOURCE,
        detail="302 redirects on every replay",
    )


def transport(what: str, exc: BaseException) -> RetryLater:
    """Timeouts and connection failures: transient by nature."""
    return RetryLater(f"{what}: {type(exc).__name__}", source=SOURCE, detail=str(exc)[:500])


def _retry_at(header: str | None) -> datetime | None:
    seconds = retry_after_seconds(header)
    return None if seconds is None else datetime.now(UTC) + timedelta(seconds=seconds)

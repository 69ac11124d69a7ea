"""The one place where Graph failures become `sync.core.errors` types.

Inputs are plain (status, headers, body bytes) or a transport exception, so this module needs
neither the SDK nor a live response.  Rules (graph.md §2.6, §3.2, §1.11):

    410, or code syncStateNotFound / resyncRequired  -> ResyncRequired (drop the delta link)
    429, 503, 504, other 5xx, 408, transport errors  -> RetryLater (retry_at from Retry-After)
    401, 403, token acquisition rejected             -> ReauthRequired (token or permission;
                                                        a 401's WWW-Authenticate error/claims
                                                        are in the text)
    token endpoint 400 (invalid_client, ...)         -> ReauthRequired
    404                                              -> NotFound
    409, 412                                         -> Conflict
    other 4xx                                        -> InvalidRequest
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from sync.core.backoff import retry_after_seconds
from sync.core.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ReauthRequired,
    ResyncRequired,
    RetryLater,
    SyncError,
)

RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
SOURCE = "graph"


def graph_error_code(body: bytes) -> tuple[str, str]:
    """(code, message) from Graph's `{"error": {"code", "message"}}`; empty when absent."""
    try:
        payload = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "", body[:200].decode("utf-8", "replace")
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", "")), str(error.get("message", ""))[:500]
    if isinstance(error, str):  # token endpoint style: {"error": "invalid_client", ...}
        return error, str(payload.get("error_description", ""))[:500]
    return "", ""


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After as delta-seconds or an HTTP date -> absolute time."""
    if not value:
        return None
    value = value.strip()
    seconds = retry_after_seconds(value)
    if seconds is not None:
        return now + timedelta(seconds=seconds)
    if value.isdigit() or len(value) > 64:  # too many digits, or no HTTP date at all
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# An auth-param of a WWW-Authenticate challenge: name="quoted value" or name=token (RFC 9110).
_AUTH_PARAM = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
CHALLENGE_PARAMS = ("error", "error_description", "claims")  # what an operator can act on
MESSAGE_CHARS = 200  # of Graph's own message, in the error's text


def parse_challenge(value: str | None) -> dict[str, str]:
    """The auth-params of a ``WWW-Authenticate: Bearer ...`` challenge (lower-case names).
    Graph answers every 401 with one (``realm``, ``authorization_uri``, ``client_id``); a
    Continuous Access Evaluation challenge adds ``error="insufficient_claims"`` and
    ``claims`` (base64 JSON naming what the token lacks)."""
    if not value:
        return {}
    return {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3) or "")
        for m in _AUTH_PARAM.finditer(value[:4096])
    }


def _claims_text(claims: str) -> str:
    """A challenge's ``claims`` as JSON when it is base64 JSON, else as sent (shortened)."""
    try:
        text = base64.b64decode(claims + "=" * (-len(claims) % 4), validate=True).decode()
        json.loads(text)
    except (ValueError, UnicodeDecodeError):
        text = claims
    return text[:300]


def challenge_text(headers: Mapping[str, str]) -> str:
    """What a 401's challenge adds, e.g. ``error=insufficient_claims, claims={...}``;
    empty when it names no error (Graph's plain challenge says only where tokens come from)."""
    params = parse_challenge(headers.get("WWW-Authenticate") or headers.get("www-authenticate"))
    found = []
    for name in CHALLENGE_PARAMS:
        value = params.get(name, "")
        if value:
            found.append(f"{name}={_claims_text(value) if name == 'claims' else value[:300]}")
    return ", ".join(found)


def from_response(
    status: int, headers: Mapping[str, str], body: bytes, *, now: datetime
) -> SyncError:
    code, message = graph_error_code(body)
    detail = f"{status} {code}: {message}".strip()
    text = f"Graph answered {status} {code}".strip()
    if status == 410 or code.lower() in RESYNC_CODES:
        return ResyncRequired(text, source=SOURCE, detail=detail)
    if status in (408, 429) or status >= 500:
        retry_at = parse_retry_after(headers.get("Retry-After"), now)
        return RetryLater(text, retry_at=retry_at, source=SOURCE, detail=detail)
    # What the caller must fix is in Graph's message ("Access to OData is disabled.", "This
    # request requires a time window ..."): it goes into the text the status shows.
    if message:
        text = f"{text}: {message[:MESSAGE_CHARS]}"
    if status == 401:
        challenge = challenge_text(headers)
        if challenge:
            text, detail = f"{text} (challenge: {challenge})", f"{detail} (challenge: {challenge})"
        return ReauthRequired(text, source=SOURCE, detail=detail)
    if status == 403:
        return ReauthRequired(text, source=SOURCE, detail=detail)
    if status == 404:
        return NotFound(text, source=SOURCE, detail=detail)
    if status in (409, 412):
        return Conflict(text, source=SOURCE, detail=detail)
    return InvalidRequest(text, source=SOURCE, detail=detail)


def from_token_response(
    status: int, headers: Mapping[str, str], body: bytes, *, now: datetime
) -> SyncError:
    """A token endpoint refusal: 400/401 mean the client credentials were rejected."""
    error = from_response(status, headers, body, now=now)
    if status in (400, 401):
        return ReauthRequired("token request rejected", source=SOURCE, detail=error.detail)
    return error


def was_throttled(error: RetryLater) -> bool:
    """A 429: Graph refused the request before executing it (`detail` starts with the status
    by construction in `from_response`)."""
    return error.source == SOURCE and error.detail.startswith("429 ")


def from_transport(exc: Exception) -> RetryLater:
    """Connection resets, timeouts, protocol errors: always worth another try later."""
    return RetryLater(f"Graph unreachable: {type(exc).__name__}", source=SOURCE, detail=str(exc))


def from_credential_failure(exc: Exception, *, rejected: bool) -> SyncError:
    """azure-identity failed to get a token: rejected credentials need an operator; a token
    endpoint we could not reach is transient."""
    if rejected:
        return ReauthRequired("Graph token request rejected", source=SOURCE, detail=str(exc)[:500])
    return from_transport(exc)

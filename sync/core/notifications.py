"""Parsing Graph webhook requests, without I/O.

Graph POSTs a ``changeNotificationCollection`` (``{"value": [...]}``); one POST may mix items of
several subscriptions.  There is no SDK model for it (msgraph-sdk-python#1322), and the webhook
must not import the SDK anyway, so the shape is checked here by hand.  Everything that arrives
is untrusted: the mailbox is never taken from ``resource`` (Graph sends GUIDs in varying case
and shape there) but from our stored subscription record, looked up by ``subscriptionId``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
MAX_ITEMS = 1000  # Graph batches far fewer; more is not a Graph request


class BadRequest(ValueError):
    """The request is not something Graph sends; answer 4xx without touching state."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class NotificationItem:
    subscription_id: str
    client_state: str
    change_type: str
    resource_id: str
    lifecycle_event: str | None


def check_validation_token(token: str, max_chars: int) -> str:
    """The token to echo, or BadRequest. Graph's token is opaque; we only insist that it is a
    plain printable string of sane length, since we echo it back verbatim as text/plain."""
    if not token:
        raise BadRequest(400, "empty validationToken")
    if len(token) > max_chars:
        raise BadRequest(400, f"validationToken longer than {max_chars} characters")
    if not token.isprintable():
        raise BadRequest(400, "validationToken must be a plain printable string")
    return token


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise BadRequest(415, "notifications must be sent as application/json")


def parse_collection(body: bytes, max_bytes: int) -> list[NotificationItem]:
    """Parse and shape-check a notification body. Items missing a subscriptionId are skipped
    (counted by the caller as dropped); a body that is not a collection at all is a 400."""
    if len(body) > max_bytes:
        raise BadRequest(413, f"body larger than {max_bytes} bytes")
    try:
        payload: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest(400, "body is not valid JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("value"), list):
        raise BadRequest(400, "body must be an object with a 'value' array")
    raw_items: list[Any] = payload["value"]
    if len(raw_items) > MAX_ITEMS:
        raise BadRequest(413, f"more than {MAX_ITEMS} notifications in one request")
    return [item for raw in raw_items if (item := _item(raw)) is not None]


def _str(raw: dict[str, Any], key: str, limit: int = 1024) -> str:
    value = raw.get(key)
    return value[:limit] if isinstance(value, str) else ""


def _item(raw: Any) -> NotificationItem | None:
    if not isinstance(raw, dict):
        return None
    sub = _str(raw, "subscriptionId", 128)
    if not sub:
        return None
    data = raw.get("resourceData")
    resource_id = _str(data, "id") if isinstance(data, dict) else ""
    event = _str(raw, "lifecycleEvent", 64) or None
    return NotificationItem(
        subscription_id=sub,
        client_state=_str(raw, "clientState", 256),
        change_type=_str(raw, "changeType", 64),
        resource_id=resource_id,
        lifecycle_event=event,
    )

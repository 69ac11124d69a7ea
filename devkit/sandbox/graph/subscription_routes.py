"""`/v1.0/subscriptions`: create (with the validation handshake), renew, delete, list,
reauthorize.  Limits follow graph.md §1.3–§1.11."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from devkit.sandbox.graph import permissions
from devkit.sandbox.graph.service import Sandbox
from devkit.sandbox.graph.state import (
    CALENDAR,
    DEFAULT_CONTACT_FOLDER,
    Kind,
    Subscription,
    iso,
    utcnow,
)
from devkit.sandbox.graph.wire import GraphFailure, split_path, wants_immutable
from devkit.sandbox.graph.wire import json_body as _body

SUB_NOT_FOUND = (404, "ResourceNotFound", "The object was not found.")


def parse_resource(sb: Sandbox, resource: str) -> tuple[str, Kind, str]:
    """Resource path -> (mailbox user id, kind, container key or '*')."""
    segs = split_path(resource)
    low = [s.lower() for s in segs]
    if len(segs) < 3 or low[0] not in ("users", "me"):
        raise GraphFailure(400, "InvalidRequest", f"Resource '{resource}' is not supported.")
    box = sb.state.mailbox(segs[1])
    if box is None:
        raise GraphFailure(404, "ResourceNotFound", "The user or mailbox was not found.")
    rest = low[2:]
    if rest == ["messages"]:
        return box.user_id, "message", "*"
    if len(rest) == 3 and rest[0] == "mailfolders" and rest[2] == "messages":
        return box.user_id, "message", f"message:{segs[3]}"
    if rest == ["contacts"]:
        return box.user_id, "contact", f"contact:{DEFAULT_CONTACT_FOLDER}"
    if len(rest) == 3 and rest[0] == "contactfolders" and rest[2] == "contacts":
        return box.user_id, "contact", f"contact:{segs[3]}"
    if rest == ["events"]:
        return box.user_id, "event", f"event:{CALENDAR}"
    if rest[:2] == ["todo", "lists"] and rest[-1] == "tasks":
        # graph.md §1.2: app-only subscriptions to todoTask are not supported.
        raise GraphFailure(
            403,
            "ExtensionError",
            "Operation: Create; Exception: [Status Code: Forbidden; Reason: Subscriptions to "
            "todoTask are not supported with application permissions.]",
        )
    raise GraphFailure(400, "InvalidRequest", f"Resource '{resource}' is not supported.")


def _expiry(sb: Sandbox, kind: Kind, value: Any) -> datetime:
    try:
        requested = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise GraphFailure(400, "InvalidRequest", "expirationDateTime is invalid.") from exc
    if requested.tzinfo is None:
        raise GraphFailure(400, "InvalidRequest", "expirationDateTime must carry a time zone.")
    now = utcnow()
    maximum = sb.config.max_subscription_minutes[kind]
    if requested > now + timedelta(minutes=maximum, seconds=30):
        # Live Graph's answer (quoted by public clients): 400 ExtensionError with this text.
        raise GraphFailure(
            400,
            "ExtensionError",
            f"Subscription expiration can only be {maximum} minutes in the future.",
        )
    # Less than 45 minutes ahead is silently raised to now + 45 min (graph.md §1.3).
    return max(requested, now + timedelta(minutes=sb.config.min_subscription_minutes))


def _json(sub: Subscription, tenant: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.subscription",
        "id": sub.id,
        "resource": sub.resource,
        "changeType": sub.change_type,
        "clientState": sub.client_state,
        "notificationUrl": sub.notification_url,
        "lifecycleNotificationUrl": sub.lifecycle_url,
        "expirationDateTime": iso(sub.expires),
        "applicationId": "sandbox-app",
        "creatorId": "sandbox-app",
        "includeResourceData": False,
        "tenantId": tenant,
    }


def _live(sb: Sandbox, sub_id: str) -> Subscription:
    sub = sb.state.subscriptions.get(sub_id)
    if sub is None:
        raise GraphFailure(*SUB_NOT_FOUND)
    if sub.expires <= utcnow():  # expired subscriptions are gone for good
        del sb.state.subscriptions[sub_id]
        raise GraphFailure(*SUB_NOT_FOUND)
    return sub


async def _create(sb: Sandbox, request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    for key in ("resource", "changeType", "notificationUrl", "expirationDateTime"):
        if not body.get(key):
            raise GraphFailure(400, "InvalidRequest", f"The property '{key}' is required.")
    notification_url = str(body["notificationUrl"])
    lifecycle_url = body.get("lifecycleNotificationUrl")
    if not re.match(r"^https?://", notification_url):
        raise GraphFailure(400, "InvalidRequest", "notificationUrl must be an absolute URL.")
    client_state = body.get("clientState")
    if client_state is not None and len(str(client_state)) > 128:
        raise GraphFailure(400, "InvalidRequest", "clientState must be at most 128 characters.")
    mailbox, kind, container = parse_resource(sb, str(body["resource"]))
    box = sb.state.mailboxes[mailbox]
    roles = request.get(permissions.ROLES_KEY, frozenset())
    permissions.check_subscription(kind, roles, sb.config.access_policy, box.upn, box.user_id)
    expires = _expiry(sb, kind, body["expirationDateTime"])
    for url in [notification_url] + ([str(lifecycle_url)] if lifecycle_url else []):
        problem = await sb.notifier.validate(url)
        if problem:
            raise GraphFailure(400, "ValidationError", problem)
    sub = Subscription(
        id=str(uuid.uuid4()),
        resource=str(body["resource"]),
        change_type=str(body["changeType"]),
        notification_url=notification_url,
        lifecycle_url=str(lifecycle_url) if lifecycle_url else None,
        client_state=str(client_state) if client_state is not None else None,
        expires=expires,
        mailbox=mailbox,
        container=container,
        kind=kind,
        immutable_ids=wants_immutable(request),
    )
    sb.state.subscriptions[sub.id] = sub
    return web.json_response(_json(sub, sb.state.tenant_id), status=201)


async def handle(sb: Sandbox, request: web.Request, segs: list[str]) -> web.StreamResponse:
    method = request.method
    if len(segs) == 1:
        if method == "POST":
            return await _create(sb, request)
        if method == "GET":
            now = utcnow()
            subs = [s for s in sb.state.subscriptions.values() if s.expires > now]
            return web.json_response({"value": [_json(s, sb.state.tenant_id) for s in subs]})
    elif len(segs) == 2:
        sub = _live(sb, segs[1])
        if method == "GET":
            return web.json_response(_json(sub, sb.state.tenant_id))
        if method == "DELETE":
            del sb.state.subscriptions[sub.id]
            return web.Response(status=204)
        if method == "PATCH":
            body = await _body(request)
            if "expirationDateTime" in body:
                sub.expires = _expiry(sb, sub.kind, body["expirationDateTime"])
            if body.get("notificationUrl"):
                sub.notification_url = str(body["notificationUrl"])
            return web.json_response(_json(sub, sb.state.tenant_id))
    elif len(segs) == 3 and segs[2].lower() == "reauthorize" and method == "POST":
        _live(sb, segs[1])
        return web.Response(status=204)
    raise GraphFailure(405, "ErrorInvalidRequest", "The OData request is not supported.")

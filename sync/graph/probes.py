"""Live reads for ``doctor``: the app's token and the application permissions in it, the
mailbox, one small read per stream, the mailbox's Outlook settings.

Each read answers a ``sync.core.doctor.Probe`` (what it found, or Graph's refusal); a Graph
error never escapes, and ``sync.core.doctor`` decides what each answer means.  The reads are
the cheapest that exercise the same permission and mailbox scope as the service's own: one
item (``$top=1&$select=id``) of Sent Items, the contacts, a one-day calendarView and the
default To Do list.  Nothing is written here (the webhook's test subscription is
``sync.engine.subscriptions.handshake_test``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

from sync.core.doctor import Probe
from sync.core.errors import SyncError
from sync.graph import paths
from sync.graph.client import UTC_TIMEZONE, iso_utc
from sync.graph.items import checked_window

if TYPE_CHECKING:
    from sync.graph.client import GraphClient

# What ``sync.graph.errors`` puts in a Graph error's detail: "<status> <code>: <message>".
_DETAIL = re.compile(r"^(\d{3})\s+([^:\s]*):?\s*(.*)$", re.DOTALL)
ONE = "$top=1&$select=id"  # the least a list read can ask for


def failure(exc: SyncError) -> Probe:
    """A Graph error as a probe's answer (status, code and message when Graph sent them)."""
    found = _DETAIL.match(exc.detail or "")
    if found is None:
        return Probe(False, message=str(exc)[:300])
    return Probe(False, status=int(found[1]), code=found[2], message=found[3][:300])


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, read without verifying its signature: the token came straight from
    the token endpoint over TLS, and only the claims we asked for are read (``roles``).  None
    when the token is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


async def token(graph: GraphClient) -> tuple[Probe, dict[str, Any] | None]:
    """A token for Graph from the app's own credential, and its claims."""
    credential = graph.token_credential
    if credential is None:
        return Probe(False, message="no credential configured"), None
    try:
        access = await credential.get_token(graph.settings.scope)
    except SyncError as exc:
        return failure(exc), None
    except ClientAuthenticationError as exc:
        from azure.identity import CredentialUnavailableError

        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        unavailable = isinstance(exc, CredentialUnavailableError)
        return Probe(False, message=text, unavailable=unavailable), None
    except ServiceRequestError as exc:
        return Probe(False, message=f"token endpoint unreachable: {type(exc).__name__}"), None
    return Probe(True), jwt_claims(access.token)


async def _read(
    graph: GraphClient, mailbox: str, url: str, prefer: tuple[str, ...] = ()
) -> tuple[Probe, dict[str, Any]]:
    try:
        if prefer:
            resp = await graph.request("GET", url, mailbox=mailbox, prefer=prefer)
        else:
            resp = await graph.request("GET", url, mailbox=mailbox)
    except SyncError as exc:
        return failure(exc), {}
    body = resp.json()
    return Probe(True), body if isinstance(body, dict) else {}


async def mailbox(graph: GraphClient, user: str) -> Probe:
    """The mailbox itself: its Sent Items folder (Mail.Read, and the mailbox in the app's
    Exchange scope)."""
    url = f"{paths.mail_folder_path(user, 'sentitems')}?$select=id,totalItemCount"
    probe, body = await _read(graph, user, url)
    if probe.ok and isinstance(body.get("totalItemCount"), int):
        return Probe(True, note=f" (Sent Items holds {body['totalItemCount']} messages)")
    return probe


async def _todo(graph: GraphClient, user: str) -> Probe:
    """The default To Do list (``wellknownListName: defaultList``) and one of its tasks."""
    probe, body = await _read(graph, user, paths.todo_lists_path(user))
    if not probe.ok:
        return probe
    lists = [e for e in body.get("value", []) if isinstance(e, dict)]
    chosen = next((e for e in lists if e.get("wellknownListName") == "defaultList"), None)
    chosen = chosen or (lists[0] if lists else None)
    if chosen is None:
        return Probe(True, note=" (no list yet: the service creates 'Tasks')")
    tasks = f"{paths.todo_tasks_path(user, str(chosen.get('id')))}?{ONE}"
    probe, _body = await _read(graph, user, tasks)
    name = chosen.get("displayName") or chosen.get("id")
    return Probe(True, note=f" (list '{name}')") if probe.ok else probe


async def _settings(graph: GraphClient, user: str) -> Probe:
    probe, body = await _read(graph, user, paths.time_zone_path(user))
    value = body.get("value")
    return Probe(True, note=f" (time zone {value!r})") if probe.ok and value else probe


async def _one(graph: GraphClient, user: str, url: str, prefer: tuple[str, ...] = ()) -> Probe:
    return (await _read(graph, user, url, prefer))[0]


async def streams(
    graph: GraphClient, user: str, now: datetime, *, settings: bool = True
) -> dict[str, Probe]:
    """One read per stream the service syncs (and the Outlook settings when ``settings``)."""
    lo, hi = checked_window(now, now + timedelta(days=1))
    view = f"{paths.calendar_view_path(user, iso_utc(lo), iso_utc(hi))}&{ONE}"
    sent, contacts, calendar, todo = await asyncio.gather(
        _one(graph, user, f"{paths.folder_messages_path(user, 'sentitems')}?{ONE}"),
        _one(graph, user, f"{paths.contacts_path(user)}?{ONE}"),
        _one(graph, user, view, (UTC_TIMEZONE,)),
        _todo(graph, user),
    )
    out = {"sent": sent, "contacts": contacts, "calendar": calendar, "todo": todo}
    if settings:
        out["settings"] = await _settings(graph, user)
    return out

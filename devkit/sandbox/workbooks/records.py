"""Type-specific rules of writes: validation before an object is saved, and side effects after
(email sending, the email-link strategies, webhook subscription secrets).

``writes`` stays generic; everything that depends on one record type or on an [INF] strategy
of ``SandboxConfig`` is here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .types import (
    LINK_TARGETS,
    LINKED_IDS,
    LINKED_TYPES,
    TRIGGERS_BY_ID,
    WEBHOOK_PATH,
    RecordType,
)

if TYPE_CHECKING:
    from .store import Record, SandboxState
    from .writes import Journal

EMAILS = "email/emails"
NULL_VALUE = ":null_value:"
NOT_INCLUDED = "is not included in the list"  # Rails' inclusion message


def parse_array(text: str) -> list[str] | None:
    """``"[a, b]"`` -> ``['a', 'b']`` (§2.5 array datatype); None when not an array."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    inner = text[1:-1].strip()
    if not inner:
        return []
    return [part.strip().strip("'\"") for part in inner.split(",")]


def wire_array(values: list[Any]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


# ---------------------------------------------------------------- validation


def validate(state: SandboxState, rtype: RecordType, given: dict[str, str]) -> dict[str, list[str]]:
    """Per-object errors of the values an object sets (an empty dict when it may be saved)."""
    errors: dict[str, list[str]] = {}
    for name, picklist in state.schema.restricted_columns(rtype).items():
        value = given.get(name)
        if value not in (None, NULL_VALUE, "") and value not in state.picklist_values(picklist):
            errors[name] = [NOT_INCLUDED]
    if rtype.endpoint == EMAILS and state.config.email_link_strategy == "association":
        errors.update(_linked_errors(given))
    if rtype.endpoint == WEBHOOK_PATH:
        errors.update(_subscription_errors(given))
    return errors


def _linked_errors(given: dict[str, str]) -> dict[str, list[str]]:
    if LINKED_TYPES not in given and LINKED_IDS not in given:
        return {}
    types = parse_array(given.get(LINKED_TYPES, "[]"))
    ids = parse_array(given.get(LINKED_IDS, "[]"))
    if types is None or ids is None:
        return {LINKED_IDS: ["must be an array like [1,2]"]}
    if len(types) != len(ids):
        return {LINKED_IDS: ["must have one id per type"]}
    if any(t not in LINK_TARGETS for t in types):
        return {LINKED_TYPES: [NOT_INCLUDED]}
    if any(not i.isdigit() for i in ids):
        return {LINKED_IDS: ["is not a number"]}
    return {}


def _subscription_errors(given: dict[str, str]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    trigger = given.get("trigger_id")
    if trigger is not None and not (trigger.isdigit() and int(trigger) in TRIGGERS_BY_ID):
        errors["trigger_id"] = ["is not a valid trigger"]
    url = given.get("callback_url")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors["callback_url"] = ["is not a valid URL"]
    return errors


# ---------------------------------------------------------------- side effects


def after_create(
    state: SandboxState, rtype: RecordType, record: Record, links: dict[str, str], journal: Journal
) -> dict[str, Any]:
    """Effects of a new record; returns extra keys for the create reply only."""
    if rtype.endpoint == EMAILS:
        if record.get("status") == "SEND":
            _schedule_send(state, record)
        if state.config.email_link_strategy != "none":
            resource_type = record.get("render_with_resource_type")
            resource_id = record.get("render_with_resource_id")
            if resource_type and isinstance(resource_id, int):
                add_link(state, record["id"], str(resource_type), resource_id, journal)
        if links:
            set_links(state, record["id"], links, journal)
    if rtype.endpoint == WEBHOOK_PATH:
        if record.get("enabled") is None:
            record["enabled"] = False  # [INF] Rails' default for a boolean column
        return {"secret_key": state.webhooks.new_secret(record["id"])}
    return {}


def after_update(
    state: SandboxState,
    rtype: RecordType,
    record: Record,
    changed: list[str],
    links: dict[str, str],
    journal: Journal,
) -> list[str]:
    """Effects of an update; returns the extra attribute names that changed."""
    if rtype.endpoint != EMAILS:
        return []
    if "status" in changed and record.get("status") == "SEND":  # [EX] DRAFT, then SEND
        _schedule_send(state, record)
    if links and set_links(state, record["id"], links, journal):
        return [LINKED_TYPES, LINKED_IDS]
    return []


def _schedule_send(state: SandboxState, record: Record) -> None:
    delay = timedelta(seconds=state.config.email_send_delay_seconds)
    record["_send_due"] = state.clock.now() + delay


# ---------------------------------------------------------------- email links


def email_links(state: SandboxState, email_id: int) -> list[Record]:
    table = state.tables[state.schema.link_type.endpoint]
    return [r for r in table.values() if r.get("email_id") == email_id and not r.get("is_deleted")]


def linked_value(state: SandboxState, record: Record, name: str) -> str:
    """``linked_resource_types`` / ``linked_resource_ids`` of an email, from its links."""
    rows = email_links(state, record["id"])
    key = "resource_type" if name == LINKED_TYPES else "resource_id"
    return wire_array([r[key] for r in rows])


def add_link(
    state: SandboxState, email_id: int, resource_type: str, resource_id: int, journal: Journal
) -> Record:
    link_type = state.schema.link_type
    now = state.clock.now()
    link_id = state.next_id(link_type.sequence)
    journal.touch(state, link_type.endpoint, link_id)
    row: Record = {
        "id": link_id,
        "lock_version": 0,
        "type": link_type.class_name,
        "created_at": now,
        "updated_at": now,
        "is_deleted": False,
        "email_id": email_id,
        "resource_type": resource_type,
        "resource_id": resource_id,
    }
    state.tables[link_type.endpoint][link_id] = row
    return row


def set_links(state: SandboxState, email_id: int, links: dict[str, str], journal: Journal) -> bool:
    """Strategy ``association``: the email's links become exactly the written arrays (as a
    has-many written by ids replaces the set).  True when anything changed."""
    types = parse_array(links.get(LINKED_TYPES, "[]")) or []
    ids = [int(i) for i in parse_array(links.get(LINKED_IDS, "[]")) or []]
    wanted = list(dict.fromkeys(zip(types, ids, strict=True)))
    current = {(r["resource_type"], r["resource_id"]): r for r in email_links(state, email_id)}
    changed = False
    for key, row in current.items():
        if key not in wanted:
            journal.touch(state, state.schema.link_type.endpoint, row["id"])
            row.update(is_deleted=True, updated_at=state.clock.now())
            changed = True
    for resource_type, resource_id in wanted:
        if (resource_type, resource_id) not in current:
            add_link(state, email_id, resource_type, resource_id, journal)
            changed = True
    return changed

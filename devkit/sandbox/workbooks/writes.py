"""Batch PUT handling: square arrays, working set, create/update/delete, locking, transactions
(workbooks-api.md §3, §7.15-7.23)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from . import records
from .filters import parse_filters
from .params import WireParams, parse_bool
from .reads import check_names, id_candidates, matching_rows
from .store import ReadContext, Record, SandboxState
from .types import BOOLEAN_FIELDS, INTEGER_FIELDS, LINKED_IDS, LINKED_TYPES, RecordType
from .values import parse_var_date_time

LEADS = "crm/sales_leads"

STALE_TEXT = "This record cannot be saved since it has already been updated elsewhere."
NO_VALUE, NULL_VALUE = ":no_value:", ":null_value:"
UNKNOWN_TEXT = "is not a recognised attribute"  # [INF] the per-object strict-checking error
LINK_ARRAYS = frozenset({LINKED_TYPES, LINKED_IDS})
_BLANK = frozenset({NULL_VALUE, ""})  # what a required field may not be set to
# Objects of a batch processed between two pauses (see ``handle_write``): a 100-object batch
# takes milliseconds, and a request arriving meanwhile would otherwise start its latency only
# after it, which a service that runs requests side by side never does.
PAUSE_EVERY = 10
# Arrays that are request controls, not per-object columns.
CONTROL_ARRAYS = frozenset(
    {
        "_ff",
        "_ft",
        "_fc",
        "_sort",
        "_dir",
        "_select_columns",
        "_fm",
        "__method",
        "method",
        "id",
        "lock_version",
    }
)
READ_ONLY = frozenset(
    {
        "created_at",
        "updated_at",
        "created_by",
        "updated_by",
        "object_ref",
        "type",
        "is_deleted",
        "watched",
        "created_through",
        "descriptor",
        "assigned_to_name",
    }
)


class RequestFailure(Exception):
    """The whole request is refused before any object is looked at."""


@dataclass
class WriteContext:
    ctx: ReadContext
    application: str
    per_object: bool
    strict: bool
    # Without strict checking, what happens to attribute names the type does not have: the
    # real service does not recognise them ("drop"); seeds and the lax mode keep them ("store").
    unknown: Literal["store", "drop"] = "store"
    created: list[tuple[RecordType, Record]] = field(default_factory=list)  # committed creates


@dataclass
class Journal:
    """Undo log: the previous version of every touched row (None = the row was created)."""

    entries: list[tuple[str, int, Record | None]] = field(default_factory=list)

    def touch(self, state: SandboxState, endpoint: str, record_id: int) -> None:
        previous = state.tables[endpoint].get(record_id)
        self.entries.append((endpoint, record_id, previous.copy() if previous else None))

    def rollback(self, state: SandboxState) -> None:
        for endpoint, record_id, previous in reversed(self.entries):
            if previous is None:
                state.tables[endpoint].pop(record_id, None)
            else:
                state.tables[endpoint][record_id] = previous
        self.entries.clear()


@dataclass
class ObjectRequest:
    method: str
    id_text: str
    lock_text: str
    values: dict[str, str]


def parse_objects(params: WireParams, cap: int | None) -> list[ObjectRequest]:
    """Pair the n-th value of every column; refuse non-square requests and oversize batches."""
    methods = params.getlist("__method") or params.getlist("method")
    if not methods:
        raise RequestFailure("No objects in request: __method[] is missing")
    columns = {n: v for n, v in params.arrays.items() if n not in CONTROL_ARRAYS}
    sizes = {
        "__method": len(methods),
        "id": len(params.getlist("id")),
        "lock_version": len(params.getlist("lock_version")),
    }
    sizes.update({name: len(values) for name, values in columns.items()})
    if len(set(sizes.values())) != 1:
        detail = ", ".join(f"{k}[]={v}" for k, v in sorted(sizes.items()))
        raise RequestFailure(
            f"non-square request: every column must have one value per object ({detail})"
        )
    if cap is not None and len(methods) > cap:
        raise RequestFailure(f"Too many objects in one request: {len(methods)} (maximum {cap})")
    ids, locks = params.getlist("id"), params.getlist("lock_version")
    names = list(columns)
    return [
        ObjectRequest(
            method.strip().upper(), id_text, lock_text, dict(zip(names, cells, strict=True))
        )
        for method, id_text, lock_text, *cells in zip(
            methods, ids, locks, *columns.values(), strict=True
        )
    ]


def working_set(
    state: SandboxState, rtype: RecordType, params: WireParams, ctx: ReadContext
) -> set[int]:
    """Ids selected by the request's filters; soft-deleted rows are never in it."""
    filters = parse_filters(params)
    if not filters:
        return set()
    if ctx.strict or ctx.check_filterable:  # the working set's filters are checked too
        check_names(rtype, filters, None, [], ctx)
    pinned = id_candidates(filters, params.get("_fm"))
    table = state.tables[rtype.endpoint]
    rows = (
        state.rows(rtype.endpoint)
        if pinned is None
        else [(rtype, table[i]) for i in pinned if i in table]
    )
    return {
        r["id"]
        for _, r in matching_rows(
            state, rows, filters, params.get("_fm"), ctx, include_deleted=False
        )
    }


_TEXT, _BOOLEAN, _INTEGER = 0, 1, 2


@lru_cache(maxsize=4096)
def _value_kind(name: str) -> int:
    """How ``coerce`` treats ``name`` (by its innermost segment); names repeat, so cached."""
    base = name.split("[")[-1].rstrip("]")
    if base in BOOLEAN_FIELDS:
        return _BOOLEAN
    if base in INTEGER_FIELDS or base.endswith("_id"):
        return _INTEGER
    return _TEXT


def coerce(rtype: RecordType, name: str, text: str) -> Any:
    """A wire value as the Python value stored for ``name``."""
    if text == NULL_VALUE:
        return None
    kind = _value_kind(name)
    if kind == _TEXT:
        return text
    if kind == _BOOLEAN:
        return parse_bool(text)
    try:
        return int(text) if text.strip() else None
    except ValueError:
        return text  # stored as given; a real service would refuse it


async def handle_write(
    state: SandboxState, rtype: RecordType, params: WireParams, wctx: WriteContext
) -> dict[str, Any]:
    """Process one batch PUT and build the documented response.

    Every ``PAUSE_EVERY`` objects the event loop may run other work: requests that arrived
    meanwhile are read and start their latency, as they do between two requests.  The caller
    holds the turn, so no other data request runs in between.
    """
    try:
        objects = parse_objects(params, state.config.batch_cap)
    except RequestFailure as exc:
        return {"success": False, "failures": [str(exc)], "errors": {}}
    allowed = working_set(state, rtype, params, wctx.ctx)
    # Every object names the same columns, so the strict check is done once per column.
    names = objects[0].values if objects else {}
    unknown = _unknown_names(rtype, names, wctx)
    if not wctx.strict and wctx.unknown == "drop":
        ignored = [n for n in names if not rtype.knows(n)]
        for obj in objects:
            for name in ignored:
                del obj.values[name]
    journal = Journal()  # the object's own (emptied after each), or the whole batch's
    outcomes: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for index, obj in enumerate(objects):
        if index and index % PAUSE_EVERY == 0:
            await asyncio.sleep(0)
        created = len(wctx.created)
        affected, errors = _one(state, rtype, obj, allowed, wctx, journal, unknown)
        if wctx.per_object:
            if errors:
                journal.rollback(state)
                del wctx.created[created:]
            else:
                journal.entries.clear()
        outcomes.append((affected, errors))
    failed = [errors for _, errors in outcomes if errors]
    if failed and not wctx.per_object:
        journal.rollback(state)
        wctx.created.clear()
        outcomes = [
            (_unchanged(state, rtype, obj), errors)
            for obj, (_, errors) in zip(objects, outcomes, strict=True)
        ]
    state.webhooks.records_created(wctx.created)
    return _response(outcomes)


def _unchanged(state: SandboxState, rtype: RecordType, obj: ObjectRequest) -> dict[str, Any]:
    """After a rollback: the object as stored (id and lock_version)."""
    record = state.find(rtype.endpoint, _int(obj.id_text))
    if record is None:
        return {"id": _int(obj.id_text), "lock_version": _int(obj.lock_text)}
    return {"id": record["id"], "lock_version": record["lock_version"]}


def _response(outcomes: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    failures = [
        _failure_text(field_name, message)
        for _, errors in outcomes
        for field_name, messages in errors.items()
        for message in messages
    ]
    info: list[dict[str, Any]] = [
        {"success": not errors, "errors": errors or [], "warnings": []} for _, errors in outcomes
    ]
    body: dict[str, Any] = {
        "success": not failures,
        "affected_objects": [a for a, _ in outcomes],
        "affected_object_information": info,
        "updates": {},
    }
    if failures:
        body["failures"] = failures
    else:
        body["flash"] = "saved successfully"
    return body


def _failure_text(field_name: str, message: str) -> str:
    """``"<Field>: <msg>"`` like the real service; base/lock errors are the bare sentence."""
    if field_name in ("base", "lock_version"):
        return message
    return f"{field_name.replace('_', ' ').capitalize()}: {message}"


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def _unknown_names(rtype: RecordType, values: dict[str, str], wctx: WriteContext) -> list[str]:
    """Names refused by strict attribute checking, in request order."""
    if not wctx.strict:
        return []
    return [n for n in values if n not in READ_ONLY and not rtype.knows(n)]


def _one(
    state: SandboxState,
    rtype: RecordType,
    obj: ObjectRequest,
    allowed: set[int],
    wctx: WriteContext,
    journal: Journal,
    unknown: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """One object of the batch: (affected object, errors by field)."""
    if unknown is None:
        unknown = _unknown_names(rtype, obj.values, wctx)
    if unknown:
        return {"id": _int(obj.id_text)}, {n: [UNKNOWN_TEXT] for n in unknown}
    if obj.method in ("POST", "CREATE"):
        return _create(state, rtype, obj, wctx, journal)
    if obj.method not in ("PUT", "UPDATE", "DELETE"):
        return {"id": _int(obj.id_text)}, {"base": [f"Unknown __method {obj.method!r}"]}
    record_id = _int(obj.id_text)
    record = state.find(rtype.endpoint, record_id)
    if record is None or record.get("is_deleted") or record_id not in allowed:
        return {"id": record_id, "lock_version": _int(obj.lock_text)}, {
            "id": [not_found_text(state, rtype, record_id)]
        }
    if _stale(state, record, obj):
        return {"id": record_id, "lock_version": record["lock_version"]}, {
            "lock_version": [STALE_TEXT]
        }
    if obj.method == "DELETE":
        journal.touch(state, rtype.endpoint, record_id)
        record.update(
            is_deleted=True, updated_at=state.clock.now(), updated_by=wctx.ctx.user.user_id
        )
        return {"id": record_id, "lock_version": record["lock_version"]}, {}
    return _update(state, rtype, record, obj, wctx, journal)


def not_found_text(state: SandboxState, rtype: RecordType, record_id: int) -> str:
    """The configured not-found sentence [INF] §8 q3, e.g. Rails' "Couldn't find ..."."""
    template = state.config.not_found_text
    return template.replace("{class_name}", rtype.class_name).replace("{id}", str(record_id))


def _stale(state: SandboxState, record: Record, obj: ObjectRequest) -> bool:
    if state.faults.force_conflicts > 0:
        state.faults.force_conflicts -= 1
        return True
    return bool(_int(obj.lock_text) != record["lock_version"])


def _create(
    state: SandboxState, rtype: RecordType, obj: ObjectRequest, wctx: WriteContext, journal: Journal
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    if obj.id_text.strip() != "0" or obj.lock_text.strip() != "0":
        return {"id": _int(obj.id_text)}, {"id": ["must be 0 (and lock_version 0) to create"]}
    given = _given(obj.values, rtype, wctx, creating=True)
    missing = [n for n in rtype.required if given.get(n, NULL_VALUE) in _BLANK]
    if missing:
        return {"id": 0, "lock_version": 0}, {n: ["can't be blank"] for n in missing}
    invalid = records.validate(state, rtype, given)
    if invalid:
        return {"id": 0, "lock_version": 0}, invalid
    links = _link_arrays(state, rtype, given)
    now, user_id, endpoint = state.clock.now(), wctx.ctx.user.user_id, rtype.endpoint
    record_id = state.next_id(rtype.sequence)
    record: Record = {
        "id": record_id,
        "lock_version": 0,
        "type": rtype.class_name,
        "created_at": now,
        "updated_at": now,
        "created_by": user_id,
        "updated_by": user_id,
        "created_through": wctx.application,
        "is_deleted": False,
        "owner_id": user_id,
    }
    prefix = state.config.object_ref_prefixes.get(endpoint)
    if prefix:
        record["object_ref"] = f"{prefix}{record_id}"
    if rtype.queue_class:
        record["assigned_to"] = state.my_queue(wctx.ctx.user, rtype.queue_class)
    journal.touch(state, endpoint, record_id)
    state.tables[endpoint][record_id] = record
    _register_party(state, rtype, record)
    _apply(state, rtype, record, given, journal)
    extra = records.after_create(state, rtype, record, links, journal)
    wctx.created.append((rtype, record))
    # Values set from wire text are JSON-ready, but var_date_times; and the only private key
    # is ``_send_due``, unless a request without strict attribute checking names one.
    fresh = wctx.strict and not rtype.var_dates and "_send_due" not in record
    affected = state.output_row(rtype, record, wctx.ctx, None, fresh=fresh)
    affected.update(extra)
    return affected, {}


def _given(
    values: dict[str, str], rtype: RecordType, wctx: WriteContext, *, creating: bool
) -> dict[str, str]:
    """The values an object really sets: neither ``:no_value:`` nor read-only.  Under checking
    (strict, or the real service's unflagged mode) a column the schema marks as not createable
    (or not updateable) is ignored too, as a read-only attribute is."""
    checking = wctx.strict or wctx.unknown == "drop"
    given = {}
    for name, text in values.items():
        if text == NO_VALUE or name in READ_ONLY:
            continue
        if checking:
            column = rtype.columns.get(name)
            if column is not None and not (column.createable if creating else column.updateable):
                continue
        given[name] = text
    return given


def _link_arrays(state: SandboxState, rtype: RecordType, given: dict[str, str]) -> dict[str, str]:
    """Strategy ``association``: the link arrays are written to link rows, not stored."""
    if rtype.endpoint != records.EMAILS or state.config.email_link_strategy != "association":
        return {}
    return {name: given.pop(name) for name in list(given) if name in LINK_ARRAYS}


def _register_party(state: SandboxState, rtype: RecordType, record: Record) -> None:
    """People and organisations are parties; a lead owns two parties of its own."""
    if rtype.sequence == "party":
        state.party_owner[record["id"]] = (rtype.class_name, record["id"])
    if rtype.endpoint == "crm/sales_leads":
        for key in ("person_lead_party_id", "org_lead_party_id"):
            record[key] = state.next_id("party")
            state.party_owner[record[key]] = (rtype.class_name, record["id"])


def _update(
    state: SandboxState,
    rtype: RecordType,
    record: Record,
    obj: ObjectRequest,
    wctx: WriteContext,
    journal: Journal,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    given = _given(obj.values, rtype, wctx, creating=False)
    missing = [n for n in rtype.required if n in given and given[n] in _BLANK]
    invalid = records.validate(state, rtype, given)
    if missing or invalid:
        return {"id": record["id"], "lock_version": record["lock_version"]}, {
            **{n: ["can't be blank"] for n in missing},
            **invalid,
        }
    links = _link_arrays(state, rtype, given)
    journal.touch(state, rtype.endpoint, record["id"])
    changed = _apply(state, rtype, record, given, journal)
    changed += records.after_update(state, rtype, record, changed, links, journal)
    affected: dict[str, Any] = {"id": record["id"]}
    if changed:
        record["lock_version"] += 1
        record.update(updated_at=state.clock.now(), updated_by=wctx.ctx.user.user_id)
        changed.append("updated_at")
    affected["lock_version"] = record["lock_version"]
    for name in changed:
        affected[name] = state.wire_value(
            state.field_value(rtype, record, name, wctx.ctx), wctx.ctx
        )
    return affected, {}


def _apply(
    state: SandboxState, rtype: RecordType, record: Record, given: dict[str, str], journal: Journal
) -> list[str]:
    """Set attributes; returns the names that really changed (no-ops do not count)."""
    changed: list[str] = []
    prefixes = rtype.location_prefixes
    for name, text in given.items():
        if prefixes and name.startswith(prefixes):
            location, attr = _location_attr(name)
            if _set_location(state, record, location, attr, text, journal):
                changed.append(name)
            continue
        key, value = _stored(rtype, name, text)
        if record.get(key) != value:
            record[key] = value
            changed.append(name)
        if state.config.lead_party_locations and rtype.endpoint == LEADS:
            _mirror_lead_location(state, record, name, text, journal)
    if "name" in changed or "descriptor" not in record:
        record["descriptor"] = record.get("name")
    return changed


@lru_cache(maxsize=1024)
def _location_attr(name: str) -> tuple[str, str]:
    """``main_location[email]`` -> (``main_location``, ``email``); names repeat, so cached."""
    location = name[: name.index("[")]
    return location, name[len(location) + 1 : -1]


def _stored(rtype: RecordType, name: str, text: str) -> tuple[str, Any]:
    """Var_date_time twins (``due_date``, ``due_datetime``) all store into ``due``."""
    if not rtype.var_dates:
        return name, coerce(rtype, name, text)
    for base in rtype.var_dates:
        if name in (base, f"{base}_date", f"{base}_datetime"):
            if text == NULL_VALUE:
                return base, None
            value = parse_var_date_time(text, date_only=name.endswith("_date"))
            return base, value if value is not None else text
    return name, coerce(rtype, name, text)


_LEAD_LOCATION = re.compile(r"^(person|org)_lead_party\[main_location\[(\w+)\]\]$")


def _mirror_lead_location(
    state: SandboxState, record: Record, name: str, text: str, journal: Journal
) -> None:
    """``lead_party_locations``: a lead party's main location is also a Contact Details row of
    that party, as a Person's is (the lead's own columns stay where reads find them)."""
    found = _LEAD_LOCATION.match(name)
    if found is None:
        return
    party = f"{found.group(1)}_lead_party"
    _set_location(
        state,
        record,
        "main_location",
        found.group(2),
        text,
        journal,
        party_id=record[f"{party}_id"],
        id_key=f"_{party}_location_id",
    )


def _set_location(
    state: SandboxState,
    record: Record,
    location: str,
    attr: str,
    text: str,
    journal: Journal,
    *,
    party_id: int | None = None,
    id_key: str | None = None,
) -> bool:
    """Nested writes go to the Contact Details row (created on first use); ``party_id`` and
    ``id_key``: a row of another party the record holds (a lead's parties)."""
    loc_type = state.types["crm/party_locations"]
    table = state.tables[loc_type.endpoint]
    value = coerce(loc_type, attr, text)
    id_key = id_key or _location_id_key(location)
    row_id: int | None = record.get(id_key)
    row = table.get(row_id) if row_id is not None else None
    created = row is None
    if row is None:
        if value in (None, ""):
            return False
        now = state.clock.now()
        row_id = state.next_id(loc_type.sequence)
        journal.touch(state, loc_type.endpoint, row_id)
        row = {
            "id": row_id,
            "lock_version": 0,
            "type": loc_type.class_name,
            "created_at": now,
            "updated_at": now,
            "is_deleted": False,
            "party_id": record["id"] if party_id is None else party_id,
            "location_name": "Work" if location == "main_location" else "Home",
        }
        table[row_id] = row
        record[id_key] = row_id
    if row.get(attr) == value:
        return False
    if not created:  # a row created just above is already journalled (undo = remove it)
        journal.touch(state, loc_type.endpoint, row["id"])
    row[attr] = value
    if not created:
        row["lock_version"] += 1
        row["updated_at"] = state.clock.now()
    return True


@lru_cache(maxsize=64)
def _location_id_key(location: str) -> str:
    return f"{location}_id"

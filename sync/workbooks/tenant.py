"""What the service does on one Workbooks tenant: every declaration (``sync.workbooks.schema``)
checked against the tenant's ``metadata/types``, and the [INF] choices settled.

``tenant_schema(client)`` loads the metadata of the declared classes once per client (cached
for ``schema_ttl_seconds``), checks every declaration, and settles the result (``Tenant``):

* a **required** declaration that fails makes the record type unusable: ``Tenant.require``
  raises ``SchemaMismatch``, a named error with the fix;
* an **optional** one degrades explicitly: the column is neither read nor written, and a note
  says so in the run's status ("watched records are not synced: ...");
* the [INF] choices with alternatives (lead email fields, the meeting location column, the
  email-link mechanism, the email status, the task activity type) are settings, checked here
  and answered with the candidates the metadata offers.

``verify(client)`` returns the same findings as named checks (ok / warn / fail, message, fix),
for ``doctor``.  Without readable metadata the declarations are used as they are, unverified
(a warning), and the edge's own error isolation still applies.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sync.core.checks import Check
from sync.core.errors import InvalidRequest, NotFound, ReauthRequired, RetryLater

from . import errors, owners
from .metadata import (
    FieldMeta,
    LinkStrategy,
    Metadata,
    Picklist,
    TypeMeta,
    choose_link,
    parse_type,
)
from .schema import (
    DECLARED,
    DRAFT,
    EMAIL,
    EMAILS,
    LEAD_EMAIL_CANDIDATES,
    MEETINGS,
    SALES_LEADS,
    SEND,
    STORED_STATUSES,
    TASKS,
    Decl,
    SchemaMismatch,
)
from .timezones import iana_zone

if TYPE_CHECKING:
    from .client import WorkbooksClient
    from .config import ClientConfig

log = logging.getLogger(__name__)
METADATA = "metadata/types"

# ====================================================================== the tenant


@dataclass(frozen=True)
class TypeState:
    """One declared record type as this tenant has it."""

    decl: Decl
    class_name: str
    rename: Mapping[str, str] = field(default_factory=dict)  # declared -> tenant column
    unreadable: frozenset[str] = frozenset()  # neither read nor written
    unwritable: frozenset[str] = frozenset()  # read only
    unfilterable: frozenset[str] = frozenset()
    failure: Check | None = None  # a required declaration failed: the type is unusable

    def column(self, declared: str) -> str | None:
        """The tenant's name for a declared column (None: it has none)."""
        if declared in self.unreadable:
            return None
        return self.rename.get(declared, declared)

    @property
    def unsynced(self) -> dict[str, str]:
        """Canonical fields the tenant cannot carry -> why."""
        out: dict[str, str] = {}
        for col in self.decl.columns:
            if col.canonical and col.name in self.unreadable:
                out[col.canonical] = f"{self.decl.endpoint} has no {col.name!r} column"
        return out


@dataclass
class Tenant:
    """What the service does on this tenant, settled from its metadata and the settings."""

    verified: bool
    types: dict[str, TypeState]
    checks: list[Check]
    lead_email_fields: tuple[str, ...]
    party_columns: bool
    watched: dict[str, bool]  # record key -> whether ``watched`` can scope a read
    link: LinkStrategy
    email_status: str
    task_activity_type: str
    notes: dict[str, list[str]] = field(default_factory=dict)  # record key -> degradations
    # [INF] whether a deleted record's Contact Details are listed (``sync.workbooks.owners``):
    # "listed" until shown otherwise, so every Contact Details owner is confirmed.
    owner_locations: str = "listed"
    lead_locations: bool = False  # "hidden", and Sales Leads found among Contact Details too

    def require(self, key: str) -> TypeState:
        state = self.types[key]
        if state.failure is not None:
            raise SchemaMismatch(state.failure)
        return state

    def note(self, key: str, text: str) -> None:
        found = self.notes.setdefault(key, [])
        if text not in found:
            found.append(text)

    def notes_for(self, *keys: str) -> list[str]:
        return list(dict.fromkeys(n for k in keys for n in self.notes.get(k, [])))


def _leaf(name: str) -> str:
    return name.rstrip("]").rpartition("[")[2]


def _find(meta: Metadata | None, rtype: TypeMeta | None, name: str) -> FieldMeta | str | None:
    if meta is None or rtype is None:
        return "unknown"
    return meta.find(rtype, name)


def _candidates(
    meta: Metadata, rtype: TypeMeta, leaf: str, exclude: Iterable[str] = ()
) -> list[str]:
    """Columns of ``rtype`` whose innermost name is ``leaf`` (what a setting may name)."""
    names = [n for n, f in rtype.fields.items() if _leaf(n) == leaf and f.filterable]
    for assoc in rtype.associations.values():
        for guess in (f"{assoc.name}[{leaf}]", f"{assoc.name}[main_location[{leaf}]]"):
            if isinstance(meta.find(rtype, guess), FieldMeta):
                names.append(guess)
    return sorted(set(names) - set(exclude))


def _type_state(
    decl: Decl,
    meta: Metadata | None,
    rtype: TypeMeta | None,
    rename: Mapping[str, str],
    tenant: Tenant,
) -> TypeState:
    if meta is not None and rtype is None:
        check = Check(
            f"workbooks.schema.{decl.key}",
            "fail",
            f"{decl.title}: metadata/types has no {decl.class_name} at {decl.endpoint}",
            f"give the API user access to {decl.title}, or report the tenant's class for "
            f"{decl.endpoint}",
        )
        tenant.checks.append(check)
        return TypeState(decl, decl.class_name, failure=check)
    unreadable: set[str] = set()
    unwritable: set[str] = set()
    unfilterable: set[str] = set()
    required_fail: list[str] = []
    degraded: list[str] = []
    unverified: list[str] = []
    for col in decl.columns:
        name = rename.get(col.name, col.name)
        if not name:
            unreadable.add(col.name)
            continue
        if not col.verify:
            continue
        found = _find(meta, rtype, name)
        if found == "unknown":
            if meta is not None:
                unverified.append(name)
            continue
        problem = ""
        if not isinstance(found, FieldMeta):
            unreadable.add(col.name)
            problem = f"{name!r} does not exist"
        elif col.filter and not found.filterable:
            unfilterable.add(col.name)
            problem = f"{name!r} cannot be filtered on"
        elif col.write and not found.writable:
            unwritable.add(col.name)
            problem = f"{name!r} cannot be written"
        if problem and col.required:
            required_fail.append(problem)
        elif problem:
            degraded.append(problem)
    class_name = rtype.class_name if rtype is not None else decl.class_name
    name = f"workbooks.schema.{decl.key}"
    where = f"{decl.title} ({class_name} at {decl.endpoint})"
    failure = None
    if required_fail:
        failure = Check(
            name,
            "fail",
            f"{where}: {'; '.join(required_fail)}",
            "the service needs these columns; check the API user's field permissions",
        )
        tenant.checks.append(failure)
    elif degraded or unverified or meta is None:
        parts = degraded + ([f"not verified: {', '.join(unverified)}"] if unverified else [])
        if meta is None:
            parts.append("not verified (metadata unreadable)")
        tenant.checks.append(Check(name, "warn", f"{where}: {'; '.join(parts)}"))
    else:
        tenant.checks.append(Check(name, "ok", f"{where}: {len(decl.columns)} columns verified"))
    return TypeState(
        decl,
        class_name,
        dict(rename),
        frozenset(unreadable),
        frozenset(unwritable),
        frozenset(unfilterable),
        failure,
    )


def resolve(
    meta: Metadata | None,
    config: ClientConfig,
    picklists: Mapping[int, list[str]] | None = None,
    unreadable_reason: str = "",
) -> Tenant:
    """Settle every declaration against ``meta`` (None: metadata unreadable) and the settings.
    ``picklists`` holds the values of the picklists read (by picklist id)."""
    values = picklists or {}
    tenant = Tenant(
        verified=meta is not None,
        types={},
        checks=[],
        lead_email_fields=tuple(config.lead_email_fields),
        party_columns=True,
        watched={},
        link=LinkStrategy("none"),
        email_status=DRAFT,
        task_activity_type=config.task_activity_type,
    )
    if meta is None:
        tenant.checks.append(
            Check(
                "workbooks.metadata",
                "warn",
                f"metadata/types could not be read ({unreadable_reason}); the declarations are "
                "used unverified",
                "grant the API user read access to metadata/types",
            )
        )
    else:
        tenant.checks.append(
            Check(
                "workbooks.metadata", "ok", f"{len(meta.by_class)} types read from metadata/types"
            )
        )
    found: dict[str, TypeMeta | None] = {}
    for decl in DECLARED:
        rtype = None
        if meta is not None:
            rtype = meta.by_class.get(decl.class_name) or meta.by_path(decl.endpoint)
        found[decl.key] = rtype
        rename = {"location": config.meeting_location_field} if decl is MEETINGS else {}
        tenant.types[decl.key] = _type_state(decl, meta, rtype, rename, tenant)
    _class_names(tenant, meta, found)
    _watched(tenant, config)
    _leads(tenant, meta, found["sales_leads"], config)
    _party(tenant)
    _optional_notes(tenant, meta, found)
    _task_type(tenant, found["tasks"], values, config)
    _email_status(tenant, found["emails"], values, config)
    tenant.link, check = choose_link(
        meta, found["emails"], config.email_link_strategy, config.email_link_path
    )
    tenant.checks.append(check)
    if not tenant.link.enabled:
        tenant.note("emails", f"email linking is disabled: {tenant.link.reason}")
    elif not tenant.link.later:
        tenant.note(
            "emails",
            "an email is linked only when it is created (render_with): records found later "
            "are not added to it",
        )
    return tenant


def _class_names(
    tenant: Tenant, meta: Metadata | None, found: Mapping[str, TypeMeta | None]
) -> None:
    """[INF] class names: the tenant's own, found by endpoint, are reported when they differ."""
    for decl in DECLARED:
        rtype = found[decl.key]
        if meta is None or rtype is None or not decl.class_inferred:
            continue
        name = f"workbooks.class.{decl.key}"
        if rtype.class_name == decl.class_name:
            tenant.checks.append(
                Check(name, "ok", f"{decl.endpoint} records are {decl.class_name}")
            )
        else:
            tenant.checks.append(
                Check(
                    name,
                    "warn",
                    f"{decl.endpoint} records are {rtype.class_name}, not {decl.class_name}",
                    "report it: links made by the service name the declared class",
                )
            )


def _watched(tenant: Tenant, config: ClientConfig) -> None:
    for key in ("people", "tasks", "meetings"):
        state = tenant.types[key]
        ok = config.watched_filter and "watched" not in state.unreadable | state.unfilterable
        tenant.watched[key] = ok
        if ok:
            continue
        why = (
            "WORKBOOKS_WATCHED_FILTER is off"
            if not config.watched_filter
            else "`watched` is not filterable on this tenant"
        )
        tenant.note(key, f"watched records are not synced: {why}")
    ok = all(tenant.watched.values())
    people = tenant.types["people"]
    tenant.checks.append(
        Check(
            "workbooks.watched_filter",
            "ok" if ok else "warn",
            "watched records are synced"
            if ok
            else tenant.notes_for("people", "tasks", "meetings")[0],
            "" if ok else "records must be assigned to the user's queues to be synced",
        )
        if people.failure is None
        else Check("workbooks.watched_filter", "warn", "not checked: People unusable")
    )


def _leads(
    tenant: Tenant, meta: Metadata | None, rtype: TypeMeta | None, config: ClientConfig
) -> None:
    name = "workbooks.lead_email_fields"
    configured = list(config.lead_email_fields)
    if meta is None or rtype is None:
        tenant.checks.append(Check(name, "warn", f"not verified: using {', '.join(configured)}"))
        return
    usable: list[str] = []
    missing: list[str] = []
    for column in configured:
        found = meta.find(rtype, column)
        if found == "unknown" or (isinstance(found, FieldMeta) and found.filterable):
            usable.append(column)
        else:
            missing.append(column)
    tenant.lead_email_fields = tuple(usable)
    candidates = _candidates(meta, rtype, "email", exclude=configured)
    offer = ", ".join(candidates) or "(no email column in the metadata)"
    if not usable:
        text = f"lead email fields: none of {', '.join(configured)} exist"
        fix = f"set WORKBOOKS_LEAD_EMAIL_FIELDS to one of: {offer}"
        tenant.checks.append(Check(name, "fail", text, fix))
        tenant.note("sales_leads", f"Sales Leads are not matched by address: {text}; {fix}")
    elif missing:
        verb = "does" if len(missing) == 1 else "do"
        text = f"leads matched by {', '.join(usable)} only: {', '.join(missing)} {verb} not exist"
        tenant.checks.append(
            Check(name, "warn", text, "remove it from WORKBOOKS_LEAD_EMAIL_FIELDS")
        )
        tenant.note("sales_leads", text)
    else:
        tenant.checks.append(Check(name, "ok", f"leads matched by {', '.join(usable)}"))


def _party(tenant: Tenant) -> None:
    state = tenant.types["party_locations"]
    gone = {"party[type]", "party[id]"} & state.unreadable
    tenant.party_columns = not gone and state.failure is None
    name = "workbooks.party_columns"
    if tenant.party_columns:
        tenant.checks.append(
            Check(name, "ok", "Contact Details rows name their owner (party[type], party[id])")
        )
        return
    text = (
        "Contact Details owners are looked up by id: "
        f"{', '.join(sorted(gone))} not readable on this tenant"
    )
    tenant.checks.append(Check(name, "warn", text, "none needed (extra look-ups per address)"))
    tenant.note("party_locations", text)


def _optional_notes(
    tenant: Tenant, meta: Metadata | None, found: Mapping[str, TypeMeta | None]
) -> None:
    """Notes and checks for optional two-way columns the tenant lacks."""
    for key in ("people", "tasks", "meetings"):
        state = tenant.types[key]
        if state.failure is not None:
            continue
        for canonical, why in state.unsynced.items():
            tenant.note(key, f"{canonical} is not synced: {why}")
        for col in sorted(state.unwritable):
            tenant.note(
                key, f"{col} is read from Workbooks only: the tenant does not let it be written"
            )
    meetings = tenant.types["meetings"]
    name = "workbooks.meeting_location"
    column = meetings.column("location")
    rtype = found["meetings"]
    if meetings.failure is not None:
        tenant.checks.append(Check(name, "warn", "not checked: Meetings unusable"))
    elif column is not None:
        tenant.checks.append(
            Check(name, "ok" if meta else "warn", f"meeting location is {column!r}")
        )
    else:
        offer = ", ".join(_location_candidates(rtype)) if meta and rtype else ""
        configured = meetings.rename.get("location", "location")
        text = "meeting location is not synced: " + (
            f"activity/meetings has no {configured!r} column" if configured else "switched off"
        )
        fix = f"set WORKBOOKS_MEETING_LOCATION_FIELD to one of: {offer}" if offer else ""
        tenant.checks.append(Check(name, "warn", text, fix))
    people = tenant.types["people"]
    if people.failure is None and "employer_name" in people.unreadable:
        tenant.checks.append(
            Check(
                "workbooks.employer_name",
                "warn",
                "company is not synced: People have no employer_name",
            )
        )
    elif people.failure is None and "employer_name" in people.unwritable:
        tenant.checks.append(
            Check(
                "workbooks.employer_name",
                "warn",
                "company is read only: employer_name cannot be written",
            )
        )
    elif people.failure is None:
        tenant.checks.append(Check("workbooks.employer_name", "ok", "company <-> employer_name"))


LOCATION_WORDS = ("location", "venue", "place", "room", "where", "address")


def _location_candidates(rtype: TypeMeta) -> list[str]:
    """The meeting's own text columns that could hold a location."""
    return sorted(
        name
        for name, f in rtype.fields.items()
        if "[" not in name
        and f.datatype in ("string", "text")
        and f.writable
        and any(word in name for word in LOCATION_WORDS)
    )


def _picklist_values(
    rtype: TypeMeta | None, column: str, values: Mapping[int, list[str]]
) -> tuple[list[str] | None, bool]:
    """(the values of a column's picklist, or None when unread; whether it is unrestricted)."""
    meta = rtype.fields.get(column) if rtype is not None else None
    picklist = meta.picklist if meta is not None else None
    if picklist is None or picklist.picklist_id is None:
        return None, True
    return values.get(picklist.picklist_id), picklist.unrestricted


def picklists_needed(meta: Metadata) -> list[Picklist]:
    """The picklists ``resolve`` wants values of: email status, task activity type."""
    out = []
    for decl, column in ((EMAILS, "status"), (TASKS, "activity_type")):
        rtype = meta.by_class.get(decl.class_name) or meta.by_path(decl.endpoint)
        found = rtype.fields.get(column) if rtype is not None else None
        if (
            found is not None
            and found.picklist is not None
            and found.picklist.picklist_id is not None
        ):
            out.append(found.picklist)
    return out


def _task_type(
    tenant: Tenant, rtype: TypeMeta | None, values: Mapping[int, list[str]], config: ClientConfig
) -> None:
    name = "workbooks.task_activity_type"
    wanted = config.task_activity_type
    known, unrestricted = _picklist_values(rtype, "activity_type", values)
    if known is None:
        tenant.checks.append(
            Check(name, "warn", f"new tasks get activity type {wanted!r} (not verified)")
        )
        return
    if wanted in known:
        tenant.checks.append(Check(name, "ok", f"new tasks get activity type {wanted!r}"))
        return
    text = f"activity type {wanted!r} is not in the tenant's list ({', '.join(known)})"
    fix = f"set WORKBOOKS_TASK_ACTIVITY_TYPE to one of: {', '.join(known)}"
    if unrestricted:
        tenant.checks.append(Check(name, "warn", text + "; Workbooks accepts it anyway", fix))
        return
    check = Check(name, "fail", f"tasks cannot be created: {text}", fix)
    tenant.checks.append(check)
    if tenant.types["tasks"].failure is None:
        tenant.types["tasks"] = replace(tenant.types["tasks"], failure=check)


def _email_status(
    tenant: Tenant, rtype: TypeMeta | None, values: Mapping[int, list[str]], config: ClientConfig
) -> None:
    """A stored, non-sending status: the setting, else a stored one the picklist has, else
    DRAFT (§4.10: only SEND sends; a DRAFT can be sent again by a user from the UI)."""
    name = "workbooks.email_status"
    known, unrestricted = _picklist_values(rtype, "status", values)
    wanted = config.email_status.strip().upper()
    wanted = "" if wanted == "AUTO" else wanted
    if wanted:
        if known is None or wanted in known or unrestricted:
            tenant.email_status = wanted
            tenant.checks.append(
                Check(name, "ok" if known else "warn", f"emails are stored as {wanted}")
            )
            return
        tenant.checks.append(
            Check(
                name,
                "fail",
                f"WORKBOOKS_EMAIL_STATUS={wanted} is not in the tenant's list ({', '.join(known)})",
                f"set WORKBOOKS_EMAIL_STATUS to one of: {', '.join(v for v in known if v != SEND)}",
            )
        )
    if known is None:
        tenant.email_status = DRAFT
        tenant.checks.append(Check(name, "warn", "emails are stored as DRAFT (statuses not read)"))
        return
    upper = {v.upper(): v for v in known}
    stored = next((upper[s] for s in STORED_STATUSES if s in upper), None)
    tenant.email_status = stored or DRAFT
    if stored:
        tenant.checks.append(Check(name, "ok", f"emails are stored as {stored} (never sent)"))
    elif not wanted:
        tenant.checks.append(
            Check(
                name,
                "warn",
                "emails are stored as DRAFT, the only stored status: a user could send one "
                "again from Workbooks",
                "add a stored status such as FILED to the email status picklist",
            )
        )


# ====================================================================== loading

TYPE_COLUMNS = ("class_name", "controller_path", "fields", "associations")
_CACHE: weakref.WeakKeyDictionary[WorkbooksClient, tuple[float, Tenant]] = (
    weakref.WeakKeyDictionary()
)
_LOCKS: weakref.WeakKeyDictionary[WorkbooksClient, asyncio.Lock] = weakref.WeakKeyDictionary()


async def tenant_schema(client: WorkbooksClient) -> Tenant:
    """The tenant's schema, loaded once per client and kept ``schema_ttl_seconds``."""
    entry = _CACHE.get(client)
    ttl = client.config.schema_ttl_seconds
    if entry is not None and time.monotonic() - entry[0] < ttl:
        return entry[1]
    lock = _LOCKS.setdefault(client, asyncio.Lock())
    async with lock:
        entry = _CACHE.get(client)
        if entry is not None and time.monotonic() - entry[0] < ttl:
            return entry[1]
        tenant = await load_tenant(client)
        _CACHE[client] = (time.monotonic(), tenant)
        for check in tenant.checks:
            if check.status != "ok":
                log.info("workbooks schema %s: %s: %s", check.name, check.status, check.message)
        return tenant


def forget(client: WorkbooksClient) -> None:
    """Drop the cached schema (the next use reads the metadata again)."""
    _CACHE.pop(client, None)


async def load_tenant(client: WorkbooksClient) -> Tenant:
    tenant = await _load(client)
    await owners.settle(client, tenant)
    return tenant


async def _load(client: WorkbooksClient) -> Tenant:
    await client.ensure_login()  # a rejected key is a login failure, not unreadable metadata
    try:
        meta = await read_metadata(client)
    except (NotFound, InvalidRequest, ReauthRequired) as exc:
        return resolve(None, client.config, None, str(exc))
    if not any(d.class_name in meta.by_class or meta.by_path(d.endpoint) for d in DECLARED):
        # An answer that names none of our types says nothing about them (a key that may not
        # read the metadata of any), not that every one is missing.
        return resolve(None, client.config, None, "it lists none of the declared types")
    values: dict[int, list[str]] = {}
    for picklist in picklists_needed(meta):
        try:
            values[picklist.picklist_id or 0] = await picklist_values(client, picklist)
        except (NotFound, InvalidRequest, ReauthRequired) as exc:
            log.info("workbooks picklist %s unreadable: %s", picklist.name, exc)
    return resolve(meta, client.config, values)


async def _types(
    client: WorkbooksClient, classes: Sequence[str], columns: Sequence[str]
) -> list[dict[str, Any]]:
    """``metadata/types`` rows for ``classes`` (all types when empty), page by page."""
    base = [("class_names[]", c) for c in classes] + [("_select_columns[]", c) for c in columns]
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    start = 0
    while True:
        body = await client.get(METADATA, [*base, ("_start", str(start)), ("_limit", "100")])
        data = body.get("data")
        if body.get("success") is False or not isinstance(data, list):
            raise errors.classify_texts(errors.failure_texts(body), f"GET {METADATA} failed")
        fresh = [r for r in data if isinstance(r, dict) and str(r.get("class_name")) not in seen]
        rows += fresh
        seen |= {str(r.get("class_name")) for r in fresh}
        start += len(data)
        # A service that ignores paging answers the whole list every time: nothing new, stop.
        if len(data) < 100 or not fresh:
            return rows


async def read_metadata(client: WorkbooksClient) -> Metadata:
    """The declared classes, the classes the email's links and the declared related columns
    lead to, and (when a class is not where we expect it) the tenant's class of each declared
    endpoint.  Two or three requests."""
    meta = Metadata()
    meta.add(
        parse_type(r) for r in await _types(client, [d.class_name for d in DECLARED], TYPE_COLUMNS)
    )
    wanted: set[str] = set()
    lost = [d for d in DECLARED if d.class_name not in meta.by_class]
    if lost:
        listing = await _types(client, [], ("class_name", "controller_path"))
        paths = {str(r.get("controller_path")): str(r.get("class_name")) for r in listing}
        wanted |= {paths[d.endpoint] for d in lost if d.endpoint in paths}
    for _ in range(2):
        wanted |= _related(meta)
        wanted -= set(meta.by_class)
        if not wanted:
            break
        meta.add(parse_type(r) for r in await _types(client, sorted(wanted), TYPE_COLUMNS))
        wanted = set()
    return meta


def _related(meta: Metadata) -> set[str]:
    """Classes whose metadata the checks need and that are not loaded yet."""
    out: set[str] = set()
    email = meta.by_class.get(EMAIL) or meta.by_path(EMAILS.endpoint)
    if email is not None:
        for assoc in email.associations.values():
            if assoc.datatype == "has_many" and not assoc.through:
                out |= set(assoc.class_names)
    for decl in DECLARED:
        rtype = meta.by_class.get(decl.class_name) or meta.by_path(decl.endpoint)
        if rtype is None:
            continue
        names = [*decl.names, *(LEAD_EMAIL_CANDIDATES if decl is SALES_LEADS else ())]
        for name in names:
            out |= meta.missing_classes(rtype, name)
    return out


async def picklist_values(client: WorkbooksClient, picklist: Picklist) -> list[str]:
    """The values of one picklist, read at the path its metadata names (§2.9)."""
    path = picklist.path or "picklist_data/Private_PicklistEntry/value/value"
    value_field = path.split("/")[2] if path.count("/") >= 3 else "value"
    body = await client.get(path, [("picklist_id", str(picklist.picklist_id))])
    data = body.get("data")
    if body.get("success") is False or not isinstance(data, list):
        raise errors.classify_texts(errors.failure_texts(body), f"GET {path} failed")
    return [str(r[value_field]) for r in data if isinstance(r, dict) and r.get(value_field)]


# ====================================================================== doctor


async def verify(client: WorkbooksClient) -> list[Check]:
    """Every Workbooks check this module can make for one identity: login, the user's time
    zone, every declaration and the email-link strategy (``doctor`` shows them)."""
    try:
        login = await client.ensure_login()
    except RetryLater as exc:
        fix = f"check that {client.identity.base_url} is the tenant's URL, then try again"
        return [Check("workbooks.login", "fail", f"Workbooks did not answer: {exc}", fix)]
    except (ReauthRequired, InvalidRequest, NotFound) as exc:
        fix = "check the API key and that its user is licensed for the API"
        return [Check("workbooks.login", "fail", f"login failed: {exc}", fix)]
    checks = [Check("workbooks.login", "ok", f"logged in as {login.person_name or login.user_id}")]
    zone = iana_zone(login.time_zone)
    if zone:
        checks.append(
            Check("workbooks.time_zone", "ok", f"the user's zone is {zone} ({login.time_zone})")
        )
    else:
        checks.append(
            Check(
                "workbooks.time_zone",
                "warn",
                f"the user's zone {login.time_zone!r} is not a known zone name",
                "set the mailbox policy's time_zone",
            )
        )
    forget(client)
    await owners.forget(client)
    try:
        tenant = await tenant_schema(client)
    except RetryLater as exc:
        failed = Check(
            "workbooks.metadata", "fail", f"metadata/types did not answer: {exc}", "try again"
        )
        return [*checks, failed]
    return checks + list(tenant.checks)

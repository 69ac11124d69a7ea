"""Every Workbooks class, endpoint and column the service reads or writes, declared once, and
verified against the tenant's ``metadata/types`` (workbooks-api.md §2.9).

The declarations (``DECLARED``) say what the service relies on and how sure we are of it:
``inferred`` marks the [INF] points no public source confirms.  ``tenant_schema(client)``
loads the metadata of those classes once per client (cached for ``schema_ttl_seconds``),
checks every declaration, and settles what the service does on this tenant (``Tenant``):

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

Real tenants may list related columns (``main_location[email]``) as fields of the type, as the
sandbox does, or only through associations: a bracketed column is found either way, through
the association's classes when their metadata was loaded; a column behind an association whose
class was not loaded is "unverified", not missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from sync.core.email_linking import CASE, LEAD, OPPORTUNITY, ORGANISATION, PERSON
from sync.core.errors import InvalidRequest, NotFound, ReauthRequired
from sync.core.mapping.activities import MEETING_TYPE, TASK_TYPE

from . import errors
from .timezones import iana_zone

if TYPE_CHECKING:
    from .client import WorkbooksClient
    from .config import ClientConfig

log = logging.getLogger(__name__)

PARTY_LOCATION = "Private::Crm::PartyLocation"
EMAIL = "Private::Email::Email"  # [INF] §8 q2: the class name is not confirmed
METADATA = "metadata/types"
LINK_TARGETS = (PERSON, LEAD, ORGANISATION, CASE, OPPORTUNITY)  # the Email tab's records [KB]

# ====================================================================== declarations


@dataclass(frozen=True)
class Col:
    """One column the service uses on one record type."""

    name: str
    filter: bool = False  # the service filters on it
    write: bool = False  # the service writes it
    required: bool = False  # without it the record type cannot be synced at all
    inferred: bool = False  # [INF]: no public source confirms it
    canonical: str = ""  # the canonical field it carries in a two-way field map
    verify: bool = True  # False: documented on every record (§3.9); not looked up

    @property
    def use(self) -> str:
        return "filtered" if self.filter else ("written" if self.write else "read")


@dataclass(frozen=True)
class Decl:
    """A record type: its endpoint, its class and the columns the service uses on it."""

    key: str
    endpoint: str
    class_name: str
    title: str
    columns: tuple[Col, ...]
    class_inferred: bool = False

    def column(self, name: str) -> Col | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _base(*extra: Col) -> tuple[Col, ...]:
    """Columns every record has [DOC] §2.6, §2.7, §3.9; only their presence is assumed."""
    return (
        Col("id", filter=True, required=True, verify=False),
        Col("lock_version", filter=True, required=True, verify=False),
        Col("updated_at", filter=True, required=True, verify=False),
        Col("is_deleted", filter=True, required=True, verify=False),
        *extra,
    )


def _two_way(*extra: Col) -> tuple[Col, ...]:
    """A record type synced both ways: found again by reference, scoped by queue or watch."""
    return _base(
        Col("created_through_reference", filter=True, write=True, required=True),
        Col("assigned_to", filter=True, write=True, required=True),
        # [INF] §2.8, §8 q6: whether ``watched`` can be filtered on.  Without it "My People"
        # is only what is assigned to my queues.
        Col("watched", filter=True, inferred=True),
        *extra,
    )


def _location(prefix: str, names: Iterable[str], canonical: Mapping[str, str]) -> list[Col]:
    return [Col(f"{prefix}[{n}]", write=True, canonical=canonical.get(n, "")) for n in names]


PEOPLE = Decl(
    "people",
    "crm/people",
    PERSON,
    "People",
    _two_way(
        Col("name", write=True, required=True, canonical="display_name"),
        Col("person_first_name", write=True, canonical="first_name"),
        Col("person_middle_name", write=True, canonical="middle_name"),
        Col("person_last_name", write=True, canonical="last_name"),
        Col("person_job_title", write=True, canonical="job_title"),
        # [EX][OBS] read; that a write sets the employer is [INF] (§8 q10).
        Col("employer_name", write=True, inferred=True, canonical="company"),
        Col("main_location[email]", filter=True, write=True, required=True, canonical="email"),
        *_location(
            "main_location",
            (
                "alternate_email",
                "telephone",
                "alternate_telephone",
                "mobile",
                "street_address",
                "town",
                "county_province_state",
                "postcode",
                "country",
            ),
            {
                "alternate_email": "email2",
                "telephone": "phone",
                "alternate_telephone": "phone2",
                "mobile": "mobile",
                "street_address": "street",
                "town": "city",
                "county_province_state": "state",
                "postcode": "postcode",
                "country": "country",
            },
        ),
        *_location(
            "home_location", ("email", "telephone"), {"email": "email3", "telephone": "home_phone"}
        ),
    ),
)
CONTACT_DETAILS = Decl(
    "party_locations",
    "crm/party_locations",
    PARTY_LOCATION,
    "Contact Details",
    _base(
        Col("party_id", required=True),
        Col("email", filter=True, required=True),
        Col("alternate_email", filter=True, required=True),
        # [INF] §4.3: the owner's class and id, readable through a ``party`` association.
        Col("party[type]", inferred=True),
        Col("party[id]", inferred=True),
    ),
)
SALES_LEADS = Decl(
    "sales_leads",
    "crm/sales_leads",
    LEAD,
    "Sales Leads",
    _base(
        # The lead's email columns are a setting (lead_email_fields, [INF] §4.4, §8 q8),
        # added per tenant by ``lead_columns``.  The party ids serve the owner look-up of
        # Contact Details rows when ``party[...]`` is not readable.
        Col("person_lead_party_id", filter=True, inferred=True),
        Col("org_lead_party_id", filter=True, inferred=True),
    ),
)
ORGANISATIONS = Decl("organisations", "crm/organisations", ORGANISATION, "Organisations", _base())
CASES = Decl("cases", "crm/cases", CASE, "Cases", _base())
OPPORTUNITIES = Decl("opportunities", "crm/opportunities", OPPORTUNITY, "Opportunities", _base())
_ACTIVITY = (
    Col("name", write=True, required=True),
    Col("activity_type", write=True),
    Col("activity_status", write=True),
    Col("description", write=True),
)
TASKS = Decl(
    "tasks",
    "activity/tasks",
    TASK_TYPE,
    "Tasks",
    _two_way(
        *_ACTIVITY,
        Col("activity_priority", write=True),
        Col("due", write=True),
        Col("completed", write=True),
    ),
)
MEETINGS = Decl(
    "meetings",
    "activity/meetings",
    MEETING_TYPE,
    "Meetings",
    _two_way(
        *_ACTIVITY,
        # [INF] §4.7, §8 q9: the meeting location's column; a setting names the tenant's own.
        Col("location", write=True, inferred=True, canonical="location"),
        Col("all_day", write=True),
        Col("start", write=True),
        Col("finish", write=True),
        Col("duration"),
    ),
    class_inferred=True,  # §8 q12
)
EMAILS = Decl(
    "emails",
    "email/emails",
    EMAIL,
    "Emails",
    _base(
        Col("created_through_reference", filter=True, write=True, required=True),
        Col("from_address", write=True, required=True),
        Col("to_addresses", write=True, required=True),
        Col("cc_addresses", write=True, required=True),
        Col("bcc_addresses", write=True, required=True),
        Col("subject", write=True, required=True),
        Col("status", write=True, required=True),
        Col("rfc822", write=True, required=True),
        Col("synopsis", write=True, inferred=True),  # [OBS] seen commented out only
    ),
    class_inferred=True,
)
DECLARED: tuple[Decl, ...] = (
    PEOPLE,
    CONTACT_DETAILS,
    SALES_LEADS,
    ORGANISATIONS,
    CASES,
    OPPORTUNITIES,
    TASKS,
    MEETINGS,
    EMAILS,
)
BY_KEY: Mapping[str, Decl] = {d.key: d for d in DECLARED}
BY_CLASS: Mapping[str, Decl] = {d.class_name: d for d in DECLARED}
ENDPOINT_OF_CLASS: Mapping[str, str] = {d.class_name: d.endpoint for d in DECLARED}

# [INF] §4.4, §8 q8: the candidates the API notes name for a lead's address.
LEAD_EMAIL_CANDIDATES = (
    "person_lead_party[main_location[email]]",
    "org_lead_party[main_location[email]]",
    "person_lead_party[email]",
)
# [INF] Stored, non-sending email statuses worth preferring to DRAFT when the tenant's picklist
# has one (a user can send a DRAFT from the Workbooks UI; only SEND sends, §4.10).
STORED_STATUSES = ("FILED", "STORED", "ARCHIVED", "LOGGED", "IMPORTED")
DRAFT, SEND = "DRAFT", "SEND"

# ====================================================================== checks


CheckStatus = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One named finding: ``ok``, ``warn`` (works, degraded or unverified) or ``fail`` (a
    feature cannot work), a message, and the one-line fix."""

    name: str
    status: CheckStatus
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix}


class SchemaMismatch(InvalidRequest):
    """The tenant lacks something a record type needs (a declaration that is required)."""

    def __init__(self, check: Check) -> None:
        super().__init__(f"{check.message}; fix: {check.fix}", source=errors.SOURCE)
        self.check = check


# ====================================================================== metadata


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "t", "1", "yes", "y")


@dataclass(frozen=True)
class Picklist:
    picklist_id: int | None
    name: str
    path: str
    unrestricted: bool


@dataclass(frozen=True)
class FieldMeta:
    name: str
    datatype: str = "string"
    createable: bool = True
    updateable: bool = True
    filterable: bool = True
    picklist: Picklist | None = None

    @property
    def writable(self) -> bool:
        return self.createable or self.updateable


@dataclass(frozen=True)
class AssocMeta:
    name: str
    datatype: str
    class_names: tuple[str, ...]
    foreign_key: str | None = None
    polymorphic: bool = False
    through: str | None = None


@dataclass(frozen=True)
class TypeMeta:
    class_name: str
    controller_path: str
    fields: Mapping[str, FieldMeta]
    associations: Mapping[str, AssocMeta]


def _picklist(raw: Any) -> Picklist | None:
    if not isinstance(raw, dict):
        return None
    pid = raw.get("picklist_id")
    return Picklist(
        int(pid) if isinstance(pid, int | str) and str(pid).isdigit() else None,
        str(raw.get("name") or ""),
        str(raw.get("path") or ""),
        _flag(raw.get("unrestricted", True)),
    )


def parse_type(raw: Mapping[str, Any]) -> TypeMeta:
    """One ``metadata/types`` entry (keys not given read as permissive defaults)."""
    fields: dict[str, FieldMeta] = {}
    for f in raw.get("fields") or []:
        if isinstance(f, dict) and f.get("name"):
            fields[str(f["name"])] = FieldMeta(
                str(f["name"]),
                str(f.get("datatype") or "string"),
                _flag(f.get("is_createable", True)),
                _flag(f.get("is_updateable", True)),
                _flag(f.get("is_filterable", True)),
                _picklist(f.get("picklist")),
            )
    assocs: dict[str, AssocMeta] = {}
    for a in raw.get("associations") or []:
        if isinstance(a, dict) and a.get("name"):
            names = a.get("class_names") or []
            assocs[str(a["name"])] = AssocMeta(
                str(a["name"]),
                str(a.get("datatype") or ""),
                tuple(str(n) for n in (names if isinstance(names, list) else [names])),
                str(a["foreign_key_name"]) if a.get("foreign_key_name") else None,
                _flag(a.get("polymorphic", False)),
                str(a["through"]) if a.get("through") else None,
            )
    return TypeMeta(
        str(raw.get("class_name") or ""), str(raw.get("controller_path") or ""), fields, assocs
    )


@dataclass
class Metadata:
    """The loaded types, by class name."""

    by_class: dict[str, TypeMeta] = field(default_factory=dict)

    def add(self, types: Iterable[TypeMeta]) -> None:
        for t in types:
            if t.class_name:
                self.by_class[t.class_name] = t

    def by_path(self, endpoint: str) -> TypeMeta | None:
        return next((t for t in self.by_class.values() if t.controller_path == endpoint), None)

    def find(self, rtype: TypeMeta, column: str) -> FieldMeta | Literal["unknown"] | None:
        """A column of ``rtype``: listed as a field, or reached through its associations
        (``main_location[email]``).  None: it does not exist; "unknown": it lies behind an
        association whose class metadata was not loaded."""
        if column in rtype.fields:
            return rtype.fields[column]
        head, _, rest = column.partition("[")
        if not rest.endswith("]") or self.lists_related(rtype, head):
            return None
        assoc = rtype.associations.get(head)
        if assoc is None:
            return None
        unknown = False
        for class_name in assoc.class_names:
            target = self.by_class.get(class_name)
            if target is None:
                unknown = True
                continue
            found = self.find(target, rest[:-1])
            if isinstance(found, FieldMeta):
                return found
            unknown = unknown or found == "unknown"
        return "unknown" if unknown else None

    @staticmethod
    def lists_related(rtype: TypeMeta, head: str) -> bool:
        """Whether the type lists ``head[...]`` columns as fields itself: then that listing is
        the whole truth (a lead's ``person_lead_party`` exposes only some Person columns)."""
        prefix = f"{head}["
        return any(name.startswith(prefix) for name in rtype.fields)

    def missing_classes(self, rtype: TypeMeta, column: str) -> set[str]:
        """Classes whose metadata would settle an "unknown" ``column``."""
        head, _, rest = column.partition("[")
        assoc = rtype.associations.get(head) if rest.endswith("]") else None
        if assoc is None or column in rtype.fields or self.lists_related(rtype, head):
            return set()
        out: set[str] = set()
        for class_name in assoc.class_names:
            target = self.by_class.get(class_name)
            out |= {class_name} if target is None else self.missing_classes(target, rest[:-1])
        return out


# ====================================================================== email links

LinkKind = Literal["link_type", "association", "render_with", "none"]
LINK_KINDS: tuple[LinkKind, ...] = ("link_type", "association", "render_with")


@dataclass(frozen=True)
class LinkStrategy:
    """How this tenant ties an email to a record (§4.10, §8 q1).

    * ``link_type``: a polymorphic link record at its own endpoint (``path``): ``email_key``,
      ``type_key``, ``id_key``;
    * ``association``: a polymorphic has-many on the email written as parallel arrays
      (``types_field``, ``ids_field``) on create or update; a write replaces the set;
    * ``render_with``: ``render_with_resource_type/id`` on create files the email against that
      one record; nothing can be added later;
    * ``none``: no mechanism: email linking is disabled and no email is created.
    """

    kind: LinkKind
    targets: frozenset[str] = frozenset()
    path: str = ""
    email_key: str = "email_id"
    type_key: str = "resource_type"
    id_key: str = "resource_id"
    types_field: str = ""
    ids_field: str = ""
    verified: bool = False  # found in the tenant's metadata (not only assumed from settings)
    reason: str = ""  # why linking is disabled (kind none), or what was found

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    @property
    def later(self) -> bool:
        """Whether links can be added to an email that already exists."""
        return self.kind in ("link_type", "association")

    def describe(self) -> str:
        if self.kind == "link_type":
            return (
                f"a link record at {self.path} ({self.email_key}, {self.type_key}, {self.id_key})"
            )
        if self.kind == "association":
            return f"the email's {self.types_field}/{self.ids_field} arrays"
        if self.kind == "render_with":
            return "render_with_resource_type/id when the email is created (one record per email)"
        return "none"


def _targets(classes: Iterable[str]) -> frozenset[str]:
    return frozenset(c for c in classes if c in LINK_TARGETS)


def _link_type(meta: Metadata, email: TypeMeta) -> LinkStrategy | None:
    for assoc in email.associations.values():
        if assoc.datatype != "has_many" or assoc.through or len(assoc.class_names) != 1:
            continue
        link = meta.by_class.get(assoc.class_names[0])
        key = assoc.foreign_key or "email_id"
        if link is None or not link.controller_path or key not in link.fields:
            continue
        if not (link.fields[key].createable and link.fields[key].filterable):
            continue
        for poly in link.associations.values():
            fk = poly.foreign_key or ""
            if poly.datatype != "belongs_to" or not poly.polymorphic or not fk.endswith("_id"):
                continue
            type_key = fk[: -len("_id")] + "_type"
            if type_key not in link.fields or not link.fields[type_key].createable:
                continue
            targets = _targets(poly.class_names)
            if targets:
                return LinkStrategy(
                    "link_type", targets, link.controller_path, key, type_key, fk, verified=True
                )
    return None


def _association(email: TypeMeta) -> LinkStrategy | None:
    for assoc in email.associations.values():
        if assoc.datatype != "has_many" or not assoc.polymorphic or not assoc.through:
            continue
        singular = assoc.name[:-1] if assoc.name.endswith("s") else assoc.name
        types, ids = email.fields.get(f"{singular}_types"), email.fields.get(f"{singular}_ids")
        if types is None or ids is None:
            continue
        if not (types.createable and types.updateable and ids.createable and ids.updateable):
            continue
        targets = _targets(assoc.class_names)
        if targets:
            return LinkStrategy(
                "association", targets, types_field=types.name, ids_field=ids.name, verified=True
            )
    return None


def _render_with(email: TypeMeta) -> LinkStrategy | None:
    assoc = email.associations.get("render_with_resource")
    kind, rid = (
        email.fields.get("render_with_resource_type"),
        email.fields.get("render_with_resource_id"),
    )
    if assoc is None or not assoc.polymorphic or kind is None or rid is None:
        return None
    if not (kind.createable and rid.createable):
        return None
    targets = _targets(assoc.class_names)
    return LinkStrategy("render_with", targets, verified=True) if targets else None


def discover_links(meta: Metadata, email: TypeMeta) -> list[LinkStrategy]:
    """Every mechanism the email's metadata shows, most capable first."""
    found = [_link_type(meta, email), _association(email), _render_with(email)]
    return [s for s in found if s is not None]


def assumed_link(kind: str, path: str) -> LinkStrategy:
    """A strategy taken from settings alone (no metadata to check it against)."""
    every = frozenset(LINK_TARGETS)
    if kind == "association":
        return LinkStrategy(
            "association",
            every,
            types_field="linked_resource_types",
            ids_field="linked_resource_ids",
        )
    if kind == "render_with":
        return LinkStrategy("render_with", every)
    if kind == "none":
        return LinkStrategy("none", reason="WORKBOOKS_EMAIL_LINK_STRATEGY is none")
    return LinkStrategy("link_type", every, path)


def choose_link(
    meta: Metadata | None, email: TypeMeta | None, setting: str, path: str
) -> tuple[LinkStrategy, Check]:
    """The strategy to use, and its check (``fail`` when email linking is off)."""
    name = "workbooks.email_link_strategy"
    fix_unknown = (
        "ask Workbooks support how an email is linked to a record (docs/workbooks-setup.md "
        "section 3), then set WORKBOOKS_EMAIL_LINK_STRATEGY"
    )
    if setting == "none":
        off = assumed_link("none", path)
        return off, Check(name, "warn", "email linking is switched off by setting", "")
    if meta is None:
        chosen = assumed_link("link_type" if setting == "auto" else setting, path)
        return chosen, Check(
            name,
            "warn",
            f"not verified (metadata unreadable): using {chosen.describe()}",
            "grant the API user read access to metadata/types",
        )
    if email is None:
        why = f"no email type ({EMAIL} at {EMAILS.endpoint}) in metadata/types"
        return LinkStrategy("none", reason=why), Check(
            name, "fail", f"email linking disabled: {why}", fix_unknown
        )
    found = discover_links(meta, email)
    names = [s.kind for s in found]
    chosen_list = found if setting == "auto" else [s for s in found if s.kind == setting]
    if not chosen_list:
        if setting != "auto" and found:
            why = f"WORKBOOKS_EMAIL_LINK_STRATEGY={setting}, but the tenant offers only: {', '.join(names)}"
            fix = f"set WORKBOOKS_EMAIL_LINK_STRATEGY to auto or one of: {', '.join(names)}"
        else:
            why = (
                "the tenant's metadata shows no link type, no link association and no "
                "render_with_resource on the email"
            )
            if setting != "auto":
                why = f"WORKBOOKS_EMAIL_LINK_STRATEGY={setting}, but {why}"
            fix = fix_unknown
        return LinkStrategy("none", reason=why), Check(
            name, "fail", f"email linking disabled: {why}", fix
        )
    chosen = chosen_list[0]
    missing = sorted(set(LINK_TARGETS) - chosen.targets)
    status: CheckStatus = "warn" if missing or chosen.kind == "render_with" else "ok"
    text = f"{chosen.kind}: {chosen.describe()}"
    if missing:
        text += f"; cannot link to {', '.join(c.rsplit('::', 1)[-1] for c in missing)}"
    fix = ""
    if chosen.kind == "render_with":
        fix = "an email can carry one record only; ask Workbooks support for a link type"
    return chosen, Check(name, status, text, fix)


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
    await client.ensure_login()  # a rejected key is a login failure, not unreadable metadata
    try:
        meta = await read_metadata(client)
    except (NotFound, InvalidRequest, ReauthRequired) as exc:
        return resolve(None, client.config, None, str(exc))
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
    except (ReauthRequired, InvalidRequest, NotFound) as exc:
        return [
            Check(
                "workbooks.login",
                "fail",
                f"login failed: {exc}",
                "check the API key and its licence",
            )
        ]
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
    tenant = await tenant_schema(client)
    return checks + list(tenant.checks)

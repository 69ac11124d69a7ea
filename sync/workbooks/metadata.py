"""The tenant's ``metadata/types`` (workbooks-api.md §2.9), parsed, and what it says about
how an email is tied to a record (§4.10, §8 q1).  Pure: ``sync.workbooks.tenant`` reads it.

Real tenants may list related columns (``main_location[email]``) as fields of the type, as the
sandbox does, or only through associations: a bracketed column is found either way, through
the association's classes when their metadata was loaded; a column behind an association whose
class was not loaded is "unknown" (unverified), not missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sync.core.checks import Check, CheckStatus

from .schema import EMAIL, EMAILS, LINK_TARGETS

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

"""The mailbox policy as a form: which fields a person may edit, how each is shown and read
back, and the checks with messages people can act on.

The fields come from ``MailboxPolicy`` itself, so a field added there (per-user schedules, for
one) shows up here without a change: its kind is read from its type (a choice for a
``Literal``, a checkbox for a bool, a number with the model's bounds, a line per value for a
list of text...).  Validation is the model's own, reported field by field without echoing the
value back.

Users edit their own policy within limits the admin sets (``Limits``): which groups of fields
(email policy, people filters, schedules) and how many people filters.  The limits are one
row in the mailboxes table (PartitionKey ``console``), beside the registry's rows.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from sync.core.state_models import FILTER_OPERATORS, FilterRule, MailboxPolicy, merge_policy

from .web import Form

# The words for each operator the model accepts (``FILTER_OPERATORS``): a rule set through the
# CLI or API with any of them shows, and saves again, here.
FILTER_OPS: dict[str, str] = {
    "eq": "is",
    "xeq": "is exactly",
    "ne": "is not",
    "ct": "contains",
    "nct": "does not contain",
    "bg": "begins with",
    "nbg": "does not begin with",
    "gt": "is after / greater than",
    "ge": "is on or after / at least",
    "lt": "is before / less than",
    "le": "is on or before / at most",
    "blank": "is blank",
    "not_blank": "is not blank",
    "true": "is true",
    "false": "is false",
}
if set(FILTER_OPS) != set(FILTER_OPERATORS):  # a new operator needs its words here
    raise RuntimeError(f"FILTER_OPS does not match FILTER_OPERATORS: {sorted(FILTER_OPS)}")
SPARE_RULES = 2  # empty filter rows offered below the existing ones (no script needed)

HELP: dict[str, str] = {
    "email_policy": "shared: only emails you mark with the category are filed in Workbooks; "
    "auto: every sent email to a known Person or Sales Lead is filed.",
    "category": "The Outlook category that shares an item with Workbooks.",
    "create_from_outlook": "Create Workbooks records for new shared contacts, tasks and meetings.",
    "outlook_delete": "When you delete a synced item in Outlook: unlink (keep the record, do "
    "not put it back), restore (it comes back), delete (delete the record too).",
    "conflict_policy": "When both sides changed the same field: the latest change wins, or "
    "always Workbooks, or always Outlook.",
    "mass_change_share": "The brake: a run that would change or delete more than this share of "
    "the linked items stops and reports instead (0-1).",
    "mass_change_min_items": "The brake applies only above this many changed items.",
    "people_filters": "Narrow which Workbooks People sync: each rule is a Workbooks field, a "
    "test and a value (e.g. employer_name contains Fabrikam).",
    "people_filter_mode": "and: a person must match every rule; or: any rule.",
    "activity_filters": "Narrow which Workbooks activities sync, like the people filters.",
    "activity_filter_mode": "and: every rule; or: any rule.",
    "include_completed_activities": "Also sync activities already completed.",
    "people_queues": "Team Person queue ids whose records also count as the user's.",
    "activity_queues": "Team Activity queue ids whose records also count as the user's.",
    "scope_refresh_hours": "A full read of the user's Workbooks scope this often (0 = never).",
    "calendar_past_days": "Days of past meetings kept in sync.",
    "calendar_future_days": "Days of future meetings kept in sync.",
    "recurring_events": "next: one Workbooks meeting per Outlook series, for its next "
    "occurrence; skip: recurring meetings are not synced.",
    "internal_domains": "Your organisation's own domains, one per line: emails to them are "
    "never filed.",
    "blocklist": "Addresses or domains never filed, one per line.",
    "retro_lookback_days": "How far back an email is linked when its recipient later appears "
    "in Workbooks.",
    "time_zone": "IANA zone, e.g. Europe/London; empty = the Workbooks user's zone.",
}

Group = Literal["email", "people", "schedules"]
ALL_GROUPS: tuple[Group, ...] = ("email", "people", "schedules")
GROUP_LABELS: dict[str, str] = {
    "email": "Email policy",
    "people": "People filters",
    "schedules": "Sync schedules",
}
GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email_policy", "category", "internal_domains", "blocklist"),
    "people": ("people_filters", "people_filter_mode"),
}


def schedule_fields() -> tuple[str, ...]:
    """Policy fields that are schedules (per-user intervals, when the model has them)."""
    return tuple(
        n for n in MailboxPolicy.model_fields if any(w in n for w in ("schedule", "interval"))
    )


def group_fields(group: str) -> tuple[str, ...]:
    if group == "schedules":
        return schedule_fields()
    return tuple(n for n in GROUP_FIELDS.get(group, ()) if n in MailboxPolicy.model_fields)


class Limits(BaseModel):
    """What users may change in their own policy."""

    groups: list[Group] = Field(default_factory=lambda: list(ALL_GROUPS))
    max_people_filters: int = Field(default=10, ge=0, le=50)

    def editable(self) -> tuple[str, ...]:
        return tuple(n for g in self.groups for n in group_fields(g))


LIMITS_PK, LIMITS_RK = "console", "limits"


async def load_limits(services: Any) -> Limits:
    store = services.store
    table = store.service.get_table_client(f"{store.prefix}mailboxes")
    from azure.core.exceptions import ResourceNotFoundError

    try:
        row = await table.get_entity(LIMITS_PK, LIMITS_RK)
    except ResourceNotFoundError:
        return Limits()
    return Limits.model_validate_json(row["data"])


async def save_limits(services: Any, limits: Limits) -> None:
    store = services.store
    table = store.service.get_table_client(f"{store.prefix}mailboxes")
    row = {"PartitionKey": LIMITS_PK, "RowKey": LIMITS_RK, "data": limits.model_dump_json()}
    await table.upsert_entity(row)


# ----------------------------------------------------------------------- form fields

Kind = Literal["choice", "bool", "int", "float", "text", "lines", "ints", "rules", "json"]


@dataclass
class FieldSpec:
    name: str
    kind: Kind
    label: str
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_items: int | None = None
    optional: bool = False


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def spec_for(name: str) -> FieldSpec:
    info = MailboxPolicy.model_fields[name]
    annotation, optional = _unwrap_optional(info.annotation)
    spec = FieldSpec(name, "json", _label(name), HELP.get(name, info.description or ""))
    spec.optional = optional
    for meta in info.metadata:  # annotated-types constraints (Ge, Gt, Le, Lt, MaxLen)
        low = getattr(meta, "ge", getattr(meta, "gt", None))
        high = getattr(meta, "le", getattr(meta, "lt", None))
        if isinstance(low, int | float):
            spec.minimum = float(low)
        if isinstance(high, int | float):
            spec.maximum = float(high)
        if isinstance(getattr(meta, "max_length", None), int):
            spec.max_items = meta.max_length
    origin = typing.get_origin(annotation)
    if origin is Literal:
        spec.kind, spec.choices = "choice", tuple(str(a) for a in typing.get_args(annotation))
    elif annotation is bool:
        spec.kind = "bool"
    elif annotation is int:
        spec.kind = "int"
    elif annotation is float:
        spec.kind = "float"
    elif annotation is str:
        spec.kind = "text"
    elif origin is list:
        (item,) = typing.get_args(annotation)
        spec.kind = {str: "lines", int: "ints", FilterRule: "rules"}.get(item, "json")  # type: ignore[assignment]
    return spec


def specs(names: Iterable[str]) -> list[FieldSpec]:
    return [spec_for(n) for n in names if n in MailboxPolicy.model_fields]


def form_value(spec: FieldSpec, policy: MailboxPolicy) -> Any:
    """The value as the form shows it."""
    value = getattr(policy, spec.name)
    if spec.kind == "lines":
        return "\n".join(value)
    if spec.kind == "ints":
        return ", ".join(str(v) for v in value)
    if spec.kind == "rules":
        return [r.model_dump() for r in value]
    if spec.kind == "json":
        return json.dumps(value, default=str)
    if value is None:
        return ""
    return value


@dataclass
class Parsed:
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    shown: dict[str, Any] = field(default_factory=dict)  # what to put back into the form


def _rules(spec: FieldSpec, form: Form) -> tuple[list[dict[str, str]], str]:
    rules: list[dict[str, str]] = []
    for i in range(200):
        prefix = f"{spec.name}-{i}-"
        if f"{prefix}field" not in form:
            break
        fld = form.get(f"{prefix}field").strip()
        op = form.get(f"{prefix}op").strip() or "eq"
        value = form.get(f"{prefix}value")
        if not fld:
            continue  # an empty row: nothing, or a rule the person cleared to remove it
        if op not in FILTER_OPS:
            return rules, f"rule {i + 1}: choose a test from the list"
        rules.append({"field": fld, "op": op, "value": value})
    return rules, ""


def parse(form: Form, names: Iterable[str]) -> Parsed:
    """The submitted values of the editable fields ``names``, with a message per field that
    cannot be read (a number that is not one).  Model validation happens in ``validate``."""
    out = Parsed()
    for spec in specs(names):
        raw = form.get(spec.name)
        try:
            if spec.kind == "bool":
                out.values[spec.name] = spec.name in form and raw not in ("", "0", "false")
                out.shown[spec.name] = out.values[spec.name]
                continue
            if spec.kind == "rules":
                rules, problem = _rules(spec, form)
                out.shown[spec.name] = rules
                if problem:
                    out.errors[spec.name] = problem
                out.values[spec.name] = rules
                continue
            out.shown[spec.name] = raw
            if spec.kind == "int":
                out.values[spec.name] = int(raw.strip())
            elif spec.kind == "float":
                out.values[spec.name] = float(raw.strip())
            elif spec.kind == "lines":
                out.values[spec.name] = [v.strip() for v in raw.splitlines() if v.strip()]
            elif spec.kind == "ints":
                parts = raw.replace(",", " ").split()
                out.values[spec.name] = [int(p) for p in parts]
            elif spec.kind == "json":
                out.values[spec.name] = json.loads(raw) if raw.strip() else None
            elif spec.kind == "text" and spec.optional and not raw.strip():
                out.values[spec.name] = None
            else:
                out.values[spec.name] = raw
        except ValueError:
            kind = {"int": "a whole number", "float": "a number", "ints": "whole numbers"}
            out.errors[spec.name] = f"enter {kind.get(spec.kind, 'a valid value')}"
    return out


def validate(
    current: MailboxPolicy, parsed: Parsed, *, max_people_filters: int | None = None
) -> MailboxPolicy | None:
    """The new policy, or None with ``parsed.errors`` filled (field -> message)."""
    if max_people_filters is not None:
        rules = parsed.values.get("people_filters")
        if isinstance(rules, list) and len(rules) > max_people_filters:
            parsed.errors["people_filters"] = (
                f"at most {max_people_filters} people filters (your administrator's limit)"
            )
    if parsed.errors:
        return None
    try:
        return merge_policy(current, parsed.values)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            name = loc[0] if loc else "policy"
            where = f"rule {int(loc[1]) + 1}: " if len(loc) > 2 and loc[1].isdigit() else ""
            message = str(err["msg"]).removeprefix("Value error, ")
            parsed.errors.setdefault(name, where + message)
        return None


def changed_fields(before: MailboxPolicy, after: MailboxPolicy) -> list[str]:
    old, new = before.model_dump(), after.model_dump()
    return [n for n in MailboxPolicy.model_fields if old.get(n) != new.get(n)]


def rule_rows(value: Any) -> list[dict[str, str]]:
    """The filter rows a form shows: the rules, then ``SPARE_RULES`` empty rows."""
    rules = [dict(r) for r in value] if isinstance(value, list) else []
    return rules + [{"field": "", "op": "eq", "value": ""}] * SPARE_RULES


def admin_fields() -> tuple[str, ...]:
    return tuple(MailboxPolicy.model_fields)


def changed_scope(names: Iterable[str]) -> bool:
    """Do these changes alter which records are in scope (a full sync applies them)?"""
    scope = {"people_filters", "people_filter_mode", "activity_filters", "activity_filter_mode"}
    scope |= {"people_queues", "activity_queues", "include_completed_activities"}
    return any(n in scope for n in names)


def describe_groups(limits: Limits) -> list[str]:
    return [GROUP_LABELS[g] for g in limits.groups]

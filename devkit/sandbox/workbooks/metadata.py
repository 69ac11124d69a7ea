"""``metadata/types``: the schema as the README's "Metadata" section describes it (§2.9).

Rendered from ``types.Schema``, the same objects that decide what reads and writes accept, so a
client that trusts the metadata is never contradicted by the behaviour.
"""

from __future__ import annotations

from typing import Any

from .params import WireParams
from .reads import refuse
from .store import ReadContext, SandboxState
from .types import PICKLIST_ENTRIES_PATH, Association, Field, Picklist, RecordType, Schema

# The keys of one type's hash, in the README's order.
METADATA_COLUMNS = (
    "id",
    "lock_version",
    "class_name",
    "base_class_name",
    "human_class_name",
    "human_class_name_plural",
    "human_class_description",
    "instances_described_by",
    "icon",
    "help_url",
    "controller_path",
    "actions",
    "fields",
    "associations",
)
# Where a picklist's values are read: class / value field / display field (README "Metadata").
PICKLIST_PATH = "picklist_data/Private_PicklistEntry/value/value"
WRITE_ACTIONS = ("index", "show", "new", "create", "edit", "update", "destroy")
READ_ACTIONS = ("index", "show")


def _title(name: str) -> str:
    return name.replace("[", " ").replace("]", "").replace("_", " ").strip().capitalize()


def field_entry(column: Field, picklists: dict[str, Picklist]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": column.name,
        "title": _title(column.name),
        "datatype": column.datatype,
        "default_value": None,
        "is_createable": column.createable,
        "is_updateable": column.updateable,
        "is_filterable": column.filterable,
        "is_nullable": column.nullable,
        "required": column.required,
    }
    if column.picklist is not None:
        picklist = picklists[column.picklist]
        entry["picklist"] = {
            "auto_create": False,
            "class_name": "Private::PicklistEntry",
            "display_field": "value",
            "value_field": "value",
            "name": picklist.name,
            "picklist_id": picklist.picklist_id,
            "path": PICKLIST_PATH,
            "return_fields": [],
            "find_method": None,
            "unrestricted": not picklist.restricted,
        }
    return entry


def association_entry(association: Association) -> dict[str, Any]:
    many = association.datatype == "has_many"
    return {
        "name": association.name,
        "title": _title(association.name),
        "description": f"{_title(association.name)} ({', '.join(association.class_names)})",
        "datatype": association.datatype,
        "class_names": list(association.class_names),
        "foreign_key_name": association.foreign_key_name,
        "polymorphic": association.polymorphic,
        "through": association.through,
        "minimum_n": 0,
        "maximum_n": None if many else 1,
    }


def type_entry(schema: Schema, rtype: RecordType, index: int) -> dict[str, Any]:
    permitted = schema.permitted(rtype)
    actions = WRITE_ACTIONS if rtype.writable else READ_ACTIONS
    human = rtype.human_name or rtype.class_name.rsplit("::", 1)[-1]
    return {
        "id": index,
        "lock_version": 0,
        "class_name": rtype.class_name,
        "base_class_name": rtype.base_class_name,
        "human_class_name": human,
        "human_class_name_plural": rtype.human_plural or f"{human}s",
        "human_class_description": f"{rtype.human_plural or human} in the sandbox",
        "instances_described_by": rtype.described_by,
        "icon": rtype.endpoint.rsplit("/", 1)[-1],
        "help_url": None,
        "controller_path": rtype.endpoint,
        "actions": [{"name": a, "permitted": permitted} for a in actions],
        "fields": [field_entry(c, schema.picklists) for c in rtype.columns.values()],
        "associations": [association_entry(a) for a in rtype.associations],
    }


def metadata_types(schema: Schema, params: WireParams, ctx: ReadContext) -> dict[str, Any]:
    """All served types, or those of ``class_names[]``, with ``_select_columns[]`` keys."""
    wanted = set(params.getlist("class_names"))
    columns = params.getlist("_select_columns") or list(METADATA_COLUMNS)
    if ctx.strict:
        unknown = [c for c in columns if c not in METADATA_COLUMNS]
        if unknown:
            raise refuse(
                f"The attribute '{unknown[0]}' given in _select_columns[] is not recognised "
                f"for metadata types."
            )
    data = []
    for index, rtype in enumerate(schema.all_types(), start=1):
        if wanted and rtype.class_name not in wanted:
            continue
        entry = type_entry(schema, rtype, index)
        data.append({c: entry.get(c) for c in columns})
    return {"success": True, "data": data, "total": len(data)}


def picklist_data(state: SandboxState, path: str, params: WireParams) -> dict[str, Any] | None:
    """``picklist_data/Private_PicklistEntry/<value field>/<display field>`` with
    ``picklist_id`` (comma-separated for several) and the documented ``query``: a left-most,
    case-insensitive match on the display field.  None for any other class or field."""
    parts = path.split("/")
    entries = state.schema.types[PICKLIST_ENTRIES_PATH]
    if len(parts) != 4 or parts[1] != "Private_PicklistEntry":
        return None
    value_field, display_field = parts[2], parts[3]
    if not (entries.knows(value_field) and entries.knows(display_field)):
        return None
    wanted = {p.strip() for p in (params.get("picklist_id") or "").split(",") if p.strip()}
    query = (params.get("query") or "").lower()
    rows = sorted(
        (
            r
            for r in state.tables[PICKLIST_ENTRIES_PATH].values()
            if not r.get("is_deleted")
            and (not wanted or str(r.get("picklist_id")) in wanted)
            and str(r.get(display_field) or "").lower().startswith(query)
        ),
        key=lambda r: (r.get("picklist_id") or 0, r.get("display_order") or 0, r["id"]),
    )
    data = [{value_field: r.get(value_field), display_field: r.get(display_field)} for r in rows]
    return {"success": True, "data": data, "total": len(data)}

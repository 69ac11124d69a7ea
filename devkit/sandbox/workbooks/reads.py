"""GET handling: filter, sort, page, select and format (workbooks-api.md §2, §7.8-7.14)."""

from __future__ import annotations

import secrets
from typing import Any

from .filters import AttributeFailure, Filter, Predicate, compile_fm, parse_filters, split_in_list
from .params import WireParams, attribute_name
from .store import ReadContext, Record, SandboxState
from .types import RecordType

LOCATIONS = "crm/party_locations"


def matching_rows(
    state: SandboxState,
    rows: list[tuple[RecordType, Record]],
    filters: list[Filter],
    fm: str | None,
    ctx: ReadContext,
    *,
    include_deleted: bool,
) -> list[tuple[RecordType, Record]]:
    """Rows passing the filters; soft-deleted rows only when ``include_deleted``."""
    today = state.clock.now().date()
    predicates = [Predicate(f, today) for f in filters]
    matcher = compile_fm(fm, len(filters)) if filters else None
    wanted_ids = id_candidates(filters, fm)
    if wanted_ids is not None:  # an index lookup, as a database would do for id filters
        rows = [pair for pair in rows if pair[1]["id"] in wanted_ids]
    result = []
    for rtype, record in rows:
        if record.get("is_deleted") and not include_deleted:
            continue
        if matcher is not None:
            results = [
                p.test(state.field_value(rtype, record, p.flt.field, ctx)) for p in predicates
            ]
            if not matcher(results):
                continue
        result.append((rtype, record))
    return result


def id_candidates(filters: list[Filter], fm: str | None) -> set[int] | None:
    """Ids a row must have when the filters pin ``id`` (``id eq`` under AND, or all-``id eq``
    under OR, as in every write's working set); None when they do not."""
    mode = (fm or "and").strip().lower()
    pins = [f for f in filters if f.field == "id" and f.op in ("eq", "xeq")]
    if not pins or (mode == "or" and len(pins) != len(filters)) or mode not in ("and", "or"):
        return None
    sets = [
        {int(v) for v in split_in_list(f.criterion) if v.strip().lstrip("-").isdigit()}
        for f in pins
    ]
    return set.union(*sets) if mode == "or" else set.intersection(*sets)


def _sort_keys(params: WireParams) -> list[tuple[str, bool]]:
    """(field, descending) pairs from ``_sort``/``_dir`` or their array forms."""
    sorts, dirs = params.getlist("_sort"), params.getlist("_dir")
    keys = []
    for i, name in enumerate(sorts):
        direction = dirs[i] if i < len(dirs) else "ASC"
        keys.append((attribute_name(name)[0], direction.strip().upper() == "DESC"))
    return keys


def _sortable(value: Any) -> tuple[int, Any]:
    """Nulls first; strings case-insensitively; everything else by its own order."""
    if value is None:
        return (0, 0)
    if isinstance(value, str):
        return (1, value.lower())
    if hasattr(value, "when"):
        return (1, value.when)
    return (1, value)


def sort_rows(
    state: SandboxState, rows: list[tuple[RecordType, Record]], params: WireParams, ctx: ReadContext
) -> list[tuple[RecordType, Record]]:
    """Stable multi-key sort with ``id ASC`` as the implicit final tiebreak."""
    ordered = sorted(rows, key=lambda pair: pair[1]["id"])
    for name, descending in reversed(_sort_keys(params)):
        ordered.sort(
            key=lambda pair, n=name: _sortable(  # type: ignore[misc]
                state.field_value(pair[0], pair[1], n, ctx)
            ),
            reverse=descending,
        )
    return ordered


def page_bounds(state: SandboxState, params: WireParams, endpoint: str) -> tuple[int, int]:
    """``_limit`` counts only together with ``_start`` (the documented quirk)."""
    config = state.config
    start_text, limit_text = params.get("_start"), params.get("_limit")
    start, limit = 0, config.default_page_size
    if start_text is not None:
        start = max(0, int(start_text or 0))
        if limit_text not in (None, ""):
            limit = max(0, int(limit_text))
    cap = config.email_read_cap if endpoint == "email/emails" else config.read_hard_cap
    if cap is not None:
        limit = min(limit, cap)
    return start, limit


def reference() -> str:
    """A support reference like the ones real failures end with (``606963-3797496-40596``)."""
    return "-".join(str(secrets.randbelow(10**n)).zfill(n) for n in (6, 7, 5))


def refuse(text: str) -> AttributeFailure:
    return AttributeFailure(f"{text} Reference: {reference()}")


def check_names(
    rtype: RecordType,
    filters: list[Filter],
    columns: list[str] | None,
    sorts: list[str],
    ctx: ReadContext,
) -> None:
    """Strict attribute checking of a read (§1.5, §3.8) [INF text]: every selected column,
    filter field and sort field must be an attribute of the type; and a filter must be on a
    filterable one (``is_filterable`` in metadata/types)."""
    if ctx.strict:
        for where, names in (
            ("_select_columns[]", columns or []),
            ("_ff[]", [f.field for f in filters]),
            ("_sort", sorts),
        ):
            for name in names:
                if not rtype.knows(name):
                    raise refuse(
                        f"The attribute '{name}' given in {where} is not recognised "
                        f"for {rtype.class_name}."
                    )
    if ctx.check_filterable:
        for flt in filters:
            if rtype.knows(flt.field) and not rtype.filterable(flt.field):
                raise refuse(
                    f"The attribute '{flt.field}' of {rtype.class_name} cannot be used in a filter."
                )


def read(
    state: SandboxState,
    endpoint: str,
    rows: list[tuple[RecordType, Record]],
    params: WireParams,
    ctx: ReadContext,
) -> dict[str, Any]:
    """The whole read: ``{"success": true, "data": [...], "total": N}``."""
    filters = parse_filters(params)
    columns = [attribute_name(c)[0] for c in params.getlist("_select_columns")] or None
    rtype = state.schema.served(endpoint)
    if rtype is not None and (ctx.strict or ctx.check_filterable):
        check_names(rtype, filters, columns, [n for n, _ in _sort_keys(params)], ctx)
    include_deleted = any(f.field == "is_deleted" for f in filters)
    if (
        endpoint == LOCATIONS
        and state.config.deleted_owner_locations == "hidden"
        and not include_deleted
    ):
        rows = [pair for pair in rows if not state.owner_deleted(pair[1])]
    found = matching_rows(
        state, rows, filters, params.get("_fm"), ctx, include_deleted=include_deleted
    )
    found = sort_rows(state, found, params, ctx)
    start, limit = page_bounds(state, params, endpoint)
    page = found[start : start + limit]
    data = [state.output_row(rtype, record, ctx, columns) for rtype, record in page]
    skip_total = params.flag("__skip_total_rows") or params.flag("_skip_total_rows")
    return {"success": True, "data": data, "total": len(data) if skip_total else len(found)}

"""Wire helpers: Graph's error JSON, URL segment parsing, Prefer headers, item rendering."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from devkit.sandbox.graph.state import ODATA_TYPES, Item, iso, utcnow

_KEY_SEGMENT = re.compile(r"^([A-Za-z]+)\('([^']*)'\)$")
_PREFER_MAXPAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
_PREFER_IMMUTABLE = re.compile(r"IdType\s*=\s*\"?ImmutableId\"?", re.IGNORECASE)
_EXT_FILTER = re.compile(r"id\s+eq\s+'([^']+)'", re.IGNORECASE)


class GraphFailure(Exception):
    """A Graph error answer raised from deep inside a route (status, code, message)."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers


def failure_response(exc: GraphFailure) -> web.Response:
    return graph_error(exc.status, exc.code, exc.message, exc.headers)


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GraphFailure(400, "BadRequest", "Unable to read JSON request payload.") from exc
    if not isinstance(data, dict):
        raise GraphFailure(400, "BadRequest", "Expected a JSON object.")
    return data


def graph_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Graph's error envelope: {"error": {"code", "message", "innerError": {...}}}."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": iso(utcnow())[:19],
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }
    return web.json_response(body, status=status, headers=headers)


def split_path(tail: str) -> list[str]:
    """`mailFolders('sentitems')/messages/delta()` -> [mailFolders, sentitems, messages, delta].

    Graph accepts key-in-parentheses and key-as-segment forms, and the SDK sends `delta()`.
    """
    out: list[str] = []
    for raw in tail.strip("/").split("/"):
        seg = unquote(raw)
        if not seg:
            continue
        match = _KEY_SEGMENT.match(seg)
        if match:
            out.extend([match.group(1), match.group(2)])
        elif seg.lower() == "delta()":
            out.append("delta")
        else:
            out.append(seg)
    return out


def prefer_values(request: web.Request) -> list[str]:
    return [v for h in request.headers.getall("Prefer", []) for v in h.split(",") if v.strip()]


def max_page_size(request: web.Request) -> int | None:
    for value in prefer_values(request):
        match = _PREFER_MAXPAGE.search(value)
        if match:
            return int(match.group(1))
    return None


def wants_immutable(request: web.Request) -> bool:
    return any(_PREFER_IMMUTABLE.search(v) for v in prefer_values(request))


def expanded_ext_ids(expand: str) -> list[str]:
    """Ids named in `$expand=singleValueExtendedProperties($filter=id eq '...')`."""
    if "singlevalueextendedproperties" not in expand.lower():
        return []
    return [m.lower() for m in _EXT_FILTER.findall(expand)]


def render(item: Item, *, immutable: bool, select: str = "", expand: str = "") -> dict[str, Any]:
    """An item as Graph returns it; `$select` trims, `$expand` adds ext props / linked resources."""
    return finish(base_fields(item, immutable), item, select=select, expand=expand)


def base_fields(item: Item, immutable: bool) -> dict[str, Any]:
    """Every property of an item before `$select` / `$expand`."""
    item_id = item.immutable_id if immutable else item.rest_id
    out: dict[str, Any] = {
        "@odata.type": ODATA_TYPES[item.kind],
        "@odata.etag": f'W/"{item.change_key}"',
        "id": item_id,
        "createdDateTime": iso(item.created),
        "lastModifiedDateTime": iso(item.modified),
        "changeKey": item.change_key,
        "categories": [],
    }
    if item.kind in ("message", "contact"):
        out["parentFolderId"] = item.container.split(":", 1)[1]
    out.update(item.data)
    return out


def finish(
    out: dict[str, Any],
    item: Item,
    *,
    select: str = "",
    expand: str = "",
    ext: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Apply `$select`, then add what `$expand` asked for (from `ext`, default the item's)."""
    if select:
        keep = {s.strip().lower() for s in select.split(",")} | {"id", "@odata.type", "@odata.etag"}
        out = {k: v for k, v in out.items() if k.lower() in keep}
    values = item.ext if ext is None else ext
    wanted = expanded_ext_ids(expand)
    props = [{"id": pid, "value": values[pid]} for pid in wanted if pid in values]
    if props:
        # Graph echoes the id in the canonical form it was written with; we keep it lower-cased
        # and clients compare case-insensitively.
        out["singleValueExtendedProperties"] = props
    if item.kind == "task" and "linkedresources" in expand.lower():
        out["linkedResources"] = list(item.linked)
    return out

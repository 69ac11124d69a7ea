"""Operator HTTP API: manual sync with progress, status, and a mailbox's two-way items that
need a person (ambiguous, duplicate, removed by the user).  Function-key protected."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from sync.blueprints.responses import json_response, too_large
from sync.core.errors import NotFound
from sync.core.keys import normalise_address
from sync.engine.runner import request_manual
from sync.runtime import get_services
from sync.status import status_report, two_way_items

bp = func.Blueprint()
MODES = ("push", "full", "resync")


def _body(req: func.HttpRequest) -> dict[str, Any] | None:
    """The JSON object body ({} when empty); None when it is not one."""
    body = req.get_body() or b""
    if not body.strip():
        return {}
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _mode(req: func.HttpRequest, payload: dict[str, Any]) -> str | None:
    mode = payload.get("kind", req.params.get("kind"))
    if mode is None or mode == "":
        return "full"
    return mode if isinstance(mode, str) else None  # {"kind": 0} is a mistake, not "full"


@bp.function_name("manual_sync")
@bp.route(route="sync/{mailbox}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def manual_sync(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := too_large(req)) is not None:
        return refused
    mailbox = normalise_address(req.route_params.get("mailbox", ""))
    payload = _body(req)
    mode = None if payload is None else _mode(req, payload)
    if payload is None or mode not in MODES:
        return json_response({"error": f"'kind' must be one of {', '.join(MODES)}"}, 400)
    restore = payload.get("restore_removed", False)
    if not isinstance(restore, bool) or (restore and mode != "resync"):
        return json_response(
            {"error": "'restore_removed' is true or false, and true only with kind 'resync'"},
            400,
        )
    services = await get_services()
    record = await services.store.mailboxes.get(mailbox)
    if record is None:
        return json_response({"error": f"mailbox {mailbox!r} is not registered"}, 404)
    if not record.enabled:
        return json_response(
            {"error": f"mailbox {mailbox!r} is disabled: {record.disabled_reason}"}, 409
        )
    status = await request_manual(
        services, mailbox, mode, {"restore_removed": "1"} if restore else None
    )
    return json_response(
        {
            "job_id": status.job_id,
            "state": status.state,
            "status_url": f"/api/sync/jobs/{status.job_id}",
        },
        202,
    )


@bp.function_name("manual_sync_status")
@bp.route(route="sync/jobs/{job_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def manual_sync_status(req: func.HttpRequest) -> func.HttpResponse:
    services = await get_services()
    status = await services.store.jobs.get(req.route_params.get("job_id", ""))
    if status is None:
        return json_response({"error": "no such job"}, 404)
    return json_response(status.model_dump(mode="json"))


@bp.function_name("status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def status(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(await status_report(await get_services()))


@bp.function_name("two_way_items")
@bp.route(route="items/{mailbox}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def items(req: func.HttpRequest) -> func.HttpResponse:
    """``?stream=contacts|events|todo`` (default: all three), as ``python -m sync items``."""
    mailbox = normalise_address(req.route_params.get("mailbox", ""))
    try:
        report = await two_way_items(await get_services(), mailbox, req.params.get("stream"))
    except NotFound as exc:
        return json_response({"error": str(exc)}, 404)
    except ValueError as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response(report)

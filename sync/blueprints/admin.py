"""Operator HTTP API: manual sync with progress, status. Function-key protected."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from sync.core.keys import normalise_address
from sync.engine.runner import request_manual
from sync.runtime import get_services
from sync.status import status_report

bp = func.Blueprint()
MODES = ("push", "full", "resync")
MAX_BODY_BYTES = 16 * 1024  # the body is {"kind": ...}; anything bigger is not a request of ours


def _json(payload: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(payload, default=str, indent=1), status_code=status, mimetype="application/json"
    )


def _mode(req: func.HttpRequest) -> str | None:
    body = req.get_body() or b""
    mode = req.params.get("kind")
    if body.strip():
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(payload, dict):
            return None
        mode = payload.get("kind", mode)
    return mode or "full"


@bp.function_name("manual_sync")
@bp.route(route="sync/{mailbox}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def manual_sync(req: func.HttpRequest) -> func.HttpResponse:
    if len(req.get_body() or b"") > MAX_BODY_BYTES:
        return _json({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
    mailbox = normalise_address(req.route_params.get("mailbox", ""))
    mode = _mode(req)
    if mode not in MODES:
        return _json({"error": f"'kind' must be one of {', '.join(MODES)}"}, 400)
    services = await get_services()
    record = await services.store.mailboxes.get(mailbox)
    if record is None:
        return _json({"error": f"mailbox {mailbox!r} is not registered"}, 404)
    if not record.enabled:
        return _json({"error": f"mailbox {mailbox!r} is disabled: {record.disabled_reason}"}, 409)
    status = await request_manual(services, mailbox, mode)
    return _json(
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
        return _json({"error": "no such job"}, 404)
    return _json(status.model_dump(mode="json"))


@bp.function_name("status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def status(req: func.HttpRequest) -> func.HttpResponse:
    return _json(await status_report(await get_services()))

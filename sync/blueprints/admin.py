"""Operator HTTP API: manual sync with progress, status. Function-key protected."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from sync.blueprints.responses import json_response, read_body
from sync.core.bodies import expect_object, no_unknown_fields
from sync.core.keys import normalise_address
from sync.engine.runner import request_manual
from sync.runtime import get_services
from sync.status import status_report

bp = func.Blueprint()
MODES = ("push", "full", "resync")


def _mode(payload: Any, query: str | None) -> str | None:
    """The body's ``kind`` (an empty body: ``?kind=``; neither: "full"); None if it is not a
    string.  BodyError for a body that is not ``{"kind": ...}``."""
    mode: Any = query
    if payload is not None:
        body = expect_object(payload)
        no_unknown_fields(body, ("kind",))
        mode = body.get("kind", mode)
    if mode is None or mode == "":
        return "full"
    return mode if isinstance(mode, str) else None  # {"kind": 0} is a mistake, not "full"


@bp.function_name("manual_sync")
@bp.route(route="sync/{mailbox}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def manual_sync(req: func.HttpRequest) -> func.HttpResponse:
    mode = read_body(req, lambda body: _mode(body, req.params.get("kind")), allow_empty=True)
    if isinstance(mode, func.HttpResponse):
        return mode
    mailbox = normalise_address(req.route_params.get("mailbox", ""))
    if mode not in MODES:
        return json_response({"error": f"'kind' must be one of {', '.join(MODES)}"}, 400)
    services = await get_services()
    record = await services.store.mailboxes.get(mailbox)
    if record is None:
        return json_response({"error": f"mailbox {mailbox!r} is not registered"}, 404)
    if not record.enabled:
        return json_response(
            {"error": f"mailbox {mailbox!r} is disabled: {record.disabled_reason}"}, 409
        )
    status = await request_manual(services, mailbox, mode)
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

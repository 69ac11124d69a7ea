"""Operator HTTP API: manual sync with progress, status, a mailbox's two-way items that need a
person (ambiguous, duplicate, removed by the user), and ``doctor`` (live checks of a mailbox's
setup).  Function-key protected."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from sync.blueprints.responses import json_response, read_body
from sync.core.bodies import BodyError, expect_object, no_unknown_fields
from sync.core.errors import NotFound
from sync.core.keys import normalise_address
from sync.engine.doctor import run_doctor
from sync.engine.runner import request_manual
from sync.runtime import get_services
from sync.status import status_report, two_way_items

bp = func.Blueprint()
MODES = ("push", "full", "resync")


def _request(payload: Any, query: str | None) -> tuple[str | None, bool]:
    """(the body's ``kind``, ``restore_removed``).  An empty body: ``?kind=``, and "full" when
    neither says; ``kind`` None if it is not a string.  BodyError for a body that is not
    ``{"kind": ..., "restore_removed": ...}``."""
    mode: Any = query
    restore: Any = False
    if payload is not None:
        body = expect_object(payload)
        no_unknown_fields(body, ("kind", "restore_removed"))
        mode = body.get("kind", mode)
        restore = body.get("restore_removed", False)
    if not isinstance(restore, bool):
        raise BodyError(400, "'restore_removed' is true or false")
    if mode is None or mode == "":
        return "full", restore
    return (mode if isinstance(mode, str) else None), restore  # {"kind": 0} is a mistake


@bp.function_name("manual_sync")
@bp.route(route="sync/{mailbox}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def manual_sync(req: func.HttpRequest) -> func.HttpResponse:
    parsed = read_body(req, lambda body: _request(body, req.params.get("kind")), allow_empty=True)
    if isinstance(parsed, func.HttpResponse):
        return parsed
    mode, restore = parsed
    mailbox = normalise_address(req.route_params.get("mailbox", ""))
    if mode not in MODES:
        return json_response({"error": f"'kind' must be one of {', '.join(MODES)}"}, 400)
    if restore and mode != "resync":
        return json_response({"error": "'restore_removed' is true only with kind 'resync'"}, 400)
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


@bp.function_name("doctor")
@bp.route(route="doctor/{mailbox}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def doctor(req: func.HttpRequest) -> func.HttpResponse:
    """Check a registered mailbox's setup live, as ``python -m sync doctor``, and record the
    report as its last one: 200 with the report (its ``status`` is ok / warn / fail), 404 for
    an unknown mailbox.  It runs where the service runs, so it signs in to Graph with the
    deployment's credential, which an operator's machine may not have."""
    mailbox = normalise_address(req.route_params.get("mailbox", ""))
    services = await get_services()
    record = await services.store.mailboxes.get(mailbox)
    if record is None:
        return json_response({"error": f"mailbox {mailbox!r} is not registered"}, 404)
    report = await run_doctor(services, record)
    return json_response(report.as_dict())

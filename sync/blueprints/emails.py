"""HTTP API for sent-email linking (function-key protected):

* ``GET  /api/emails/{mailbox}/{message}`` - why a message was or was not linked
  (``message``: Graph immutable id or internetMessageId, URL-encoded; an id containing ``/``
  goes in the query instead: ``/api/emails/{mailbox}/by-id?id=...``);
* ``POST /api/emails/{mailbox}/attach`` - link a message to a record on request, body
  ``{"message_id": "...", "record": "CASE-123"}`` or
  ``{"message_id": "...", "record_type": "Private::Crm::Case", "record_id": 123}``.
  Runs inline under the SENT stream's lease (200 with the updated explanation); when the stream
  is busy the job is queued instead (202).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import azure.functions as func

from sync.blueprints.responses import json_response, read_body
from sync.core.bodies import (
    BodyError,
    expect_object,
    no_unknown_fields,
    optional_str,
    positive_id,
)
from sync.core.email_linking import RecordRef, parse_reference
from sync.core.errors import NotFound
from sync.core.keys import normalise_address
from sync.runtime import get_services

bp = func.Blueprint()


ATTACH_FIELDS = ("message_id", "record", "record_type", "record_id")


def parse_attach(payload: Any) -> tuple[str, RecordRef]:
    """(message id, record) from an attach request body (as ``read_json`` returned it);
    BodyError with a clear message."""
    body = expect_object(payload)
    no_unknown_fields(body, ATTACH_FIELDS)
    message = body.get("message_id")
    if not isinstance(message, str) or not message.strip() or len(message) > 1000:
        raise BodyError(400, "'message_id' (immutable id or internetMessageId) is required")
    record = body.get("record")
    if record is not None:
        ref = parse_reference(record) if isinstance(record, str) else None
        if ref is None:
            raise BodyError(400, "'record' must be an object reference such as CASE-123 or PERS-45")
        return message.strip(), ref
    record_type = optional_str(body, "record_type", 200)
    if record_type is None or not record_type.startswith("Private::"):
        raise BodyError(400, "give 'record' (e.g. CASE-123) or 'record_type' and 'record_id'")
    return message.strip(), RecordRef(record_type, positive_id(body.get("record_id"), "record_id"))


@bp.function_name("email_explain")
@bp.route(route="emails/{mailbox}/{message}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def email_explain(req: func.HttpRequest) -> func.HttpResponse:
    from sync.engine.emails import explain

    mailbox = normalise_address(req.route_params.get("mailbox", ""))
    # Immutable ids may contain "/" (which routing cannot carry even encoded): ``?id=`` wins.
    message = req.params.get("id") or unquote(req.route_params.get("message", ""))
    services = await get_services()
    try:
        return json_response(await explain(services, mailbox, message))
    except NotFound as exc:
        return json_response({"error": str(exc)}, 404)


@bp.function_name("email_attach")
@bp.route(route="emails/{mailbox}/attach", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def email_attach(req: func.HttpRequest) -> func.HttpResponse:
    from sync.engine.emails import attach_job, explain
    from sync.engine.runner import run_job

    parsed = read_body(req, parse_attach)
    if isinstance(parsed, func.HttpResponse):
        return parsed
    message, ref = parsed
    mailbox = normalise_address(req.route_params.get("mailbox", ""))
    services = await get_services()
    record = await services.store.mailboxes.get(mailbox)
    if record is None:
        return json_response({"error": f"mailbox {mailbox!r} is not registered"}, 404)
    job = attach_job(mailbox, message, ref, reason="http attach")
    run = await run_job(services, job)
    if run.status == "retry":
        return json_response({"job_id": job.job_id, "state": "queued", "message": run.message}, 202)
    if run.status != "ok" or run.counts.get("attach_failed"):
        return json_response(
            {"error": run.message or run.status}, 404 if run.status == "ok" else 502
        )
    return json_response(await explain(services, mailbox, message))

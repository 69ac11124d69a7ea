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

import json
from urllib.parse import unquote

import azure.functions as func

from sync.blueprints.responses import json_response, too_large
from sync.core.email_linking import RecordRef, parse_reference
from sync.core.errors import NotFound
from sync.core.keys import normalise_address
from sync.runtime import get_services

bp = func.Blueprint()


def parse_attach(body: bytes) -> tuple[str, RecordRef]:
    """(message id, record) from an attach request body; ValueError with a clear message."""
    try:
        payload = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("body must be a JSON object") from None
    if not isinstance(payload, dict):
        raise ValueError("body must be a JSON object")
    message = payload.get("message_id")
    if not isinstance(message, str) or not message.strip() or len(message) > 1000:
        raise ValueError("'message_id' (immutable id or internetMessageId) is required")
    record = payload.get("record")
    if record is not None:
        ref = parse_reference(str(record)) if isinstance(record, str) else None
        if ref is None:
            raise ValueError("'record' must be an object reference such as CASE-123 or PERS-45")
        return message.strip(), ref
    record_type, record_id = payload.get("record_type"), payload.get("record_id")
    if not isinstance(record_type, str) or not record_type.startswith("Private::"):
        raise ValueError("give 'record' (e.g. CASE-123) or 'record_type' and 'record_id'")
    try:
        rid = int(record_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("'record_id' must be a positive integer") from None
    if rid <= 0:
        raise ValueError("'record_id' must be a positive integer")
    return message.strip(), RecordRef(record_type, rid)


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

    if (refused := too_large(req)) is not None:
        return refused
    mailbox = normalise_address(req.route_params.get("mailbox", ""))
    try:
        message, ref = parse_attach(req.get_body())
    except ValueError as exc:
        return json_response({"error": str(exc)}, 400)
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

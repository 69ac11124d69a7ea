"""The route Workbooks delivers new-record webhooks to (workbooks-api.md §4.11):
``POST /api/workbooks/webhook/{token}``, anonymous like Graph's.

In this order, cheapest first, and nothing is written before the signature holds:

1. a body over ``SYNC_WEBHOOK_MAX_BODY_BYTES``: 413, before anything hashes it;
2. an unknown token, or an ``X-Workbooks-Signature`` that is missing or not the HMAC-SHA256 of
   the raw body with that subscription's secret: 401, nothing queued;
3. the body, read with the one body reader (``read_body``): 4xx for anything else than a JSON
   array of records keyed by resource name;
4. a hint (``sync.engine.workbooks_webhooks.take``): 200 with counts.  Storage or queue down:
   503, so Workbooks delivers again (at least once).
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from sync.blueprints.responses import http_response, json_response, read_body
from sync.core.bodies import BodyLimits
from sync.core.workbooks_hooks import SIGNATURE_HEADER, parse_delivery
from sync.logs import RateLimitedLog, expected_failure
from sync.runtime import get_services

bp = func.Blueprint()
log = logging.getLogger("sync.workbooks_hooks")
LOG = RateLimitedLog(log)
REFUSED = "workbooks webhook: deliveries refused (unknown token or bad signature)"
UNAVAILABLE = "workbooks webhook: storage or queue unavailable, answering 503 so Workbooks retries"


@bp.function_name("workbooks_webhook")
@bp.route(route="workbooks/webhook/{token}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def workbooks_webhook(req: func.HttpRequest) -> func.HttpResponse:
    from sync.engine.workbooks_webhooks import take, verify

    services = await get_services()
    limit = services.settings.app.webhook_max_body_bytes
    raw = req.get_body() or b""
    if len(raw) > limit:
        return json_response({"error": f"body larger than {limit} bytes"}, 413)
    try:
        token = await verify(
            services, req.route_params.get("token", ""), req.headers.get(SIGNATURE_HEADER), raw
        )
    except Exception as exc:
        return _unavailable(exc)
    if token is None:
        LOG.warning(REFUSED, "401")
        return json_response({"error": "unknown subscription or bad signature"}, 401)
    limits = BodyLimits(max_bytes=limit, max_depth=4, require_json_type=True)
    delivery = read_body(req, parse_delivery, limits=limits)
    if isinstance(delivery, func.HttpResponse):
        return delivery
    try:
        hinted = await take(services, token, delivery)
    except Exception as exc:
        return _unavailable(exc)
    body = {"records": delivery.records, "queued": hinted.queued, "coalesced": hinted.coalesced}
    return http_response(json.dumps(body), 200)


def _unavailable(exc: Exception) -> func.HttpResponse:
    if expected_failure(exc):
        LOG.failure(UNAVAILABLE, exc)
    else:
        LOG.failure("workbooks webhook: could not take a delivery, answered 503", exc)
    return json_response({"error": "temporarily unable to accept deliveries"}, 503)

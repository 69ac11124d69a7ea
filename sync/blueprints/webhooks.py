"""HTTP functions Graph calls: change notifications and lifecycle notifications."""

from __future__ import annotations

import azure.functions as func

from sync.blueprints.responses import http_response
from sync.runtime import get_services
from sync.webhook import Reply, handle

bp = func.Blueprint()


def _response(reply: Reply) -> func.HttpResponse:
    # nosniff above all for the validation-token echo: the caller chose that text/plain body.
    return http_response(reply.body, reply.status, mimetype=reply.content_type)


async def _intake(req: func.HttpRequest, *, lifecycle: bool) -> func.HttpResponse:
    services = await get_services()
    reply = await handle(
        services,
        query=req.params,
        headers=req.headers,
        body=req.get_body() or b"",
        lifecycle=lifecycle,
    )
    return _response(reply)


@bp.function_name("graph_notifications")
@bp.route(route="graph/notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    return await _intake(req, lifecycle=False)


@bp.function_name("graph_lifecycle")
@bp.route(route="graph/lifecycle", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def graph_lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    return await _intake(req, lifecycle=True)

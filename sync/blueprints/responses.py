"""Reading request bodies and writing responses, for every HTTP function (the request glue around
``sync.core.bodies``).

Every response carries ``X-Content-Type-Options: nosniff``: the webhook echoes a caller's
validation token as text/plain, and no browser may be talked into reading that (or any answer of
ours) as HTML or script.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import azure.functions as func

from sync.core.bodies import BodyError, BodyLimits, read_json

T = TypeVar("T")

SECURITY_HEADERS: Mapping[str, str] = {"X-Content-Type-Options": "nosniff"}

# Operator request bodies are a few small JSON fields; anything bigger is not a request of ours.
MAX_BODY_BYTES = 16 * 1024
OPERATOR_BODY = BodyLimits(max_bytes=MAX_BODY_BYTES, max_depth=4, max_string_chars=2048)


def http_response(
    body: str | bytes,
    status: int = 200,
    *,
    mimetype: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    """An answer with our security headers (and ``headers`` on top)."""
    return func.HttpResponse(
        body,
        status_code=status,
        mimetype=mimetype,
        charset="utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def json_response(payload: Any, status: int = 200) -> func.HttpResponse:
    return http_response(json.dumps(payload, default=str, indent=1), status)


def error_response(exc: BodyError) -> func.HttpResponse:
    return json_response({"error": str(exc)}, exc.status)


def read_body(
    req: func.HttpRequest,
    shape: Callable[[Any], T],
    *,
    allow_empty: bool = False,
    limits: BodyLimits = OPERATOR_BODY,
) -> T | func.HttpResponse:
    """The request's JSON body checked by ``shape`` (which raises ``BodyError`` for a wrong
    one; it gets None for an empty body when ``allow_empty``), or the 4xx to answer with::

        parsed = read_body(req, parse_attach)
        if isinstance(parsed, func.HttpResponse):
            return parsed
    """
    try:
        limits = dataclasses.replace(limits, allow_empty=allow_empty)
        payload = read_json(req.get_body() or b"", req.headers.get("content-type"), limits)
        return shape(payload)
    except BodyError as exc:
        return error_response(exc)

"""The JSON responses every operator endpoint answers with (admin and email APIs)."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func


def json_response(payload: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(payload, default=str, indent=1), status_code=status, mimetype="application/json"
    )


# Operator request bodies are a few small JSON fields; anything bigger is not a request of ours.
MAX_BODY_BYTES = 16 * 1024


def too_large(req: func.HttpRequest) -> func.HttpResponse | None:
    """A 413 answer for an oversized body, before anything reads or parses it."""
    if len(req.get_body() or b"") > MAX_BODY_BYTES:
        return json_response({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
    return None

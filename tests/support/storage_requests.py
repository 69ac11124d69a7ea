"""Counting the storage requests a piece of code makes, at the Azure SDK's transport."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.pipeline.transport import AioHttpTransport


def record_storage_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every Table and queue request sent from now on (for the test's duration), as
    (method, status); clear the list to count from a later point."""
    sent: list[tuple[str, int]] = []
    original = AioHttpTransport.send

    async def send(self: AioHttpTransport, request: Any, **kwargs: Any) -> Any:
        response = await original(self, request, **kwargs)
        sent.append((str(request.method), int(response.status_code)))
        return response

    monkeypatch.setattr(AioHttpTransport, "send", send)
    return sent

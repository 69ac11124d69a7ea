"""Counting what a benchmark costs in Azure Storage: every HTTP request the Azure SDK sends.

Azure bills Table Storage and Queue Storage per transaction, and one transaction is one REST
request (an entity-group transaction of up to 100 operations is one; a query is one per page).
So counting the requests the SDK's transport sends counts billable transactions exactly,
whatever code path sent them.  ``StorageCounter`` wraps the transport's ``send`` for as long as
it is installed and sorts each request by service (table or queue, from the endpoint's port or
host), by table or queue name and by operation, so a figure can be explained, not only shown.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core.pipeline.transport import AioHttpTransport

# Azurite's default ports (others are read from the connection string); in Azure the host
# names say it.
_TABLE_PORTS = {10002}
_QUEUE_PORTS = {10001}
_ENTITY = re.compile(r"^/[^/]+/(?P<table>[A-Za-z0-9]+)(?P<keys>\(.*\))?$")


def _service(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port in _TABLE_PORTS or ".table." in host:
        return "table"
    if parts.port in _QUEUE_PORTS or ".queue." in host:
        return "queue"
    return "other"


def _operation(method: str, url: str, service: str) -> tuple[str, str]:
    """(table or queue name, operation) of one request."""
    path = unquote(urlsplit(url).path)
    if service == "table":
        if path.endswith("/$batch"):
            return "(batch)", "transaction"
        match = _ENTITY.match(path)
        name = match.group("table") if match else path
        keyed = bool(match and match.group("keys") and match.group("keys") != "()")
        op = {
            "GET": "get" if keyed else "query",
            "PUT": "upsert/replace",
            "MERGE": "merge",
            "PATCH": "merge",
            "POST": "insert",
            "DELETE": "delete",
        }.get(method, method)
        return name, op
    segments = [s for s in path.split("/") if s]
    name = segments[1] if len(segments) > 1 else (segments[0] if segments else "")
    if method == "POST":
        return name, "send"
    if method == "GET":
        return name, "receive/peek"
    if method == "DELETE":
        return name, "delete"
    if method == "PUT":
        return name, "update/create"
    return name, method


@dataclass
class StorageCounter:
    """Requests sent to Table and Queue Storage while installed, by (service, name, op)."""

    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # The same requests in the order they were sent, for a trace of one piece of work.
    order: list[tuple[str, str, str]] = field(default_factory=list)

    def total(self, service: str) -> int:
        return sum(n for (s, _, _), n in self.requests.items() if s == service)

    def by_operation(self, service: str) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (s, name, op), n in self.requests.items():
            if s == service:
                out[f"{op} {name}"] += n
        return dict(sorted(out.items()))

    def reset(self) -> None:
        self.requests.clear()
        self.order.clear()

    def snapshot(self) -> Counter[tuple[str, str, str]]:
        return Counter(self.requests)

    def since(self, before: Counter[tuple[str, str, str]], service: str) -> int:
        return sum(n - before.get(key, 0) for key, n in self.requests.items() if key[0] == service)


def _ports(connection_string: str) -> None:
    """Learn Azurite's ports (it picks free ones) from ``TableEndpoint``/``QueueEndpoint``."""
    pairs = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    for key, ports in (("TableEndpoint", _TABLE_PORTS), ("QueueEndpoint", _QUEUE_PORTS)):
        port = urlsplit(pairs.get(key, "")).port
        if port:
            ports.add(port)


@contextlib.contextmanager
def counting_storage(connection_string: str = "") -> Iterator[StorageCounter]:
    """Count every storage request this process sends until the block ends."""
    _ports(connection_string)
    counter = StorageCounter()
    original = AioHttpTransport.send

    async def send(self: AioHttpTransport, request: Any, **kwargs: Any) -> Any:
        service = _service(str(request.url))
        name, op = _operation(str(request.method), str(request.url), service)
        counter.requests[(service, name, op)] += 1
        counter.order.append((service, name, op))
        return await original(self, request, **kwargs)

    AioHttpTransport.send = send
    try:
        yield counter
    finally:
        AioHttpTransport.send = original
